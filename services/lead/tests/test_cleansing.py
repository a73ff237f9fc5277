"""Cleansing: phone normalisation (property-based), names, emails, field paths."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mesh.errors import InvalidArgument
from services.lead.domain.cleansing import (
    check_mobile,
    clean_email,
    cleanse,
    is_junk_digits,
    mobile_home_area,
    name_problem,
)
from services.lead.domain.config import LeadConfig
from services.lead.domain.model import Channel, LeadInput, TimeFrame

CONFIG = LeadConfig()
CN_PREFIXES = [f"13{d}" for d in range(10)] + [
    "150", "151", "152", "153", "155", "156", "157", "158", "159", "166", "176", "177",
    "178", "180", "181", "182", "183", "184", "185", "186", "187", "188", "189", "191",
    "198", "199",
]  # fmt: skip


def valid_input(**changes: object) -> LeadInput:
    base: dict[str, object] = {
        "channel": Channel.AUTOHOME,
        "name": "张伟",
        "mobile": "13912345670",
        "brand": "Marque",
        "series": "M5",
        "city": "上海",
        "time_frame": TimeFrame.WITHIN_15_DAYS,
    }
    base.update(changes)
    return LeadInput(**base)  # type: ignore[arg-type]


def violations(error: InvalidArgument) -> dict[str, str]:
    return {v.field: v.description for v in error.field_violations}


@st.composite
def cn_mobiles(draw: st.DrawFn) -> str:
    number = draw(st.sampled_from(CN_PREFIXES)) + draw(st.from_regex(r"\A[0-9]{8}\Z"))
    parsed = phonenumbers.parse(number, "CN")
    assume(phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE)
    assume(not is_junk_digits(number))
    return number


def formats(number: str) -> list[str]:
    a, b, c = number[:3], number[3:7], number[7:]
    return [
        number,
        f"+86 {a} {b} {c}",
        f"+86{number}",
        f"86-{a}-{b}-{c}",
        f"86{number}",
        f"0086 {number}",
        f"(+86) {a}-{b}-{c}",
        f" {a} {b} {c} ",
        f"{a}.{b}.{c}",
        "".join(chr(ord(ch) + 0xFEE0) for ch in number),  # full-width digits
    ]


@settings(deadline=None)
@given(cn_mobiles())
def test_every_format_of_a_cn_mobile_normalises_to_the_same_e164(number: str) -> None:
    expected = "+86" + number
    for text in formats(number):
        assert check_mobile(text, "CN").e164 == expected, text
        assert cleanse(valid_input(mobile=text), CONFIG).mobile_e164 == expected


@settings(deadline=None)
@given(st.from_regex(r"\A1[0-9]{10}\Z"))
def test_an_eleven_digit_number_is_accepted_only_if_libphonenumber_says_mobile(
    number: str,
) -> None:
    try:
        parsed = phonenumbers.parse(number, "CN")
    except phonenumbers.NumberParseException:  # e.g. 110... read as a short service code
        assert check_mobile(number, "CN").e164 is None
        return
    is_mobile = (
        phonenumbers.is_valid_number(parsed)
        and phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE
        and not is_junk_digits(number)
    )
    assert (check_mobile(number, "CN").e164 is not None) == is_mobile


@settings(deadline=None, max_examples=300)
@given(
    st.sampled_from(["1", "44", "49", "33", "81", "852", "86", "61", "971"]),
    st.from_regex(r"\A[0-9]{6,12}\Z"),
)
def test_international_numbers_are_judged_as_libphonenumber_judges_them(
    country: str, digits: str
) -> None:
    """check_mobile looks the region and the type up once instead of calling
    is_valid_number: it must accept exactly the valid mobiles libphonenumber knows."""
    text = f"+{country}{digits}"
    parsed = phonenumbers.parse(text)
    mobile_types = (
        {phonenumbers.PhoneNumberType.MOBILE}
        if phonenumbers.region_code_for_number(parsed) == "CN"
        else {
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        }
    )
    expected = (
        phonenumbers.is_possible_number(parsed)
        and phonenumbers.is_valid_number(parsed)
        and phonenumbers.number_type(parsed) in mobile_types
        and not is_junk_digits(str(parsed.national_number))
    )
    result = check_mobile(text, "CN")
    assert (result.e164 is not None) == expected, (text, result)
    if expected:
        assert result.e164 == phonenumbers.format_number(
            parsed, phonenumbers.PhoneNumberFormat.E164
        )


@settings(deadline=None)
@given(st.from_regex(r"\A1[0-2][0-9]{9}\Z"))
def test_cn_numbers_outside_the_mobile_ranges_are_rejected(number: str) -> None:
    # 1[3-9]\d{9} is not enough, and 10x/11x/12x are never mobiles.
    assert check_mobile(number, "CN").e164 is None


@settings(deadline=None)
@given(st.text(max_size=20))
def test_any_text_is_either_a_mobile_or_a_reason(text: str) -> None:
    result = check_mobile(text, "CN")
    assert (result.e164 is None) == bool(result.problem)
    if result.e164:
        assert result.e164.startswith("+")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "missing"),
        ("010-12345678", "not a mobile"),  # Beijing landline
        ("14012345678", "not a valid number"),
        ("1391234567", "not a valid number"),
        ("11111111111", "junk"),
        ("12345678901", "junk"),
        ("phone me", "not a phone number"),
        ("+44 20 7946 0958", "not a mobile"),  # London landline
    ],
)
def test_unusable_numbers_carry_a_reason(raw: str, problem: str) -> None:
    assert problem in check_mobile(raw, "CN").problem


def test_foreign_mobiles_and_nanp_numbers() -> None:
    assert check_mobile("+44 7911 123456", "CN").e164 == "+447911123456"
    assert check_mobile("(650) 253-0000", "US").e164 == "+16502530000"
    # Unassigned area code: only the ADF path accepts a well-formed NANP number.
    assert check_mobile("393-999-3922", "US").e164 is None
    assert check_mobile("393-999-3922", "US", lenient_nanp=True).e164 == "+13939993922"
    assert check_mobile("123-456-7890", "US", lenient_nanp=True).e164 is None


def test_default_region_is_configurable() -> None:
    config = LeadConfig(default_region="GB")
    assert cleanse(valid_input(mobile="07911 123456"), config).mobile_e164 == "+447911123456"


@pytest.mark.parametrize(
    "name",
    ["test", "TEST", "测试", "asdf", "aaa", "a", "xx", "12345", "Test 123", "test test", "---"],
)
def test_junk_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        cleanse(valid_input(name=name), CONFIG)
    assert "lead.customer.name" in violations(caught.value)


@pytest.mark.parametrize("name", ["丽丽", "王", "王先生", "John Test01292019", "Ng", "李 四"])
def test_real_names_pass(name: str) -> None:
    assert name_problem(name) is None


def test_names_and_places_are_trimmed_and_collapsed() -> None:
    clean = cleanse(
        valid_input(name="  Zhang \t  Wei\u3000 ", city=" 上海 ", series=" M5  Pro "), CONFIG
    )
    assert (clean.name, clean.city, clean.series) == ("Zhang Wei", "上海", "M5 Pro")


def test_emails() -> None:
    assert clean_email(" Zhang.Wei+car@Example.COM ") == "zhang.wei+car@example.com"
    for bad in ("zhang", "a@b", "a b@c.com", "a@-b.com", "@x.com"):
        assert clean_email(bad) is None, bad
    with pytest.raises(InvalidArgument) as caught:
        cleanse(valid_input(email="not-an-email"), CONFIG)
    assert violations(caught.value) == {"lead.customer.email": "is not an email address"}


def test_every_bad_field_is_reported_at_once_with_its_path() -> None:
    with pytest.raises(InvalidArgument) as caught:
        cleanse(valid_input(name=" ", mobile="010-12345678", brand="", city="x" * 65), CONFIG)
    found = violations(caught.value)
    assert set(found) == {
        "lead.customer.name",
        "lead.customer.mobile",
        "lead.vehicle.brand",
        "lead.customer.city",
    }
    assert found["lead.customer.name"] == "required"
    assert caught.value.reason == "INVALID_LEAD"


def test_a_single_bad_field_names_itself_in_the_reason() -> None:
    with pytest.raises(InvalidArgument) as caught:
        cleanse(valid_input(mobile=""), CONFIG)
    assert caught.value.reason == "INVALID_MOBILE"
    assert violations(caught.value) == {"lead.customer.mobile": "required"}


def test_clean_lead_carries_everything_through() -> None:
    clean = cleanse(
        valid_input(
            email="a@b.cn",
            preferred_dealer_id=" D-SH-01 ",
            channel_lead_id="AH-1",
            request_id="r-1",
            test_drive_requested=True,
        ),
        CONFIG,
    )
    assert clean.mobile_e164 == "+8613912345670"
    assert clean.contact_key == "+8613912345670"
    assert clean.preferred_dealer_id == "D-SH-01"
    assert (clean.channel_lead_id, clean.request_id) == ("AH-1", "r-1")
    assert clean.test_drive_requested and clean.time_frame is TimeFrame.WITHIN_15_DAYS
    assert cleanse(valid_input(preferred_dealer_id=""), CONFIG).preferred_dealer_id is None


def adf_input(**changes: object) -> LeadInput:
    base: dict[str, object] = {
        "channel": Channel.ADF,
        "name": "John Doe",
        "brand": "Marque",
        "from_adf": True,
        "field_prefix": "raw_adf",
    }
    base.update(changes)
    return LeadInput(**base)  # type: ignore[arg-type]


def test_adf_takes_the_first_usable_phone_and_the_address_region() -> None:
    clean = cleanse(adf_input(mobile="9999999999", alt_phones=("416-555-0199",)), CONFIG)
    assert clean.mobile_e164 == "+14165550199"
    uk = cleanse(adf_input(mobile="07911 123456", phone_region="GB"), CONFIG)
    assert uk.mobile_e164 == "+447911123456"


def test_adf_email_only_lead_keys_on_the_email() -> None:
    clean = cleanse(adf_input(mobile="1234567890", email="J@Example.com"), CONFIG)
    assert clean.mobile_e164 is None
    assert clean.contact_key == "email:j@example.com"
    assert any("phone dropped" in note for note in clean.notes)


def test_adf_without_usable_contact_is_rejected_on_raw_adf() -> None:
    with pytest.raises(InvalidArgument) as caught:
        cleanse(adf_input(mobile="1234567890", email="nope"), CONFIG)
    found = violations(caught.value)
    assert list(found) == ["raw_adf"]
    assert "no usable contact" in found["raw_adf"]


def test_adf_name_is_optional_but_other_channels_require_it() -> None:
    assert cleanse(adf_input(name="", email="a@b.com"), CONFIG).name == ""
    with pytest.raises(InvalidArgument):
        cleanse(valid_input(name=""), CONFIG)


def test_missing_area_comes_from_the_mobiles_home_area_when_enabled() -> None:
    on = LeadConfig.from_env({"MARQUE_LEAD_INFER_AREA_FROM_MOBILE": "1"})
    assert on.infer_area_from_mobile and not CONFIG.infer_area_from_mobile
    clean = cleanse(valid_input(mobile="15928123456", city="", province=""), on)
    assert (clean.city, clean.province) == ("Chengdu", "Sichuan")
    assert "home area" in clean.notes[0]
    beijing = cleanse(valid_input(mobile="18612345678", city=""), on)
    assert (beijing.city, beijing.province) == ("Beijing", "Beijing")
    # Given places are never overridden, and the inference can be switched off.
    given_province = cleanse(valid_input(mobile="15928123456", city="", province="Guangdong"), on)
    assert (given_province.city, given_province.province) == ("", "Guangdong")
    assert cleanse(valid_input(mobile="15928123456", city=""), CONFIG).city == ""
    assert mobile_home_area("+447911123456") is None
