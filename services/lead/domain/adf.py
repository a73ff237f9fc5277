"""ADF/XML (Auto-lead Data Format 1.0) documents to LeadInput, parsed as a human would.

Real ADF breaks its DTD: malformed declarations (`<?XML VERSION "1.0"?>`), no vendorname,
phone types outside the DTD, times like `T8:47:50` or zones like `-08:0`, several
`<vehicle>` elements (a trade-in beside the car wanted), `<vehicle>` with no attributes,
`prospect status="resend"`, upper-case tags, bare `&` and HTML entities in comments. So
the parser never validates against the DTD; it reads what is there and rejects only a
document that is not XML at all, holds no prospect, or carries no phone and no email.

Safety without defusedxml: before parsing, every processing instruction and the DOCTYPE
are removed, and a document declaring entities (`<!ENTITY`) is refused outright. With no
DTD left there is nothing to expand (no billion laughs, no external entity fetch: expat
never loads external DTDs or entities for xml.etree anyway), and undefined entity
references are re-escaped as text. The document size is bounded by the contract (1 MiB).

One lead per document: the first prospect, its first vehicle of interest buy or lease
(missing interest means buy; trade-in and sell vehicles are ignored). Comments are read
only to spot a test-drive request and are never kept: in the wild they carry birth dates,
incomes and employers, which the lead service has no reason to store (PIPL minimisation).
An ADF lead is a request to be contacted by the dealer it was sent to, so its consents are
contact and share_with_dealer.
"""

from __future__ import annotations

import html
import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import phonenumbers

from mesh.errors import InvalidArgument
from services.lead.domain import errors
from services.lead.domain.model import Channel, Consents, LeadInput, TimeFrame

MAX_DOCUMENT = 2 * 1024 * 1024

_ENTITY_REF = re.compile(r"&([A-Za-z][A-Za-z0-9._-]*);")
_BARE_AMP = re.compile(r"&(?![A-Za-z][A-Za-z0-9._-]*;|#\d+;|#x[0-9A-Fa-f]+;)")
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})
_TIME = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[T\s]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?:[.,]\d+)?)?"
    r"\s*(Z|[+-]\d{1,2}(?::?\d{0,2})?)?\s*$",
    re.I,
)
_SPAN = re.compile(r"(\d+)\s*(day|week|month|year)", re.I)
_SOON = re.compile(r"\b(immediate\w*|asap|now|today|this week)\b|马上|立即", re.I)
_TEST_DRIVE = re.compile(r"test[\s-]?drive|试驾", re.I)
_MOBILE_TYPES = frozenset({"cellphone", "cell", "mobile", "cellular", "cell phone", "sms"})
_NOT_PHONES = frozenset({"fax", "pager"})
_COUNTRIES = {
    "us": "US", "usa": "US", "united states": "US", "united states of america": "US",
    "america": "US", "ca": "CA", "can": "CA", "canada": "CA", "cn": "CN", "chn": "CN",
    "china": "CN", "prc": "CN", "中国": "CN", "mx": "MX", "mexico": "MX", "gb": "GB",
    "uk": "GB", "united kingdom": "GB",
}  # fmt: skip
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DEALER_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _reject(problem: str, field: str) -> InvalidArgument:
    return InvalidArgument.for_field(field, problem, reason=errors.INVALID_ADF)


def _local(tag: object) -> str:
    """Tag name without namespace, lower-cased (ADF in the wild varies the case)."""
    return str(tag).rsplit("}", 1)[-1].lower()


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    if element is None:
        return None
    found = _children(element, name)
    return found[0] if found else None


def _text(element: ET.Element | None) -> str:
    if element is None:
        return ""
    return " ".join("".join(element.itertext()).split())


def _attr(element: ET.Element, name: str, default: str = "") -> str:
    for key, value in element.attrib.items():
        if _local(key) == name:
            return value.strip()
    return default


def _strip_processing_instructions(text: str) -> str:
    """Remove every `<?...?>` (XML declarations, malformed or not, and `<?adf ...?>`) in
    one linear pass; an unterminated one runs to the end and is dropped with it."""
    out: list[str] = []
    start = 0
    while (begin := text.find("<?", start)) >= 0:
        out.append(text[start:begin])
        end = text.find("?>", begin + 2)
        if end < 0:
            return "".join(out)
        start = end + 2
    out.append(text[start:])
    return "".join(out)


