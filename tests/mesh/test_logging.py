"""Personal data never reaches the logs; access log lines are JSON with trace ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from marque.testing.v1 import testing_service_pb2 as pb

from mesh.logging import make_handler, mask
from tests.mesh.serving import bearer, serve, traced


@pytest.mark.parametrize(
    "text",
    [
        "13812345678",
        "+8613812345678",
        "+86 138 1234 5678",
        "0086-138-1234-5678",
        "86 13812345678",
        "138-1234-5678",
        "call me at 138 1234 5678 please",
        "+44 20 7946 0958",
        "+1-202-555-0143",
        "zhang.san@example.com.cn",
        "110101199003074578",
        "11010119900307457X",
    ],
)
def test_mask_hides_personal_data(text: str) -> None:
    masked = mask(f"value={text};")
    assert text not in masked
    assert sum(c.isdigit() for c in masked) < 4


def test_mask_keeps_ordinary_text() -> None:
    for text in ("order 12345 of 2026-11-24", "took 12.5 ms", "lead L-000123", "code 404"):
        assert mask(text) == text


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged, as the masked JSON lines the process would write."""
    stream = io.StringIO()
    handler = make_handler("lead", stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_no_phone_number_in_logs(tmp_path: Path, log_lines: io.StringIO) -> None:
    tracing, _ = traced()
    mobile = "13812345678"
    async with serve(tmp_path, tracing_=tracing, access_log="all") as s:
        md = bearer(s.keys)
        await s.stub.Echo(pb.EchoRequest(message=f"hi {mobile}", mobile=mobile), metadata=md)
        for fail in ("not_found", "crash"):
            with pytest.raises(grpc.aio.AioRpcError):
                await s.stub.Echo(
                    pb.EchoRequest(message="hi", mobile=mobile, fail_with=fail), metadata=md
                )
        logging.getLogger("tests").info("caller said %s", f"+86 {mobile[:3]} {mobile[3:]}")
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert lines and mobile not in log_lines.getvalue() and mobile[3:] not in log_lines.getvalue()
    access = [line for line in lines if line["logger"] == "mesh.access"]
    assert {line["grpc_code"] for line in access} >= {"OK", "NOT_FOUND", "INTERNAL"}
    for line in access:
        assert {"ts", "level", "service", "msg", "trace_id", "span_id", "duration_ms"} <= set(line)
        assert len(line["trace_id"]) == 32 and line["caller_ref"] == "oem:u1"
        assert "peer" not in line
    crash = next(line for line in lines if line["logger"] == "mesh.chain")
    assert "RuntimeError" in crash["exc"] and "[phone]" in crash["exc"]


async def test_access_log_sampled_mode_skips_untraced_successes(
    tmp_path: Path, log_lines: io.StringIO
) -> None:
    tracing, _ = traced({"OTEL_TRACES_SAMPLER_ARG": "0"})
    async with serve(tmp_path, tracing_=tracing) as s:
        await s.stub.Echo(pb.EchoRequest(message="hi"), metadata=bearer(s.keys))
        with pytest.raises(grpc.aio.AioRpcError):
            await s.stub.Echo(pb.EchoRequest(message=""), metadata=bearer(s.keys))
    access = [
        json.loads(line) for line in log_lines.getvalue().splitlines() if '"mesh.access"' in line
    ]
    assert [line["grpc_code"] for line in access] == ["INVALID_ARGUMENT"]


async def test_buffered_handler_writes_batches_on_the_loop() -> None:
    stream = io.StringIO()
    handler = make_handler("lead", stream, flush_interval=0.05)
    logger = logging.getLogger("tests.buffered")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("first")
        logger.info("second")
        assert stream.getvalue() == ""  # batched, not one write per line
        await asyncio.sleep(0.2)
        assert [json.loads(x)["msg"] for x in stream.getvalue().splitlines()] == [
            "first",
            "second",
        ]
        logger.warning("at once")
        assert json.loads(stream.getvalue().splitlines()[-1])["msg"] == "at once"
        logger.info("pending")
        handler.flush()  # what logging.shutdown() does at exit
        assert json.loads(stream.getvalue().splitlines()[-1])["msg"] == "pending"
    finally:
        logger.removeHandler(handler)


def test_buffered_handler_writes_at_once_off_the_loop() -> None:
    stream = io.StringIO()
    handler = make_handler("lead", stream, flush_interval=10)
    logger = logging.getLogger("tests.buffered.sync")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("no loop, 13812345678")
        assert json.loads(stream.getvalue())["msg"] == "no loop, [phone]"
    finally:
        logger.removeHandler(handler)


async def test_unsampled_calls_log_their_trace_id(tmp_path: Path, log_lines: io.StringIO) -> None:
    tracing, exporter = traced({"OTEL_TRACES_SAMPLER_ARG": "0"})
    async with serve(tmp_path, tracing_=tracing, access_log="all") as s:
        reply = await s.stub.Echo(pb.EchoRequest(message="hi"), metadata=bearer(s.keys))
    (line,) = [
        json.loads(line) for line in log_lines.getvalue().splitlines() if '"mesh.access"' in line
    ]
    assert exporter.get_finished_spans() == ()
    assert reply.trace_id and line["trace_id"] == reply.trace_id and len(line["span_id"]) == 16
