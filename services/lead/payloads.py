"""What the servicer hands the engine for an intake: structured fields or an ADF document,
and an import row as decoded (engine.py takes them; servicer.py builds them)."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.errors import DomainError
from services.lead.domain.model import Channel, LeadInput


def channel_of(payload: Payload) -> str:
    """The channel a payload names (an ADF document without one is ADF's)."""
    channel: Channel | None = payload.channel
    return channel.value if channel else Channel.ADF.value


@dataclass(frozen=True, slots=True)
class RawAdf:
    """An ADF/XML document as received, with the request's own fields beside it."""

    document: str
    channel: Channel | None = None
    channel_lead_id: str = ""
    request_id: str = ""
    field: str = "raw_adf"


# What a submission carries: structured fields, or an ADF document to parse first.
Payload = LeadInput | RawAdf
# An import row as the servicer decoded it: (1-based row number, the payload or the error
# that made the row unusable before cleansing, the raw bytes the payload reference hashes).
ImportRow = tuple[int, Payload | DomainError, bytes]