def _strip_doctype(text: str) -> str:
    """Remove `<!DOCTYPE ...>` declarations, internal subset `[...]` included, in one
    linear pass; an unterminated one runs to the end and is dropped with it."""
    upper = text.translate(_ASCII_UPPER)  # same length as text, unlike str.upper()
    out: list[str] = []
    start = 0
    while (begin := upper.find("<!DOCTYPE", start)) >= 0:
        out.append(text[start:begin])
        close = upper.find(">", begin)
        bracket = upper.find("[", begin, close if close >= 0 else len(upper))
        if bracket >= 0:
            end_subset = upper.find("]", bracket)
            close = upper.find(">", end_subset) if end_subset >= 0 else -1
        if close < 0:
            return "".join(out)
        start = close + 1
    out.append(text[start:])
    return "".join(out)


def _prepare(document: str) -> str:
    """The document made safe and well-formed enough for expat (see module docstring)."""
    text = document.lstrip("\ufeff")
    if re.search(r"<!ENTITY", text, re.I):
        raise ValueError("DTD entity declarations are not accepted")
    text = _strip_doctype(_strip_processing_instructions(text))

    def entity(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _XML_ENTITIES:
            return match.group(0)
        resolved = html.unescape(match.group(0))
        return "&amp;" + name + ";" if resolved == match.group(0) else resolved

    text = _ENTITY_REF.sub(entity, text)
    return _BARE_AMP.sub("&amp;", text)


def parse_adf_time(text: str) -> datetime | None:
    """A lenient ISO 8601 reading: hours without a leading zero, zones like -08:0, -0800
    or none (UTC assumed), date only; None when it is not a date at all."""
    if len(text) > 64:
        return None
    match = _TIME.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    tz = UTC
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        rest = zone[1:]
        if ":" in rest:
            h, _, m = rest.partition(":")
        else:
            h, m = rest[:2], rest[2:]
        hours, minutes = int(h), int(m or 0)
        if hours > 23 or minutes > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        local = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=tz,
        )
        # 9999-12-31T23:59:59-23:00 is a valid local time past the last UTC one.
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def model_year(text: str) -> int:
    """The model year of `<year>` (年款), 0 when it is not a plausible one."""
    text = text.strip()
    if len(text) == 4 and text.isascii() and text.isdigit() and 1886 <= int(text) <= 2100:
        return int(text)
    return 0


def region_of_country(country: str) -> str | None:
    """ISO region code for an ADF `<country>` ("Canada", "US", "CA"...), else None."""
    key = " ".join(country.split()).casefold()
    if key in _COUNTRIES:
        return _COUNTRIES[key]
    code = key.upper()
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


def _time_frame(customer: ET.Element | None, anchor: datetime) -> TimeFrame:
    """From `<timeframe>`: latest (else earliest) date relative to the request date, else
    a description like "within 2 weeks" or "ASAP"; UNKNOWN otherwise."""
    frame = _child(customer, "timeframe")
    if frame is None:
        return TimeFrame.UNKNOWN
    for name in ("latestdate", "earliestdate"):
        when = parse_adf_time(_text(_child(frame, name)))
        if when is not None:
            days = math.ceil((when - anchor).total_seconds() / 86400)
            return TimeFrame.from_days(max(days, 0))
    description = (_text(_child(frame, "description")) or _text(frame))[:200]
    if _SOON.search(description):
        return TimeFrame.WITHIN_7_DAYS
    span = _SPAN.search(description)
    if span:
        unit = {"day": 1, "week": 7, "month": 30, "year": 365}[span.group(2).lower()]
        return TimeFrame.from_days(int(span.group(1)) * unit)
    return TimeFrame.UNKNOWN


def _name(contact: ET.Element) -> str:
    parts: dict[str, str] = {}
    for element in _children(contact, "name"):
        part = _attr(element, "part", "full").lower()
        value = _text(element)
        if value and part not in parts:
            parts[part] = value
    if "full" in parts:
        return parts["full"]
    return " ".join(parts[p] for p in ("first", "middle", "last") if p in parts)


def _phones(contact: ET.Element) -> list[str]:
    """Phone numbers, best first: mobile types, then preferred contact, then the rest in
    document order; fax and pager numbers are not ways to reach a buyer."""
    ranked: list[tuple[int, int, str]] = []
    for index, element in enumerate(_children(contact, "phone")):
        kind = _attr(element, "type", "voice").lower()
        number = _text(element)
        if not number or kind in _NOT_PHONES:
            continue
        preferred = _attr(element, "preferredcontact") == "1"
        rank = 0 if kind in _MOBILE_TYPES else (1 if preferred else 2)
        ranked.append((rank, index, number))
    return [number for _, _, number in sorted(ranked)]


def _email(contact: ET.Element) -> str:
    emails = [e for e in _children(contact, "email") if _text(e)]
    emails.sort(key=lambda e: _attr(e, "preferredcontact") != "1")
    return _text(emails[0]) if emails else ""


