"""Prometheus metrics with the go-grpc-prometheus names, and the `/metrics` HTTP server.

Server-side series are kept in plain per-method counters and exported by one collector:
a `prometheus_client` histogram costs ~20 µs per observation under its locks, while the
chain runs on one event-loop thread and needs a couple of µs per call. Client-side twins
are ordinary `prometheus_client` collectors, counted through `client_method` (mesh.client).
Domain metrics of services go in the same default registry.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from prometheus_client import REGISTRY, Counter, Histogram, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# The go-grpc-prometheus default buckets, so existing dashboards' quantiles line up.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# go-grpc-prometheus spells codes the Go way; dashboards and alert rules match on these.
_GO_CODES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}


# Status codes by number: the chain counts codes in a list indexed by number, because
# hashing an Enum member runs Python code (Enum.__hash__) on every call.
_BY_NUMBER: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}
_CODE_SLOTS = max(_BY_NUMBER) + 1


def code_label(code: grpc.StatusCode) -> str:
    """The `grpc_code` label value of a status code, as go-grpc-prometheus spells it."""
    return _GO_CODES.get(code, code.name)


def grpc_type(request_streaming: bool, response_streaming: bool) -> str:
    """The `grpc_type` label: unary, client_stream, server_stream or bidi_stream."""
    if request_streaming:
        return "bidi_stream" if response_streaming else "client_stream"
    return "server_stream" if response_streaming else "unary"


class MethodStats:
    """All server series of one method; the chain updates the fields directly."""

    __slots__ = (
        "buckets",
        "count",
        "grpc_type",
        "handled",
        "in_flight",
        "method",
        "received",
        "sent",
        "service",
        "started",
        "total",
    )

    def __init__(self, grpc_type: str, service: str, method: str, in_flight: list[int]) -> None:
        self.grpc_type = grpc_type
        self.service = service
        self.method = method
        self.started = 0
        self.received = 0
        self.sent = 0
        self.handled = [0] * _CODE_SLOTS  # calls by status code number
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0
        # Shared by every method of the service: [calls in flight].
        self.in_flight = in_flight

    def done(self, code: grpc.StatusCode, seconds: float) -> None:
        """Count a finished call and observe its duration."""
        self.handled[code._value_[0]] += 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1


class _ServerCollector(Collector):
    """Exports every MethodStats of the process in the go-grpc-prometheus shape."""

    def __init__(self) -> None:
        self.methods: dict[tuple[str, str, str], MethodStats] = {}
        self.in_flight: dict[str, list[int]] = {}

    def method(self, grpc_type: str, service: str, method: str) -> MethodStats:
        key = (grpc_type, service, method)
        stats = self.methods.get(key)
        if stats is None:
            shared = self.in_flight.setdefault(service, [0])
            stats = self.methods[key] = MethodStats(grpc_type, service, method, shared)
        return stats

    def collect(self) -> Iterator[Metric]:
        names = ["grpc_type", "grpc_service", "grpc_method"]
        started = CounterMetricFamily(
            "grpc_server_started", "Total number of RPCs started on the server.", labels=names
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=[*names, "grpc_code"],
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received.",
            labels=names,
        )
        sent = CounterMetricFamily(
            "grpc_server_msg_sent", "Total number of gRPC stream messages sent.", labels=names
        )
        seconds = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC handled by the server.",
            labels=names,
        )
        for s in list(self.methods.values()):
            labels = [s.grpc_type, s.service, s.method]
            started.add_metric(labels, s.started)
            received.add_metric(labels, s.received)
            sent.add_metric(labels, s.sent)
            for number, n in enumerate(list(s.handled)):
                if n:
                    handled.add_metric([*labels, code_label(_BY_NUMBER[number])], n)
            cumulative, rows = 0, []
            for bound, n in zip((*BUCKETS, float("inf")), s.buckets, strict=True):
                cumulative += n
                rows.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            seconds.add_metric(labels, rows, s.total)
        in_flight = GaugeMetricFamily(
            "marque_grpc_server_in_flight", "RPCs being handled now.", labels=["grpc_service"]
        )
        for service, box in list(self.in_flight.items()):
            in_flight.add_metric([service], box[0])
        yield from (started, handled, received, sent, seconds, in_flight)


SERVER = _ServerCollector()
REGISTRY.register(SERVER)

_CLIENT_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
grpc_client_started_total = Counter(
    "grpc_client_started_total", "Total number of RPCs started on the client.", _CLIENT_LABELS
)
grpc_client_handled_total = Counter(
    "grpc_client_handled_total",
    "Total number of RPCs completed by the client, regardless of success or failure.",
    [*_CLIENT_LABELS, "grpc_code"],
)
grpc_client_handling_seconds = Histogram(
    "grpc_client_handling_seconds",
    "Histogram of response latency (seconds) of the gRPC until it is finished by the client.",
    _CLIENT_LABELS,
    buckets=BUCKETS,
)


class ClientMethod:
    """One client method's series, labelled once: a call then costs an increment and an
    observation, not a label look-up under prometheus_client's lock per series."""

    __slots__ = ("_handled", "_labels", "seconds", "started")

    def __init__(self, grpc_type: str, full_method: str) -> None:
        service, _, method = full_method.lstrip("/").partition("/")
        self._labels = (grpc_type, service, method)
        self.started = grpc_client_started_total.labels(*self._labels)
        self.seconds = grpc_client_handling_seconds.labels(*self._labels)
        self._handled: dict[grpc.StatusCode, Counter] = {}

    def done(self, code: grpc.StatusCode, seconds: float) -> None:
        """Count a finished call with its code and duration."""
        handled = self._handled.get(code)
        if handled is None:
            handled = grpc_client_handled_total.labels(*self._labels, code_label(code))
            self._handled[code] = handled
        handled.inc()
        self.seconds.observe(seconds)


_CLIENT_METHODS: dict[tuple[str, str], ClientMethod] = {}


def client_method(grpc_type: str, full_method: str) -> ClientMethod:
    """The series of calls of one kind to one method (`/package.Service/Method`)."""
    key = (grpc_type, full_method)
    method = _CLIENT_METHODS.get(key)
    if method is None:
        method = _CLIENT_METHODS[key] = ClientMethod(grpc_type, full_method)
    return method


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not log lines."""


# How often the server thread looks for a stop request: `stop()` waits up to this long
# (prometheus_client's own server polls every 0.5 s, half the time of a servicer test).
_STOP_POLL_SECONDS = 0.05


class MetricsServer:
    """The `/metrics` HTTP endpoint of one process."""

    def __init__(self, host: str, port: int) -> None:
        self._httpd = make_server(
            host, port, make_wsgi_app(REGISTRY), _ThreadingServer, handler_class=_QuietHandler
        )
        self._thread = Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _STOP_POLL_SECONDS},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()
        self.port: int = self._httpd.server_port

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
