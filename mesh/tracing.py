"""OpenTelemetry set-up from the standard OTEL_* variables, the cheap sampling gate, and
the server spans of sampled calls.

opentelemetry-instrumentation-grpc costs ~75-100 µs per call even when the call is not
sampled (context extraction, span objects), and ~130 µs when it is. The gate decides
sampling first, from the `traceparent` header and the configured ratio, exactly as
ParentBased(TraceIdRatioBased) would. A sampled call gets a SERVER span with the
attributes of the OpenTelemetry RPC semantic conventions, started straight on the SDK
tracer (`ServerSpan`). An unsampled call only notes its (trace id, span id) in a context
variable: the NonRecordingSpan that lets downstream calls propagate "not sampled" with the
same trace id is built when something asks for it (`attach_pending`, called by
mesh.client before it injects headers; `current_span_context`, used by the log lines).
Code that calls another OpenTelemetry-instrumented library from an unsampled call calls
`attach_pending()` first, or that library starts a trace of its own.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.semconv._incubating.attributes.rpc_attributes import (
    RPC_GRPC_STATUS_CODE,
    RPC_METHOD,
    RPC_SERVICE,
    RPC_SYSTEM,
)
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

_TRACE_ID_MASK = (1 << 64) - 1
_preset_trace_id: ContextVar[int] = ContextVar("marque_preset_trace_id", default=0)
# (trace id, span id) of the unsampled call being served, until something needs the span.
_pending: ContextVar[tuple[int, int] | None] = ContextVar("marque_unsampled", default=None)


class PresetIdGenerator(IdGenerator):
    """Random ids, except a root span's trace id the gate already drew (and sampled on), so
    the SDK's own ratio sampler takes the same decision on the same id."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        preset = _preset_trace_id.get()
        if preset:
            _preset_trace_id.set(0)
            return preset
        return self._random.generate_trace_id()


def _sampler_from_env(env: Mapping[str, str]) -> Sampler:
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_traceidratio").strip().lower()
    try:
        ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "0.1"))
    except ValueError:
        ratio = 0.1
    ratio = min(max(ratio, 0.0), 1.0)
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        raise ValueError(f"unsupported OTEL_TRACES_SAMPLER {name!r}")
    return samplers[name]


def _gate_ratio(sampler: Sampler) -> float | None:
    """The root ratio the gate can reproduce, or None to always take the full path."""
    if not isinstance(sampler, ParentBased):
        return None
    root = sampler._root  # the SDK offers no public accessor
    if root is ALWAYS_ON:
        return 1.0
    if root is ALWAYS_OFF:
        return 0.0
    if isinstance(root, TraceIdRatioBased):
        return root.rate
    return None


@dataclass
class Tracing:
    """The tracer provider of a process and the gate parameters derived from its sampler."""

    provider: TracerProvider
    ratio: float | None  # None: no gate, every call is given to the SDK's sampler

    def __post_init__(self) -> None:
        self.tracer = self.provider.get_tracer("mesh.tracing")
        self._bound = _bound_for(self.ratio)  # TraceIdRatioBased's, on the low 64 bits

    def decide(self, traceparent: str | None) -> bool:
        """True: trace the call (`ServerSpan`). False: it is not sampled, and its trace
        context is pending (see `attach_pending`)."""
        ratio = self.ratio
        if ratio is None:
            return True
        if traceparent:
            parent = parse_traceparent(traceparent)
            if parent is not None:
                trace_id, span_id, flags = parent
                if flags & 1:
                    return True
                _pending.set((trace_id, span_id))
                return False
        if ratio >= 1.0:
            return True
        trace_id = random.getrandbits(128) or 1
        if (trace_id & _TRACE_ID_MASK) < self._bound:
            _preset_trace_id.set(trace_id)
            return True
        _pending.set((trace_id, random.getrandbits(64) or 1))
        return False

    def shutdown(self) -> None:
        """Flush and stop exporting."""
        self.provider.shutdown()


@functools.lru_cache(maxsize=8)
def _bound_for(ratio: float | None) -> int:
    return TraceIdRatioBased.get_bound_for_rate(ratio or 0.0)


_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


def attach_pending() -> None:
    """Make the unsampled call's trace context OpenTelemetry's current one, so what is
    called next propagates it (a no-op when there is none, or a span is current)."""
    pending = _pending.get()
    if pending is None:
        return
    _pending.set(None)
    if trace.get_current_span().get_span_context().is_valid:
        return
    ctx = SpanContext(pending[0], pending[1], is_remote=True, trace_flags=_NOT_SAMPLED)
    # A call runs in its own task: the attached context ends with it, no detach needed.
    otel_context.attach(trace.set_span_in_context(NonRecordingSpan(ctx)))


