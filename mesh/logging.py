"""JSON log lines with trace/span ids, and masking of personal data (DESIGN.md §8-9).

`configure()` installs one stderr handler on the root logger whose filter masks every
message, argument and traceback, so a phone number or e-mail a caller sent never reaches
the logs, whichever library logged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import time
from typing import Any

from mesh.dberrors import loggable
from mesh.tracing import current_span_context

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "[email]"),
    # 18-character resident identity numbers (17 digits + digit or X).
    (re.compile(r"(?<![0-9A-Za-z])\d{6}(?:[\s-]?\d){11}[0-9Xx](?![0-9A-Za-z])"), "[id]"),
    # Chinese mobiles with or without +86 / 0086 / 86, spaces or dashes between digits.
    (
        re.compile(r"(?<!\d)(?:(?:\+|00)?86[\s-]*)?1[3-9]\d(?:[\s-]?\d){8}(?!\d)"),
        "[phone]",
    ),
    # Any E.164 number, with optional separators.
    (re.compile(r"\+[1-9](?:[\s().-]?\d){6,14}(?!\d)"), "[phone]"),
)


# Anything maskable holds an "@" or six digits in a row (single separators allowed); most
# log text has neither, and one search is far cheaper than every pattern.
_CANDIDATE = re.compile(r"@|\d(?:[\s().-]?\d){5}")

# Extra fields the mesh itself logs and knows hold no personal data (names, codes, ids).
SAFE_FIELDS = frozenset(
    {"grpc_method", "grpc_code", "duration_ms", "caller_kind", "caller_ref", "grpc_port"}
    | {"metrics_port", "services", "grace_seconds"}
)


def mask(text: str) -> str:
    """`text` with phones, e-mails and Chinese ID numbers replaced by placeholders."""
    if _CANDIDATE.search(text) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _mask_value(value: object) -> object:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return [mask(v) for v in value]
    return mask(str(value))


class MaskFilter(logging.Filter):
    """Masks the message, its args, extra fields and tracebacks of every record; a database
    error in a traceback loses its message (mesh/dberrors.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                record.msg = record.getMessage()
            except (TypeError, ValueError):
                record.msg = f"{record.msg} {record.args!r}"
            record.args = None
        record.msg = mask(str(record.msg))
        if record.exc_info:
            error = record.exc_info[1]
            if error is not None:  # a database error's message may quote request data
                error = loggable(error)
                record.exc_info = (type(error), error, error.__traceback__)
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and key not in SAFE_FIELDS:
                record.__dict__[key] = _mask_value(value)
        record.__dict__["_masked"] = True
        return True


_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, service, logger, msg, trace_id, span_id, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        # One encoder (json.dumps builds one per call with these options) and the
        # formatted second of the last line: a busy server logs many lines per second.
        self._encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        ctx = current_span_context()
        line: dict[str, Any] = {
            "ts": self._timestamp(record.created, record.msecs),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            "trace_id": format(ctx.trace_id, "032x") if ctx.is_valid else "",
            "span_id": format(ctx.span_id, "016x") if ctx.is_valid else "",
        }
        masked = record.__dict__.get("_masked", False)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line and key != "_masked":
                line[key] = value if masked or key in SAFE_FIELDS else _mask_value(value)
        if not masked:
            line["msg"] = mask(line["msg"])
        if record.exc_text:
            line["exc"] = record.exc_text
        elif record.exc_info:
            line["exc"] = mask(self.formatException(record.exc_info))
        return self._encode(line)


class BufferedStreamHandler(logging.StreamHandler[Any]):
    """A StreamHandler that formats each record at once (trace ids, masking) but, on an
    event-loop thread, writes the lines in batches: the first buffered line schedules one
    write `interval` seconds later on that loop.

    A write is a syscall that releases the GIL; on a grpc.aio server pinned to one core
    the poller thread then takes it, which costs far more than the write itself. Records
    of WARNING and above, lines logged outside an event loop, a full buffer and a line
    logged after the interval has passed are written at once; `logging.shutdown()` (at
    exit) writes the rest. The price: a process killed hard loses at most the last
    `interval` seconds of INFO lines.
    """

    def __init__(self, stream: Any = None, interval: float = 0.5, capacity: int = 512) -> None:
        super().__init__(stream)
        self.interval = interval
        self.capacity = capacity
        self._lines: list[str] = []
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        lines = self._lines
        now = time.monotonic()
        if not lines:
            self._since = now
        lines.append(line)
        if (
            record.levelno >= logging.WARNING
            or len(lines) >= self.capacity
            or now - self._since >= self.interval
        ):
            self.flush()
            return
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on an event loop: nothing would write it later
                self.flush()
                return
            self._timer = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Write every buffered line, then flush the stream."""
        with self.lock if self.lock is not None else contextlib.nullcontext():
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            if self._lines:
                text = "\n".join(self._lines) + "\n"
                self._lines.clear()
                try:
                    self.stream.write(text)
                except Exception:
                    return
            super().flush()


def make_handler(
    service: str, stream: Any = None, *, flush_interval: float = 0.0
) -> logging.Handler:
    """A handler writing masked JSON lines to `stream` (stderr by default); with a
    `flush_interval`, lines logged on an event loop are written in batches (see
    BufferedStreamHandler), else every line is written at once."""
    handler: logging.StreamHandler[Any]
    if flush_interval > 0:
        handler = BufferedStreamHandler(stream or sys.stderr, interval=flush_interval)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(MaskFilter())
    return handler


def configure(service: str, level: str = "INFO", *, flush_interval: float = 0.5) -> None:
    """Route all logging of the process to masked JSON lines on stderr, written in batches
    at most `flush_interval` seconds late (0: every line at once; WARNING and above always
    at once)."""
    # The JSON lines carry no process, thread or multiprocessing fields: spare every
    # record the look-ups (a getpid() system call among them).
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(service, flush_interval=flush_interval))
    root.setLevel(level.upper())
