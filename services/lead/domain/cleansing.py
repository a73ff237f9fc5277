"""Cleansing: a raw submission becomes a CleanLead, or is rejected with field and reason.

Every problem found is reported at once, as one `InvalidArgument` with one field violation
per bad field (path as in the request, e.g. "lead.customer.mobile"; ADF leads report on
"raw_adf" with the inner path in the description), so the servicer lets it propagate
and an import turns it into row rejections (`model.rejections_of`).

Mobile numbers (the dedup key) go to E.164 with libphonenumber. A number without a
country code takes `LeadConfig.default_region` (CN), or for ADF the address's country,
else `adf_default_region` (US), unless it is not valid there but a valid mobile of the
default region (`adf_mobile`); "+86", "0086", "86-", spaces, dashes, dots, brackets and
full-width digits are accepted. A Chinese number must be a mobile by libphonenumber's
metadata, which is stricter than 1[3-9]\\d{9} (e.g. 140..., 12x... are refused); other
countries accept MOBILE or FIXED_LINE_OR_MOBILE (North America cannot tell them apart).
Numbers whose digits are all the same or a plain run (12345678901, 9876543210) are junk.

ADF is the one lenient path: an ADF lead needs a usable phone OR a usable email, the
first usable of its phones wins, an unusable email is dropped with a note instead of
refusing the lead, and a North American number that is well formed (3+3+4 digits) is
accepted even when libphonenumber does not know its area code (the ADF specification's
own example uses 393). The name is optional for ADF (the contact is what matters) and
required everywhere else.

Region: city and province are tidied as given; when the customer gave neither, a Chinese
mobile's home area can fill them in (`LeadConfig.infer_area_from_mobile`, off by default
for its memory cost), so the lead routes to a nearby dealer rather than the OEM pool.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from mesh.errors import FieldViolation, InvalidArgument
from services.lead.domain import errors
from services.lead.domain.config import LeadConfig
from services.lead.domain.model import CleanLead, LeadInput, unique

MAX_NAME = 100
MAX_PLACE = 64
MAX_VEHICLE = 64
MAX_EMAIL = 254
MAX_ID = 128

_JUNK_NAMES = frozenset(
    {
        "test", "tester", "testing", "测试", "测试测试", "asdf", "asdfgh", "asdfghjkl",
        "qwer", "qwerty", "abc", "abcd", "xxx", "na", "n/a", "none", "null", "nil",
        "unknown", "匿名", "无", "noname", "no name", "demo", "sample", "fake", "dummy",
        "客户", "用户",
    }
)  # fmt: skip
_JUNK_NAME_PATTERN = re.compile(r"^(test|测试|asdf|demo|fake|dummy)[\s\d_.\-]*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s]{{1,64}}@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}$")
_PHONE_NOISE = re.compile(r"[\s\-.()/\u00a0]")
_NANP_REGIONS = frozenset(phonenumbers.region_codes_for_country_code(1))
_NANP_FORMAT = re.compile(r"^[2-9]\d{2}[2-9]\d{6}$")
_CN_WITHOUT_PLUS = re.compile(r"861\d{10}")
_DIALLED = re.compile(r"\+?\d{5,17}")
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


def tidy(text: str) -> str:
    """NFKC-normalised (full-width letters and digits become ASCII), control characters
    removed, whitespace trimmed and collapsed."""
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    if not text.isprintable():
        text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\t\n")
    return " ".join(text.split())


def name_problem(name: str) -> str | None:
    """Why a tidied, non-empty name is junk, or None if it looks like a person's name."""
    key = name.casefold()
    if key in _JUNK_NAMES or _JUNK_NAME_PATTERN.match(key):
        return "looks like a test or placeholder name"
    if not any(map(str.isalpha, key)):
        return "contains no letters"
    compact = key.replace(" ", "")
    if len(set(compact)) == 1 and (len(compact) >= 3 or compact.isascii()):
        return "is one repeated character"
    tokens = key.split()
    if len(tokens) > 1 and all(t in _JUNK_NAMES or _JUNK_NAME_PATTERN.match(t) for t in tokens):
        return "looks like a test or placeholder name"
    return None


def is_junk_digits(national: str) -> bool:
    """All digits the same, or a plain ascending/descending run (wrapping 9 -> 0)."""
    if len(national) < 6:
        return False
    if len(set(national)) == 1:
        return True
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(national)}
    return steps in ({1}, {9})


@dataclass(frozen=True, slots=True)
class MobileCheck:
    """The E.164 form of a usable number, or None and why not."""

    e164: str | None
    problem: str = ""