def current_span_context() -> SpanContext:
    """The span context of the call being served, sampled or not (invalid outside one)."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return ctx
    pending = _pending.get()
    if pending is None:
        return ctx
    return SpanContext(pending[0], pending[1], is_remote=True, trace_flags=_NOT_SAMPLED)


# Codes that are the server's fault: the span's status is ERROR (RPC semantic conventions).
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_TRACE_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})


class ServerSpan:
    """The SERVER span of one sampled call, current (with the caller's trace context and
    baggage) until the call ends."""

    __slots__ = ("span",)

    def __init__(
        self,
        tracing: Tracing,
        full_method: str,
        context: grpc.aio.ServicerContext,
        metadata: Sequence[tuple[str, str | bytes]] | None = None,
    ) -> None:
        service, _, method = full_method.lstrip("/").partition("/")
        pairs = metadata if metadata is not None else (context.invocation_metadata() or ())
        carrier = {k: v for k, v in pairs if k in _TRACE_HEADERS and isinstance(v, str)}
        parent = propagate.extract(carrier) if carrier else None
        attributes: dict[str, Any] = {
            RPC_SYSTEM: "grpc",
            RPC_SERVICE: service,
            RPC_METHOD: method,
        }
        attributes.update(_peer_attributes(context.peer()))
        self.span = tracing.tracer.start_span(
            full_method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        # A call runs in its own task: the attached context ends with it, no detach needed.
        otel_context.attach(trace.set_span_in_context(self.span, parent))

    def end(self, code: grpc.StatusCode, error: BaseException | None = None) -> None:
        """Record the final status code (ERROR for server faults) and end the span.

        Attributes are the required and recommended ones of the RPC conventions; each
        costs the SDK's validation, so the optional ones are left out."""
        span = self.span
        span.set_attribute(RPC_GRPC_STATUS_CODE, code.value[0])
        if code in _SERVER_ERRORS:
            span.set_status(Status(StatusCode.ERROR, code.name))
            if error is not None:
                span.record_exception(error)
        span.end()


def _peer_attributes(peer: str | None) -> dict[str, Any]:
    """network.peer.* of a grpc peer string: "ipv4:10.0.0.1:5432", "ipv6:[::1]:5432"."""
    kind, _, address = unquote(peer or "").partition(":")
    if kind not in ("ipv4", "ipv6") or not address:
        return {}
    host, _, port = address.rpartition(":")
    out: dict[str, Any] = {NETWORK_PEER_ADDRESS: host.strip("[]")}
    if port.isdigit():
        out[NETWORK_PEER_PORT] = int(port)
    return out


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """(trace_id, parent span_id, flags) of a W3C traceparent, None if malformed."""
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version = value[:2]
    if version == "ff" or (version == "00" and len(value) != 55):
        return None
    try:
        trace_id = int(value[3:35], 16)
        span_id = int(value[36:52], 16)
        flags = int(value[53:55], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, flags


def configure(
    service: str,
    *,
    env: Mapping[str, str] | None = None,
    version: str = "",
    processors: tuple[SpanProcessor, ...] = (),
    set_global: bool = True,
) -> Tracing:
    """A tracer provider as the OTEL_* variables describe it.

    An OTLP gRPC exporter (batched) is added only when OTEL_EXPORTER_OTLP_ENDPOINT or
    OTEL_TRACES_EXPORTER=otlp say so; tests pass their own `processors` (e.g. a
    SimpleSpanProcessor over an InMemorySpanExporter) and `set_global=False`.
    """
    env = os.environ if env is None else env
    resource = Resource.create(
        {
            "service.name": env.get("OTEL_SERVICE_NAME") or f"marque-{service}",
            "service.namespace": "marque",
            "service.version": version or env.get("MARQUE_VERSION", "dev"),
        }
    )
    sampler = _sampler_from_env(env)
    provider = TracerProvider(resource=resource, sampler=sampler, id_generator=PresetIdGenerator())
    exporters = {e.strip() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()}
    if "otlp" in exporters or (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") and "none" not in exporters):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    for processor in processors:
        provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(provider)
    return Tracing(provider=provider, ratio=_gate_ratio(sampler))


_default: list[Tracing] = []


def default(service: str) -> Tracing:
    """The process's tracing, configured from the environment on first use (global)."""
    if not _default:
        _default.append(configure(service))
    return _default[0]
