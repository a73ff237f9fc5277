/**
 * Marque's clients for Node.js: the generated messages and grpc-js clients of every service
 * (`@marque/clients/marque/<domain>/v1/<file>`), and this helper.
 *
 * ```ts
 * import { connect, MarqueError } from "@marque/clients";
 * import { LeadServiceDefinition } from "@marque/clients/marque/lead/v1/lead_service";
 * ```
 */
export {
  bearer,
  bearerInterceptor,
  connect,
  Connection,
  DEFAULT_TIMEOUT_MS,
  SERVICE_CONFIG,
  type CallOptions,
  type ConnectOptions,
  type DeepPartial,
  type GrpcClientConstructor,
  type MessageType,
  type MethodCall,
  type MethodDefinition,
  type ServiceClient,
  type ServiceDefinition,
  type Token,
} from "./client";
export { codeName, decodeError, DETAILS_KEY, isMarqueError, MarqueError, type Detail } from "./errors";
export { status } from "@grpc/grpc-js";