def check_mobile(raw: str, region: str, *, lenient_nanp: bool = False) -> MobileCheck:
    """Normalise `raw` to E.164 if it can be a mobile; `region` is used when `raw` has no
    country code. `lenient_nanp` (ADF) accepts well-formed North American numbers that
    libphonenumber does not (yet) consider valid."""
    text = _PHONE_NOISE.sub("", tidy(raw))
    if not text:
        return MobileCheck(None, "missing")
    if text.startswith("00"):
        text = "+" + text[2:]
    elif region.upper() == "CN" and _CN_WITHOUT_PLUS.fullmatch(text):
        text = "+" + text
    if not _DIALLED.fullmatch(text):
        return MobileCheck(None, "is not a phone number")
    try:
        number = phonenumbers.parse(text, region.upper())
    except NumberParseException:
        return MobileCheck(None, "is not a phone number")
    national = str(number.national_number)
    if is_junk_digits(national):
        return MobileCheck(None, "is a junk number (repeated or sequential digits)")
    if not phonenumbers.is_possible_number(number):
        return MobileCheck(None, "has the wrong number of digits")
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    # is_valid_number is "a region owns it and its type is known": the region and the type
    # are looked up once here instead of again by is_valid_number (the type match is the
    # costly part: one pattern per number type).
    home = phonenumbers.region_code_for_number(number)
    kind = phonenumbers.number_type(number)
    if home is None or kind == PhoneNumberType.UNKNOWN:
        home = phonenumbers.region_code_for_country_code(number.country_code or 0)
        if lenient_nanp and home in _NANP_REGIONS and _NANP_FORMAT.match(national):
            return MobileCheck(e164)
        return MobileCheck(None, "is not a valid number")
    if home == "CN":
        if kind != PhoneNumberType.MOBILE:
            return MobileCheck(None, "is not a mobile number (Chinese landline or service)")
    elif kind not in _MOBILE_TYPES:
        return MobileCheck(None, "is not a mobile number")
    return MobileCheck(e164)


def mobile_home_area(e164: str) -> tuple[str, str] | None:
    """(city, province) of a Chinese mobile's home area (号码归属地), in English as the
    demo dealers are written, e.g. ("Chengdu", "Sichuan"); municipalities give
    ("Beijing", "Beijing"). None for other countries or unknown prefixes. The home area
    is where the number was issued, not where the customer is, so it is only a fallback."""
    try:
        number = phonenumbers.parse(e164)
    except NumberParseException:
        return None
    if phonenumbers.region_code_for_number(number) != "CN":
        return None
    # Imported here: the geocoder's data costs ~100 MB, paid only if the option is on.
    from phonenumbers import geocoder

    description = geocoder.description_for_number(number, "en")
    if not description:
        return None
    city, _, province = (part.strip() for part in description.partition(","))
    return city, province or city


def clean_email(raw: str) -> str | None:
    """The address lower-cased if it is one (simple shape check, no DNS), else None."""
    text = raw.strip().strip("<>").strip()
    if not text or len(text) > MAX_EMAIL or not _EMAIL.match(text):
        return None
    return text.lower()


def adf_mobile(raw: str, adf_region: str, default_region: str) -> MobileCheck:
    """An ADF phone without a country code: ADF is North American, but this platform's
    ADF leads are mostly Chinese. A number that is valid in the ADF region (the address's
    country, else `adf_default_region`) stays there; one that is not, but is a valid
    mobile of `default_region`, is that region's (13912345670 is a Chinese mobile, not
    +1 391...); anything else gets the ADF region's lenient reading."""
    strict = check_mobile(raw, adf_region)
    if strict.e164 or adf_region == default_region:
        return strict if strict.e164 else check_mobile(raw, adf_region, lenient_nanp=True)
    home = check_mobile(raw, default_region)
    if home.e164:
        return home
    return check_mobile(raw, adf_region, lenient_nanp=True)


def _pick_mobile(data: LeadInput, config: LeadConfig) -> tuple[str | None, list[str]]:
    """The first usable of the submission's phones in E.164, and the others' problems."""
    problems: list[str] = []
    for raw in unique([p for p in (data.mobile, *data.alt_phones) if p.strip()]):
        if data.from_adf:
            adf_region = (data.phone_region or config.adf_default_region).upper()
            check = adf_mobile(raw, adf_region, config.default_region.upper())
        else:
            check = check_mobile(raw, (data.phone_region or config.default_region).upper())
        if check.e164:
            return check.e164, problems
        problems.append(check.problem)
    return None, problems


