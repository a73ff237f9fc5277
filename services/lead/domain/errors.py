"""The reasons the lead service gives (google.rpc.ErrorInfo.reason, AIP-193), declared once.

Clients match on these, so they are part of the contract: a new one is added here, never
spelled out at a raise. The status code comes with the error class (mesh/errors.py).
"""

from __future__ import annotations

# Not found (or not the caller's to see).
LEAD_NOT_FOUND = "LEAD_NOT_FOUND"
DEALER_NOT_FOUND = "DEALER_NOT_FOUND"
# Who may submit what.
CHANNEL_MISMATCH = "CHANNEL_MISMATCH"
DEALER_CHANNEL = "DEALER_CHANNEL"
# Invalid submissions: one field (the field's reason), several, or an ADF document.
CHANNEL_REQUIRED = "CHANNEL_REQUIRED"
INVALID_LEAD = "INVALID_LEAD"
INVALID_ADF = "INVALID_ADF"
INVALID_FIELD = "INVALID_FIELD"
FIELD_REASONS = {
    "name": "INVALID_NAME",
    "mobile": "INVALID_MOBILE",
    "email": "INVALID_EMAIL",
    "contact": "INVALID_CONTACT",
    "city": "INVALID_CITY",
    "province": "INVALID_PROVINCE",
    "brand": "INVALID_BRAND",
    "series": "INVALID_SERIES",
    "model": "INVALID_MODEL",
    "trim": "INVALID_TRIM",
    "preferred_dealer_id": "INVALID_PREFERRED_DEALER_ID",
}
# Follow-up and assignment.
INVALID_STATUS_TRANSITION = "INVALID_STATUS_TRANSITION"
LOST_REASON_REQUIRED = "LOST_REASON_REQUIRED"
LOST_REASON_UNEXPECTED = "LOST_REASON_UNEXPECTED"
TOO_LONG = "TOO_LONG"
LEAD_CLOSED = "LEAD_CLOSED"
DEALER_INACTIVE = "DEALER_INACTIVE"
DEALER_BRAND_MISMATCH = "DEALER_BRAND_MISMATCH"
DEALER_EXISTS = "DEALER_EXISTS"


def field_reason(field_path: str) -> str:
    """The reason for one bad field of a lead ("lead.customer.mobile" → INVALID_MOBILE)."""
    return FIELD_REASONS.get(field_path.rsplit(".", 1)[-1], INVALID_LEAD)
