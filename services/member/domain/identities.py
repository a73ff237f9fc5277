"""Member identities and their normalisation.

Two spellings of one identity must meet in the unique index, so every value is stored in
one canonical form: mobiles in E.164 (a number without country code is Chinese), e-mails
lower-cased, WeChat ids and app user ids trimmed but case-sensitive (WeChat ids are). A
WeChat openid is only unique within the app that issued it, so it keeps its `app_id`;
every other type has an empty `app_id`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from mesh import contact
from mesh.errors import FailedPrecondition
from services.member.domain.errors import IDENTITY_BELONGS_TO_OTHER_MEMBER, invalid

DEFAULT_REGION = "CN"
_WECHAT_ID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
_APP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s]{{1,64}}@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}$")
_PHONE_NOISE = re.compile(r"[\s\-.()/\u00a0]")
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


class IdentityType(StrEnum):
    """Kinds of identity; values are stored in the database."""

    MOBILE = "mobile"
    WECHAT_UNIONID = "wechat_unionid"
    WECHAT_OPENID = "wechat_openid"
    APP_USER_ID = "app_user_id"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class IdentityKey:
    """A normalised identity: what the unique index holds."""

    type: IdentityType
    value: str
    app_id: str = ""


def normalise_mobile(raw: str, field: str = "identity.value") -> str:
    """A mobile number in E.164, or InvalidArgument. Chinese numbers must be mobiles by
    libphonenumber's metadata (stricter than 1[3-9]\\d{9}); full-width digits and
    separators are accepted."""
    text = _PHONE_NOISE.sub("", raw.strip())
    text = text.translate({c: c - 0xFEE0 for c in range(0xFF10, 0xFF1A)})  # full-width digits
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except NumberParseException:
        raise invalid(field, "not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise invalid(field, "not a valid phone number")
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise invalid(field, "not a mobile number")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def normalise(
    type_: IdentityType, value: str, app_id: str = "", field: str = "identity"
) -> IdentityKey:
    """Validate and canonicalise one identity; errors name `field.value` / `field.app_id`."""
    value = value.strip()
    app_id = app_id.strip()
    value_field, app_field = f"{field}.value", f"{field}.app_id"
    if type_ is IdentityType.WECHAT_OPENID:
        if not _APP_ID.match(app_id):
            raise invalid(app_field, "a WeChat openid needs the app id that issued it")
    elif app_id:
        raise invalid(app_field, "only a WeChat openid has an app id")
    if type_ is IdentityType.MOBILE:
        return IdentityKey(type_, normalise_mobile(value, value_field))
    if type_ is IdentityType.EMAIL:
        if len(value) > 254 or not _EMAIL.match(value):
            raise invalid(value_field, "not an e-mail address")
        return IdentityKey(type_, value.lower())
    if type_ in (IdentityType.WECHAT_UNIONID, IdentityType.WECHAT_OPENID):
        if not _WECHAT_ID.match(value):
            raise invalid(value_field, "not a WeChat id (6-64 of A-Z a-z 0-9 _ -)")
        return IdentityKey(type_, value, app_id)
    if not value or len(value) > 128 or any(c.isspace() for c in value):
        raise invalid(value_field, "an app user id is 1-128 characters without spaces")
    return IdentityKey(type_, value)


def normalised(key: IdentityKey, field: str = "identity") -> IdentityKey:
    """An identity as sent (`key`), validated and canonicalised (`normalise`)."""
    return normalise(key.type, key.value, key.app_id, field)


def visible_to_dealer(key: IdentityKey) -> bool:
    """Dealers see a member's mobile and nothing else of their identities."""
    return key.type is IdentityType.MOBILE


def needs_link(member_id: str, holder: str | None) -> bool:
    """Whether linking an identity held by `holder` (None: nobody) to the member adds it;
    another member's identity is refused (OEM staff can merge the two)."""
    if holder is not None and holder != member_id:
        raise FailedPrecondition(
            "the identity belongs to another member; OEM staff can merge the two",
            reason=IDENTITY_BELONGS_TO_OTHER_MEMBER,
        )
    return holder is None


def contact_of(key: IdentityKey) -> str | None:
    """How other services know this identity (mesh/contact.py): a mobile or an e-mail; other
    identities (WeChat, app ids) mean nothing outside member."""
    if key.type is IdentityType.MOBILE:
        return contact.mobile_contact(key.value)
    if key.type is IdentityType.EMAIL:
        return contact.email_contact(key.value)
    return None


def contact_digests(keys: Iterable[IdentityKey], secret: bytes) -> list[str]:
    """The digests other services match a person by, in a stable order, without repeats."""
    found = {contact.digest(c, secret) for k in keys if (c := contact_of(k)) is not None}
    return sorted(found)