class _Findings:
    """The problems and notes of one cleansing, gathered rather than raised so a caller
    hears about every bad field at once (see the module docstring)."""

    __slots__ = ("data", "notes", "violations")

    def __init__(self, data: LeadInput) -> None:
        self.data = data
        self.violations: list[FieldViolation] = []
        self.notes: list[str] = []

    def bad(self, sub: str, problem: str) -> None:
        """Record a problem with field `sub`; ADF's description also names the inner path,
        since the reported field is "raw_adf"."""
        description = f"{sub}: {problem}" if self.data.from_adf else problem
        self.violations.append(FieldViolation(self.data.path(sub), description))

    def text(self, sub: str, value: str, limit: int) -> str:
        """`value` tidied, recorded as bad if still longer than `limit`."""
        value = tidy(value)
        if len(value) > limit:
            self.bad(sub, f"longer than {limit} characters")
        return value


def _clean_name(data: LeadInput, found: _Findings) -> str:
    """The tidied name; required except for ADF, where the contact is what matters."""
    name = found.text("customer.name", data.name, MAX_NAME)
    if not name:
        if not data.from_adf:
            found.bad("customer.name", "required")
    elif problem := name_problem(name):
        found.bad("customer.name", problem)
    return name


def _clean_email_field(data: LeadInput, found: _Findings) -> str | None:
    """The email if given and usable; a bad one refuses the lead, except for ADF, which
    drops it with a note (its phone may still reach the customer)."""
    if not data.email.strip():
        return None
    email = clean_email(data.email)
    if email is None:
        if data.from_adf:
            found.notes.append("email dropped: not an address")
        else:
            found.bad("customer.email", "is not an email address")
    return email


def _check_reachable(
    data: LeadInput,
    found: _Findings,
    mobile: str | None,
    email: str | None,
    phone_problems: list[str],
) -> None:
    """A lead needs a usable mobile (the dedup key); ADF settles for a phone or an email,
    noting the phones it had to drop."""
    if data.from_adf:
        if mobile is None and email is None:
            why = "; ".join(f"phone {p}" for p in phone_problems) or "no phone"
            found.bad("customer.contact", f"no usable contact (no valid phone or email): {why}")
        elif phone_problems and mobile is None:
            found.notes.append("phone dropped: " + "; ".join(phone_problems))
    elif mobile is None:
        found.bad("customer.mobile", phone_problems[0] if phone_problems else "required")


def _clean_area(
    data: LeadInput, config: LeadConfig, found: _Findings, mobile: str | None
) -> tuple[str, str]:
    """(city, province) as given, or the mobile's home area when neither was given and
    `infer_area_from_mobile` is on, so the lead can still route to a nearby dealer."""
    city = found.text("customer.city", data.city, MAX_PLACE)
    province = found.text("customer.province", data.province, MAX_PLACE)
    if mobile and not city and not province and config.infer_area_from_mobile:
        area = mobile_home_area(mobile)
        if area is not None:
            city, province = area
            found.notes.append("city and province from the mobile's home area")
    return city, province


def _rejection(found: _Findings) -> InvalidArgument:
    """One InvalidArgument for every violation; a single bad field of a non-ADF lead gets
    that field's own reason so a client can act on it without parsing."""
    violations = found.violations
    if len(violations) == 1 and not found.data.from_adf:
        reason = errors.field_reason(violations[0].field)
    else:
        reason = errors.INVALID_LEAD
    return InvalidArgument(
        "; ".join(f"{v.field}: {v.description}" for v in violations),
        reason=reason,
        field_violations=violations,
    )


def cleanse(data: LeadInput, config: LeadConfig) -> CleanLead:
    """The cleansed lead, or InvalidArgument listing every bad field."""
    found = _Findings(data)
    text = found.text
    name = _clean_name(data, found)
    mobile, phone_problems = _pick_mobile(data, config)
    email = _clean_email_field(data, found)
    _check_reachable(data, found, mobile, email, phone_problems)
    city, province = _clean_area(data, config, found, mobile)
    brand = text("vehicle.brand", data.brand, MAX_VEHICLE)
    if not brand and not data.from_adf:
        found.bad("vehicle.brand", "required")
    series = text("vehicle.series", data.series, MAX_VEHICLE)
    model = text("vehicle.model", data.model, MAX_VEHICLE)
    trim = text("vehicle.trim", data.trim, MAX_VEHICLE)
    preferred = data.preferred_dealer_id.strip()
    if len(preferred) > 32:
        found.bad("preferred_dealer_id", "longer than 32 characters")
    if found.violations:
        raise _rejection(found)
    return CleanLead(
        channel=data.channel,
        name=name,
        mobile_e164=mobile,
        email=email,
        city=city,
        province=province,
        brand=brand,
        series=series,
        model=model,
        trim=trim,
        model_year=data.model_year,
        time_frame=data.time_frame,
        preferred_dealer_id=preferred or None,
        consents=data.consents,
        test_drive_requested=data.test_drive_requested,
        channel_lead_id=data.channel_lead_id.strip()[:MAX_ID],
        request_id=data.request_id.strip()[:MAX_ID],
        request_time=data.request_time,
        notes=tuple(found.notes),
    )
