"""The dealers' HMAC signature: right, wrong, stale, missing, tampered."""

from __future__ import annotations

from services.adapters.dms.domain import signature

SECRET = b"d1-test-secret-0123456789"
BODY = b'{"repair_order_id":"RO-1"}'
NOW = 1_764_750_000.0


def _check(ts: str, sig: str, body: bytes = BODY, now: float = NOW) -> str | None:
    refusal = signature.check(SECRET, ts, sig, body, now=now, max_skew=300)
    return None if refusal is None else refusal.reason


def test_the_dealers_signature_of_the_body_and_timestamp_is_accepted() -> None:
    head = signature.headers(SECRET, int(NOW), BODY)
    ts, sig = head[signature.TIMESTAMP_HEADER], head[signature.SIGNATURE_HEADER]
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert _check(ts, sig) is None
    assert _check(ts, sig.upper().replace("SHA256=", "sha256=")) is None  # hex in any case
    assert _check(ts, sig, now=NOW + 299) is None


def test_another_secret_a_changed_body_or_a_moved_timestamp_is_refused() -> None:
    ts = str(int(NOW))
    assert _check(ts, signature.sign(b"another-secret-0123456789", ts, BODY)) == signature.BAD
    assert _check(ts, signature.sign(SECRET, ts, BODY), body=BODY + b" ") == signature.BAD
    moved = str(int(NOW) + 1)
    assert _check(moved, signature.sign(SECRET, ts, BODY)) == signature.BAD


def test_a_timestamp_beyond_the_skew_either_way_is_stale() -> None:
    for ts in (int(NOW) - 301, int(NOW) + 301):
        assert _check(str(ts), signature.sign(SECRET, str(ts), BODY)) == signature.STALE
    assert _check("2026-12-03T09:00:00Z", "sha256=00") == signature.STALE
    assert _check("1" * 13, "sha256=00") == signature.STALE


def test_missing_headers_are_refused() -> None:
    assert _check("", "sha256=00") == signature.MISSING
    assert _check(str(int(NOW)), "") == signature.MISSING