def _root(document: str, field: str) -> ET.Element:
    """The document's root element, parsed only once made safe (`_prepare`); every way
    it can fail is an INVALID_ADF rejection on `field`, never a parser exception."""
    if len(document) > MAX_DOCUMENT:
        raise _reject("document too large", field)
    try:
        return ET.fromstring(_prepare(document))
    except ET.ParseError as error:
        raise _reject(f"not well-formed XML: {error}", field) from None
    except ValueError as error:
        raise _reject(str(error), field) from None


def _first_prospect(root: ET.Element, field: str) -> ET.Element:
    """The one prospect a document yields: a bare `<prospect>` root is accepted as well as
    `<adf>`, because senders drop the envelope; later prospects are ignored."""
    if _local(root.tag) == "prospect":
        prospects = [root]
    elif _local(root.tag) == "adf":
        prospects = _children(root, "prospect")
    else:
        raise _reject(f"not an ADF document: root element <{_local(root.tag)}>", field)
    if not prospects:
        raise _reject("no <prospect> in the document", field)
    return prospects[0]


def _channel_lead_id(prospect: ET.Element) -> str:
    """The sender's lead id, namespaced by its `source` attribute when there is one, so
    two senders' ids for different leads cannot collide in dedup."""
    lead_id = _child(prospect, "id")
    if lead_id is None or not _text(lead_id):
        return ""
    source = _attr(lead_id, "source")
    return f"{source}:{_text(lead_id)}" if source else _text(lead_id)


def _wanted_vehicle(prospect: ET.Element) -> ET.Element | None:
    """The first vehicle the customer wants to buy or lease (missing interest means buy):
    a trade-in or a car for sale says nothing about what to route the lead on."""
    for vehicle in _children(prospect, "vehicle"):
        if _attr(vehicle, "interest", "buy").lower() in ("buy", "lease"):
            return vehicle
    return None


def _reachable_contact(
    customer: ET.Element | None, field: str
) -> tuple[ET.Element, list[str], str]:
    """The `<contact>` with its phones (best first) and email; a lead nobody can call or
    write to is refused here, before anything else is read from it."""
    contact = _child(customer, "contact")
    if contact is None:
        raise _reject("no usable contact: <customer><contact> missing", field)
    phones = _phones(contact)
    email = _email(contact)
    if not phones and not email:
        raise _reject("no usable contact: no phone and no email", field)
    return contact, phones, email


def _asks_for_test_drive(customer: ET.Element | None, vehicle: ET.Element | None) -> bool:
    """Whether the customer's or the vehicle's comments ask for a test drive: the only
    thing read from comments, which are never kept (see the module docstring)."""
    comments = " ".join(
        _text(_child(element, "comments"))[:10_000]
        for element in (customer, vehicle)
        if element is not None
    )
    return bool(_TEST_DRIVE.search(comments))


def parse_adf(document: str, *, now: datetime, field: str = "raw_adf") -> LeadInput:
    """The LeadInput of the document's first prospect (channel ADF, `from_adf` set, errors
    reported on `field`). `now` anchors a time frame when the document has no request
    date. Raises InvalidArgument (reason INVALID_ADF) for a document that is not XML, has
    no prospect, or has no phone and no email."""
    prospect = _first_prospect(_root(document, field), field)
    request_time = parse_adf_time(_text(_child(prospect, "requestdate")))
    channel_lead_id = _channel_lead_id(prospect)
    vehicle = _wanted_vehicle(prospect)
    make, model, year, trim = (_text(_child(vehicle, n)) for n in ("make", "model", "year", "trim"))
    customer = _child(prospect, "customer")
    contact, phones, email = _reachable_contact(customer, field)
    address = _child(contact, "address")
    country = _text(_child(address, "country"))
    vendor_id = _text(_child(_child(prospect, "vendor"), "id"))
    return LeadInput(
        channel=Channel.ADF,
        name=_name(contact),
        mobile=phones[0] if phones else "",
        alt_phones=tuple(phones[1:]),
        email=email,
        city=_text(_child(address, "city")),
        province=_text(_child(address, "regioncode")),
        brand=make,
        series=model,
        model=model,
        model_year=model_year(year),
        trim=trim,
        time_frame=_time_frame(customer, request_time or now),
        preferred_dealer_id=vendor_id if _DEALER_ID.match(vendor_id) else "",
        consents=Consents(contact=True, share_with_dealer=True),
        test_drive_requested=_asks_for_test_drive(customer, vehicle),
        channel_lead_id=channel_lead_id,
        phone_region=region_of_country(country) if country else None,
        request_time=request_time,
        resend=_attr(prospect, "status").lower() == "resend",
        from_adf=True,
        field_prefix=field,
    )
