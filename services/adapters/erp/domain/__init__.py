"""The ERP adapter's rules on plain data: SAP's order shape and field limits, the OData V2
codec and error envelope, the configuration. No grpc, no SQL, no HTTP, no environment."""
