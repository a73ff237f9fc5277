"""How a dealer's DMS signs what it posts to us (and how we sign what we post to it).

    X-Marque-Timestamp: 1764770400                     (Unix seconds, the sender's clock)
    X-Marque-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The timestamp is inside the signed text, so it cannot be moved without the secret; a
timestamp further than the allowed skew (5 minutes) from our clock is refused (stale), so
a captured request is only worth replaying within that window, and within it the
adapter refuses a signature it has already accepted (inbound.py, the `seen_signatures`
table). The comparison is constant-time. Plain rules on bytes: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

TIMESTAMP_HEADER = "X-Marque-Timestamp"
SIGNATURE_HEADER = "X-Marque-Signature"
SCHEME = "sha256="


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value of `body` sent at `timestamp`."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    """The two headers of a signed request."""
    ts = str(timestamp)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(secret, ts, body)}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request's signature is refused: a closed reason and a sentence for the DMS."""

    reason: str
    message: str


MISSING = "SIGNATURE_MISSING"
STALE = "TIMESTAMP_STALE"
BAD = "SIGNATURE_INVALID"


def check(
    secret: bytes, timestamp: str, signature: str, body: bytes, *, now: float, max_skew: float
) -> Refusal | None:
    """None when `signature` is the dealer's signature of `body` at a fresh `timestamp`."""
    if not timestamp or not signature:
        return Refusal(MISSING, "X-Marque-Timestamp and X-Marque-Signature are required")
    if not timestamp.isdigit() or len(timestamp) > 12:
        return Refusal(STALE, "X-Marque-Timestamp must be Unix seconds")
    skew = abs(now - int(timestamp))
    if skew > max_skew:
        return Refusal(
            STALE, f"the timestamp is {int(skew)} s from our clock (at most {max_skew:g})"
        )
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip().lower()):
        return Refusal(BAD, "the signature does not match the body and timestamp")
    return None
