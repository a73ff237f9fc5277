"""The CloudEvents envelope, subjects and streams, the type registry, settings."""

from __future__ import annotations

import datetime as dt

import pytest
from marque.testing.v1 import testing_events_pb2 as ev

from mesh.events import envelope as e
from mesh.events.settings import EventSettings


def test_headers_round_trip() -> None:
    time = dt.datetime(2026, 12, 2, 7, 50, 49, 123456, tzinfo=dt.UTC)
    env = e.Envelope(
        id="id-1",
        source="/marque/lead",
        type="marque.lead.v1.LeadWon",
        subject="L1",
        time=time,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="k=v",
    )
    headers = env.headers()
    assert headers["ce-time"] == "2026-12-02T07:50:49.123456Z"
    assert headers["Nats-Msg-Id"] == "id-1" and headers["content-type"] == "application/protobuf"
    assert e.Envelope.from_headers(headers) == env


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (None, "no headers"),
        ({"ce-specversion": "0.3"}, "specversion"),
        ({"ce-specversion": "1.0", "ce-id": "x"}, "missing"),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "x",
                "ce-source": "s",
                "ce-type": "t",
                "ce-time": "?",
            },
            "RFC 3339",
        ),
        ({"ce-specversion": "1.0", "content-type": "application/json"}, "content-type"),
    ],
)
def test_what_is_not_an_event(headers: dict[str, str] | None, message: str) -> None:
    with pytest.raises(e.EnvelopeError, match=message):
        e.Envelope.from_headers(headers)


def test_names() -> None:
    assert e.subject_of("lead", ev.ThingHappened) == "marque.lead.ThingHappened"
    assert e.type_of(ev.ThingHappened()) == "marque.testing.v1.ThingHappened"
    assert e.stream_name("erp-adapter") == "MARQUE_ERP_ADAPTER"
    assert e.stream_subjects("lead") == "marque.lead.>"
    assert e.producer_of(ev.ThingHappened) == "testing"
    assert e.source_of("member") == "/marque/member"


def test_the_registry_knows_every_events_contract() -> None:
    assert e.load_contracts() >= 2
    assert e.event_type("marque.testing.v1.ThingRemoved") is ev.ThingRemoved


def test_settings_from_the_environment() -> None:
    s = EventSettings.from_env(
        {"MARQUE_NATS_URL": "nats://a:4222,nats://b:4222", "MARQUE_EVENTS_MAX_DELIVER": "7"}
    )
    assert (s.nats_url, s.max_deliver, s.stream_replicas) == ("nats://a:4222,nats://b:4222", 7, 1)
    assert EventSettings.from_env({}).nats_url == "nats://127.0.0.1:4222"
    with pytest.raises(ValueError, match="MARQUE_EVENTS_MAX_DELIVER"):
        EventSettings.from_env({"MARQUE_EVENTS_MAX_DELIVER": "0"})


@pytest.mark.parametrize(
    ("subject", "traceparent", "tracestate", "time"),
    [
        ("lead_1", "", "", dt.datetime(2026, 12, 4, 9, 30, 1, 5, tzinfo=dt.UTC)),
        (
            "a\r\nb",
            "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
            "",
            dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        ),
        (
            "m_9",
            "00-" + "1" * 32 + "-" + "2" * 16 + "-00",
            "vendor=x",
            dt.datetime(2026, 6, 1, 8, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        ),
    ],
)
def test_the_relays_header_block_is_the_envelopes(
    subject: str, traceparent: str, tracestate: str, time: dt.datetime
) -> None:
    """The relay's one-f-string block says exactly what header_pairs + header_block say."""
    args = ("id-1", "/marque/lead", "marque.lead.v1.LeadCreated", subject, time)
    pairs = e.header_pairs(*args, traceparent, tracestate)
    pairs.append(("Nats-Expected-Stream", "MARQUE_LEAD"))
    fast = e.event_header_block(
        *args, traceparent, tracestate, "Nats-Expected-Stream: MARQUE_LEAD\r\n"
    )
    assert fast == e.header_block(pairs)


def test_event_ids_are_random_uuids() -> None:
    import uuid

    ids = {e.new_event_id() for _ in range(2000)}
    assert len(ids) == 2000
    for i in list(ids)[:200]:
        parsed = uuid.UUID(i)
        assert (str(parsed), parsed.version, parsed.variant) == (i, 4, uuid.RFC_4122)
