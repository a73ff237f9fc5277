"""ADF parsing: the real-world samples in ../shared/data/adf and the ways ADF breaks."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.errors import InvalidArgument
from services.lead.domain.adf import parse_adf, parse_adf_time, region_of_country
from services.lead.domain.cleansing import cleanse
from services.lead.domain.config import LeadConfig
from services.lead.domain.model import Channel, TimeFrame

ADF_DIR = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "adf").resolve()
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CONFIG = LeadConfig()


def sample(name: str) -> str:
    path = ADF_DIR / name
    if not path.is_file():
        pytest.skip(f"ADF sample {path} not present (../shared/data is beside the checkout)")
    return path.read_text(encoding="utf-8")


def doc(prospect_body: str, *, attrs: str = "", prolog: str = '<?xml version="1.0"?>') -> str:
    return f"{prolog}\n<adf><prospect{attrs}>{prospect_body}</prospect></adf>"


CONTACT = (
    "<customer><contact><name part='full'>Li Lei</name>"
    "<phone type='cellphone'>+86 139 1234 5670</phone></contact></customer>"
)


def test_every_sample_parses_into_a_usable_lead() -> None:
    files = sorted(ADF_DIR.glob("*.xml")) if ADF_DIR.is_dir() else []
    if not files:
        pytest.skip(f"no ADF samples under {ADF_DIR}")
    for path in files:
        lead = parse_adf(path.read_text(encoding="utf-8"), now=NOW)
        clean = cleanse(lead, CONFIG)
        assert clean.mobile_e164 or clean.email, path.name
        assert clean.channel is Channel.ADF


def test_spec_minimal_example_with_malformed_declaration() -> None:
    lead = parse_adf(sample("adf_spec_minimal_example.xml"), now=NOW)
    assert lead.name == "John Doe"
    assert (lead.brand, lead.series, lead.model) == ("Chevrolet", "Blazer", "Blazer")
    assert lead.mobile == "393-999-3922" and lead.phone_region is None
    assert lead.request_time == datetime(2000, 3, 30, 23, 30, 20, tzinfo=UTC)
    assert lead.from_adf and lead.field_prefix == "raw_adf"
    clean = cleanse(lead, CONFIG)  # no address: the US default applies
    assert clean.mobile_e164 == "+13939993922"
    assert clean.email is None


def test_approvalgenie_lead_with_odd_phone_types_and_no_usable_phone() -> None:
    lead = parse_adf(sample("approvalgenie_lead1.xml"), now=NOW)
    assert lead.name == "John Test01292019"  # empty middle name skipped
    assert lead.email == "testemail@domain.com"
    # cellphone first, then the preferred "phone"; pager and fax are not contacts.
    assert (lead.mobile, lead.alt_phones) == ("9999999999", ("1234567890",))
    assert lead.phone_region == "CA"
    assert (lead.city, lead.province) == ("Mississauga", "ON")
    assert (lead.brand, lead.series, lead.model) == ("Hyundai", "i30", "i30")
    assert lead.request_time == datetime(2019, 1, 16, 0, 46, 36, tzinfo=UTC)
    assert lead.channel_lead_id == ""  # <id> is empty
    clean = cleanse(lead, CONFIG)
    assert clean.mobile_e164 is None  # both numbers are junk
    assert clean.email == "testemail@domain.com"
    assert clean.contact_key == "email:testemail@domain.com"


def test_trade_in_is_ignored_and_a_bare_vehicle_means_buy() -> None:
    body = (
        "<vehicle interest='trade-in' status='used'><year>2012</year><make>Buick</make>"
        "<model>Regal</model></vehicle>"
        "<vehicle><year>2026</year><make>Marque</make><model>M5</model><trim>Pro</trim>"
        "</vehicle>" + CONTACT
    )
    lead = parse_adf(doc(body), now=NOW)
    assert (lead.brand, lead.series, lead.model, lead.trim) == ("Marque", "M5", "M5", "Pro")


def test_only_a_trade_in_leaves_the_brand_empty_but_keeps_the_lead() -> None:
    body = "<vehicle interest='trade-in'><make>Buick</make><model>Regal</model></vehicle>"
    lead = parse_adf(doc(body + CONTACT), now=NOW)
    assert lead.brand == ""
    assert cleanse(lead, CONFIG).mobile_e164 == "+8613912345670"


def test_resend_id_and_vendor_without_vendorname() -> None:
    body = (
        "<id sequence='1' source='AutoTrader'>AT-778</id>"
        "<requestdate>2026-11-20T8:47:50-08:0</requestdate>"
        "<vehicle><make>Marque</make><model>M7</model></vehicle>"
        + CONTACT
        + "<vendor><id>D-SH-01</id><contact><name>Sales</name></contact></vendor>"
    )
    lead = parse_adf(doc(body, attrs=' status="resend"'), now=NOW)
    assert lead.resend
    assert lead.channel_lead_id == "AutoTrader:AT-778"
    assert lead.preferred_dealer_id == "D-SH-01"
    assert lead.request_time == datetime(2026, 11, 20, 16, 47, 50, tzinfo=UTC)


def test_mobile_type_beats_preferred_contact_and_fax_is_skipped() -> None:
    body = (
        "<customer><contact><name>Han Meimei</name>"
        "<phone type='fax'>13700000001</phone>"
        "<phone type='voice' preferredcontact='1'>021-61234567</phone>"
        "<phone type='mobile'>13912345670</phone>"
        "<phone>13812345679</phone></contact></customer>"
    )
    lead = parse_adf(doc(body), now=NOW)
    assert lead.mobile == "13912345670"
    assert lead.alt_phones == ("021-61234567", "13812345679")


def test_upper_case_tags_namespaces_bare_ampersands_and_html_entities() -> None:
    text = (
        '<?XML VERSION "1.0"?><ADF xmlns="urn:x"><PROSPECT><VEHICLE><MAKE>Marque</MAKE>'
        "<MODEL>M5</MODEL></VEHICLE><CUSTOMER><CONTACT><NAME part='first'>Li</NAME>"
        "<NAME part='last'>Lei</NAME><EMAIL>li@example.com</EMAIL></CONTACT>"
        "<COMMENTS>Rent &amp; own & want a test drive&nbsp;soon</COMMENTS></CUSTOMER>"
        "</PROSPECT></ADF>"
    )
    lead = parse_adf(text, now=NOW)
    assert lead.name == "Li Lei"
    assert lead.email == "li@example.com"
    assert lead.test_drive_requested


def test_timeframe_from_dates_and_descriptions() -> None:
    def frame(timeframe: str, requestdate: str = "2026-11-01T10:00:00Z") -> TimeFrame:
        body = f"<requestdate>{requestdate}</requestdate><customer><contact><name>A B</name>"
        body += f"<email>a@b.com</email></contact><timeframe>{timeframe}</timeframe></customer>"
        return parse_adf(doc(body), now=NOW).time_frame

    assert frame("<latestdate>2026-11-06</latestdate>") is TimeFrame.WITHIN_7_DAYS
    assert frame("<earliestdate>2026-11-20</earliestdate>") is TimeFrame.WITHIN_30_DAYS
    assert frame("<description>within 2 weeks</description>") is TimeFrame.WITHIN_15_DAYS
    assert frame("<description>ASAP</description>") is TimeFrame.WITHIN_7_DAYS
    assert frame("<description>3 months</description>") is TimeFrame.WITHIN_90_DAYS
    assert frame("<description>1 year</description>") is TimeFrame.LATER
    assert frame("<description>just looking</description>") is TimeFrame.UNKNOWN


def test_a_bare_prospect_root_is_accepted() -> None:
    text = "<prospect><customer><contact><name>A B</name><email>a@b.com</email></contact>"
    text += "</customer></prospect>"
    assert parse_adf(text, now=NOW).email == "a@b.com"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not xml at all", "well-formed"),
        ("<adf><prospect>", "well-formed"),
        ("<html><body/></html>", "root element <html>"),
        ("<adf></adf>", "no <prospect>"),
        (doc("<customer><contact><name>A</name></contact></customer>"), "no usable contact"),
        (doc("<vehicle><make>M</make></vehicle>"), "no usable contact"),
        (
            '<?xml version="1.0"?><!DOCTYPE adf [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
            "<adf><prospect>&b;</prospect></adf>",
            "entity declarations",
        ),
    ],
)
def test_rejections_name_raw_adf_and_say_why(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_adf(text, now=NOW)
    (violation,) = caught.value.field_violations
    assert violation.field == "raw_adf"
    assert problem in violation.description
    assert caught.value.reason == "INVALID_ADF"


def test_a_doctype_without_entities_is_stripped_not_fetched() -> None:
    text = '<?xml version="1.0"?><!DOCTYPE adf SYSTEM "http://example.invalid/adf.dtd">'
    text += f"<adf><prospect>{CONTACT}</prospect></adf>"
    assert parse_adf(text, now=NOW).name == "Li Lei"


def test_the_error_field_follows_the_request() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_adf("<adf/>", now=NOW, field="rows.raw_adf")
    assert caught.value.field_violations[0].field == "rows.raw_adf"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-01-15T18:46:36-06:00", datetime(2019, 1, 16, 0, 46, 36, tzinfo=UTC)),
        ("2000-03-30T8:47:50-08:0", datetime(2000, 3, 30, 16, 47, 50, tzinfo=UTC)),
        ("2000-03-30T08:47:50-0800", datetime(2000, 3, 30, 16, 47, 50, tzinfo=UTC)),
        ("2000-03-30T08:47Z", datetime(2000, 3, 30, 8, 47, tzinfo=UTC)),
        ("2000-03-30 08:47:50.123+05:30", datetime(2000, 3, 30, 3, 17, 50, tzinfo=UTC)),
        ("2000-03-30", datetime(2000, 3, 30, tzinfo=UTC)),
        ("2000-13-30", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_lenient_times(text: str, expected: datetime | None) -> None:
    assert parse_adf_time(text) == expected


def test_countries() -> None:
    assert region_of_country("Canada") == "CA"
    assert region_of_country(" united  states ") == "US"
    assert region_of_country("de") == "DE"
    assert region_of_country("Atlantis") is None


@settings(deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_is_rejected_cleanly(text: str) -> None:
    try:
        parse_adf(text, now=NOW)
    except InvalidArgument as error:
        assert error.field_violations[0].field == "raw_adf"


@settings(deadline=None)
@given(st.text(alphabet="<>/?!&;'\"= adfprospectcustomerphone1", max_size=200))
def test_xmlish_noise_parses_or_is_rejected_cleanly(text: str) -> None:
    with contextlib.suppress(InvalidArgument):
        parse_adf(text, now=NOW)


@pytest.mark.parametrize(
    "text",
    [
        "<?" * 300_000,
        "<!DOCTYPE a" * 90_000,
        "<!DOCTYPE a [ " * 70_000,
        "&" + "a" * 1_000_000,
        "<a>" * 100_000 + "</a>" * 100_000,
        "<adf><prospect><customer><contact><email>a@b.com</email></contact><timeframe>"
        "<description>" + "1" * 900_000 + "</description></timeframe></customer></prospect></adf>",
    ],
)
def test_hostile_documents_are_handled_in_linear_time(text: str) -> None:
    # Each of these took minutes with backtracking regular expressions; now milliseconds.
    with contextlib.suppress(InvalidArgument):
        parse_adf(text, now=NOW)


def test_non_ascii_before_a_doctype_keeps_offsets_right() -> None:
    text = (
        "<!-- ßİ --><!DOCTYPE adf SYSTEM 'adf.dtd'>" + f"<adf><prospect>{CONTACT}</prospect></adf>"
    )
    assert parse_adf(text, now=NOW).name == "Li Lei"


def contact(phone: str, country: str = "") -> str:
    address = f"<address><country>{country}</country></address>" if country else ""
    return (
        f"<customer><contact><name part='full'>Li Lei</name><phone>{phone}</phone>{address}"
        "</contact></customer>"
    )


@pytest.mark.parametrize("phone", ["13912345670", "13700001111", "139 1234 5670"])
def test_a_chinese_mobile_without_country_is_chinese(phone: str) -> None:
    lead = parse_adf(doc("<vehicle><make>Marque</make></vehicle>" + contact(phone)), now=NOW)
    assert cleanse(lead, CONFIG).mobile_e164 == "+86" + phone.replace(" ", "")


@pytest.mark.parametrize(
    ("phone", "country", "e164"),
    [
        ("(212) 555-0123", "", "+12125550123"),  # valid in the US: stays there
        ("416-555-0199", "CA", "+14165550199"),
        ("393-999-3922", "", "+13939993922"),  # not valid anywhere: the lenient US reading
        ("13912345670", "US", "+8613912345670"),  # a Chinese mobile, whatever the address
    ],
)
def test_adf_phone_region(phone: str, country: str, e164: str) -> None:
    lead = parse_adf(
        doc("<vehicle><make>Marque</make></vehicle>" + contact(phone, country)), now=NOW
    )
    assert cleanse(lead, CONFIG).mobile_e164 == e164


def test_the_model_year_is_its_own_field() -> None:
    body = "<vehicle><year>2026</year><make>Marque</make><model>M5</model></vehicle>" + CONTACT
    lead = parse_adf(doc(body), now=NOW)
    assert (lead.series, lead.model, lead.model_year) == ("M5", "M5", 2026)
    assert cleanse(lead, CONFIG).model_year == 2026
    odd = parse_adf(doc(body.replace("2026", "MMXXVI")), now=NOW)
    assert odd.model_year == 0


@pytest.mark.parametrize(
    "text", ["9999-12-31T23:59:59-23:00", "0001-01-01T00:00:00+23:00", "9999-12-31T23:59:59-0100"]
)
def test_times_past_the_calendar_s_ends_are_no_times(text: str) -> None:
    assert parse_adf_time(text) is None
    body = (
        f"<requestdate>{text}</requestdate><vehicle><make>Marque</make></vehicle>"
        "<customer><contact><name part='full'>Li Lei</name><phone>13912345670</phone>"
        f"</contact><timeframe><latestdate>{text}</latestdate></timeframe></customer>"
    )
    lead = parse_adf(doc(body), now=NOW)
    assert lead.request_time is None
