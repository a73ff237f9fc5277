"""OpenTelemetry set-up from the standard OTEL_* variables, and the cheap sampling gate.

opentelemetry-instrumentation-grpc costs ~75-100 µs per call even when the call is not
sampled (context extraction, span objects). The gate decides sampling first, from the
`traceparent` header and the configured ratio, exactly as ParentBased(TraceIdRatioBased)
would; only sampled calls take the instrumented path. Unsampled calls get a
NonRecordingSpan so downstream calls still propagate "not sampled" with the trace id.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
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
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_TRACE_ID_MASK = (1 << 64) - 1
_preset_trace_id: ContextVar[int] = ContextVar("marque_preset_trace_id", default=0)


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
    ratio: float | None  # None: no gate, every call takes the instrumented path

    @property
    def bound(self) -> int:
        """TraceIdRatioBased's bound on the low 64 bits of a trace id."""
        return _bound_for(self.ratio)

    def decide(self, traceparent: str | None) -> bool:
        """True: take the instrumented path. False: a NonRecordingSpan has been attached."""
        ratio = self.ratio
        if ratio is None:
            return True
        if traceparent:
            parent = parse_traceparent(traceparent)
            if parent is not None:
                trace_id, span_id, flags = parent
                if flags & 1:
                    return True
                _attach(trace_id, span_id)
                return False
        if ratio >= 1.0:
            return True
        trace_id = random.getrandbits(128) or 1
        if (trace_id & _TRACE_ID_MASK) < _bound_for(ratio):
            _preset_trace_id.set(trace_id)
            return True
        _attach(trace_id, random.getrandbits(64) or 1)
        return False

    def shutdown(self) -> None:
        """Flush and stop exporting."""
        self.provider.shutdown()


@functools.lru_cache(maxsize=8)
def _bound_for(ratio: float | None) -> int:
    return TraceIdRatioBased.get_bound_for_rate(ratio or 0.0)


_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


def _attach(trace_id: int, span_id: int) -> None:
    ctx = SpanContext(trace_id, span_id, is_remote=True, trace_flags=_NOT_SAMPLED)
    # The call runs in its own task: the attached context ends with it, no detach needed.
    otel_context.attach(trace.set_span_in_context(NonRecordingSpan(ctx)))


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
