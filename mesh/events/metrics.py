"""The series of domain events, in the process's default registry (scraped on /metrics).

- `marque_outbox_pending{source}`: events committed and not yet published (the relay
  counts them about once a second); the alert `MarqueOutboxBacklogGrowing` waits on it.
- `marque_outbox_oldest_pending_seconds{source}`: the age of the oldest of them.
- `marque_events_published_total{type}`: events the relay published (JetStream acked).
- `marque_events_consumed_total{type,outcome}`: deliveries a consumer finished, by outcome:
  `handled` (the effect committed), `duplicate` (its id was in the inbox: nothing done),
  `retried` (the handler failed; redelivered later), `dead_letter` (failed too often, kept
  in the inbox), `replayed` (a dead letter handled by `python -m mesh.events.replay`).
- `marque_events_consumer_pending{consumer}`: events in the stream not yet delivered to a
  consumer (its lag), as of its last delivery.
- `marque_events_delivery_seconds{type}`: from the event's commit (`ce-time`) to its
  handler's commit.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OUTCOMES = ("handled", "duplicate", "retried", "dead_letter", "replayed")

outbox_pending = Gauge(
    "marque_outbox_pending", "Events in the outbox not yet published.", ["source"]
)
outbox_oldest_pending_seconds = Gauge(
    "marque_outbox_oldest_pending_seconds",
    "Age of the oldest event in the outbox not yet published.",
    ["source"],
)
events_published_total = Counter(
    "marque_events_published_total", "Events published to JetStream (acknowledged).", ["type"]
)
events_refused_total = Counter(
    "marque_events_refused_total",
    "Outbox events set aside after JetStream refused them again and again.",
    ["type"],
)
events_consumed_total = Counter(
    "marque_events_consumed_total",
    "Event deliveries finished by a consumer, by outcome.",
    ["type", "outcome"],
)
consumer_pending = Gauge(
    "marque_events_consumer_pending",
    "Events in the stream not yet delivered to the consumer (lag).",
    ["consumer"],
)
delivery_seconds = Histogram(
    "marque_events_delivery_seconds",
    "Seconds from an event's commit to its handler's commit.",
    ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
