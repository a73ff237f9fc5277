"""The STAR subset: every shared example (../shared/data/dms) accepted or refused with a
reason, the enumerations as the schemas declare them, and the ways a document breaks."""

from __future__ import annotations

import json

import pytest
import yaml  # type: ignore[import-untyped]

from services.adapters.dms.domain import star, star_enums
from services.adapters.dms.domain.errors import MALFORMED_JSON, Refused
from services.adapters.dms.domain.model import (
    Appointment,
    DeliveryReport,
    Kind,
    RepairOrder,
    RepairStatus,
)
from services.adapters.dms.intake import Intake
from services.adapters.dms.tests.helpers import SAMPLES, VIN, rdr, sample, status_event


def _violations(kind: Kind, doc: object) -> list[tuple[str, str]]:
    with pytest.raises(star.Invalid) as e:
        star.parse(kind, doc)
    return e.value.violations


def test_the_detailed_repair_cost_is_a_repair_order_with_its_estimate_lines() -> None:
    parsed = star.parse(Kind.REPAIR_ORDER, json.loads(sample("star_detailed_repair_cost.json")))
    ro = parsed.document
    assert isinstance(ro, RepairOrder) and parsed.source_id == "RO-GA-88291"
    assert [(x.labor_operation_id, x.name) for x in ro.lines] == [
        ("OP-FILTER-001", "Cabin Air Filter Replacement"),
        ("OP-WIPER-002", "SightLine Wiper Blade Set"),
    ]
    assert [str(x.amount.value) for x in ro.lines if x.amount] == ["45.00", "20.00"]
    assert ro.lines[0].amount and ro.lines[0].amount.currency == "USD"
    assert ro.total is not None and str(ro.total.value) == "134.49"


@pytest.mark.parametrize(
    "name", ["star_declined_repair_order.json", "star_repair_order_line_items.json"]
)
def test_a_repair_order_fragment_without_its_id_is_refused_naming_the_field(name: str) -> None:
    found = _violations(Kind.REPAIR_ORDER, json.loads(sample(name)))
    assert ("$.repair_order_id", "is required") in found


def test_the_rdr_example_is_refused_for_its_vin_check_digit_and_accepted_with_a_real_vin() -> None:
    doc = json.loads(sample("star_rdr_example_1.json"))
    found = _violations(Kind.RETAIL_DELIVERY_REPORT, doc)
    assert [p for p, _ in found] == ["$.vehicle.vehicle_identifier.vin"]
    assert "check digit" in found[0][1]
    doc["vehicle"]["vehicle_identifier"]["vin"] = "1G1RE6E48HF123456"  # its right digit: 8
    parsed = star.parse(Kind.RETAIL_DELIVERY_REPORT, doc)
    report = parsed.document
    assert isinstance(report, DeliveryReport)
    assert (report.rdr_id, report.vin, report.rdr_status, report.purchase_type) == (
        "RDR-99283-X",
        "1G1RE6E48HF123456",
        "TRANSMITTED",
        "RETAIL",
    )
    assert report.order_id == "TXN-88277162"
    assert report.delivery_time.isoformat() == "2026-03-13T10:30:00+00:00"


def test_the_cut_off_appointment_is_a_clear_400_and_whole_it_is_an_appointment() -> None:
    body = sample("star_service_appointment_initiate.json")
    with pytest.raises(Refused) as e:
        Intake.read(Kind.SERVICE_APPOINTMENT, body)
    assert e.value.status == 400 and e.value.reason == MALFORMED_JSON
    assert "line" in e.value.message and "column" in e.value.message
    doc = json.loads(body.decode() + "\n}")  # the closing brace the sample lacks
    found = _violations(Kind.SERVICE_APPOINTMENT, doc)
    assert [p for p, _ in found] == ["$.vehicle_asset.vehicle_reference.vin"]
    doc["vehicle_asset"]["vehicle_reference"]["vin"] = VIN
    appt = star.parse(Kind.SERVICE_APPOINTMENT, doc).document
    assert isinstance(appt, Appointment)
    assert (appt.appointment_id, appt.status, appt.types) == (
        "sa-89012345",
        "INITIATED",
        ("SCHEDULED_SERVICE", "RECALL"),
    )
    assert appt.start_time and appt.start_time.hour == 13


def test_the_enumerations_are_the_schemas() -> None:
    expected = {
        "star_repair_order.schema.yaml": {"LaborOperationStatusTypes"},
        "star_repair_status_event.schema.yaml": {"RepairStageTypes", "RepairStatusTypes"},
        "star_retail_delivery_report.schema.yaml": {"OemRdrStatusTypes", "PurchaseTypes"},
        "star_service_appointment.schema.yaml": {"AppointmentStatusTypes", "AppointmentTypes"},
    }
    for name, enums in expected.items():
        schemas = yaml.safe_load(sample(name))["components"]["schemas"]
        for enum in enums:
            constant = "".join("_" + c if c.isupper() else c for c in enum).strip("_").upper()
            assert getattr(star_enums, constant) == frozenset(schemas[enum]["enum"]), enum
    assert SAMPLES.exists()


def test_a_status_event_reports_every_fault_at_once() -> None:
    assert isinstance(star.parse(Kind.REPAIR_STATUS_EVENT, status_event()).document, RepairStatus)
    doc = {
        "repair_order_id": 7,
        "repair_stage_type": "TEA_BREAK",
        "repair_status_type": "ACTIVE",
        "occurrence_date_time": "2026-12-03 09:00",
    }
    found = _violations(Kind.REPAIR_STATUS_EVENT, doc)
    assert [p for p, _ in found] == [
        "$.repair_order_id",
        "$.repair_status_event_id",
        "$.repair_stage_type",
        "$.occurrence_date_time",
    ]
    assert found[0][1] == "must be a string" and found[1][1] == "is required"
    assert found[2][1].startswith("'TEA_BREAK' is not a STAR value (APPOINTMENT_SCHEDULED, ")
    assert found[3][1] == "must be an RFC 3339 date-time with its offset"
    assert _violations(Kind.REPAIR_STATUS_EVENT, [1]) == [("$", "must be a JSON object")]


def test_amounts_vins_and_nested_lines_are_checked_by_path() -> None:
    doc = {
        "repair_order_id": "RO-9",
        "vehicle_reference": {"vin": "LSVAU218XN218329"},
        "repair_order_line_items": [
            {
                "service_jobs": [
                    {
                        "labor_operations": [
                            {
                                "labor_operation_id": "L1",
                                "amount": {"value": "abc", "currency_code": "CNY"},
                            },
                            {"amount": "12.5"},
                        ]
                    }
                ]
            }
        ],
    }
    found = dict(_violations(Kind.REPAIR_ORDER, doc))
    assert found.keys() == {
        "$.vehicle_reference.vin",
        "$.repair_order_line_items[0].service_jobs[0].labor_operations[0].amount.value",
        "$.repair_order_line_items[0].service_jobs[0].labor_operations[1].labor_operation_id",
    }
    assert "17 characters" in found["$.vehicle_reference.vin"]


def test_an_rdr_needs_its_vin_status_and_time() -> None:
    assert isinstance(star.parse(Kind.RETAIL_DELIVERY_REPORT, rdr()).document, DeliveryReport)
    found = _violations(Kind.RETAIL_DELIVERY_REPORT, {"retail_delivery_report_id": "R"})
    assert [p for p, _ in found] == [
        "$.oem_rdr_status_type",
        "$.vehicle.vin",
        "$.occurrence_date_time",
    ]
    dated = {**rdr(), "sale_date": "2026-12-01"}
    del dated["occurrence_date_time"]
    report = star.parse(Kind.RETAIL_DELIVERY_REPORT, dated).document
    assert isinstance(report, DeliveryReport) and report.delivery_time.day == 1


def test_revisions_a_resend_keeps_and_a_change_moves() -> None:
    a = star.parse(Kind.REPAIR_ORDER, {"repair_order_id": "R", "labor_operations": []})
    b = star.parse(
        Kind.REPAIR_ORDER, json.loads('{ "labor_operations": [], "repair_order_id": "R" }')
    )
    c = star.parse(
        Kind.REPAIR_ORDER,
        {"repair_order_id": "R", "labor_operations": [{"labor_operation_id": "X"}]},
    )
    assert a.revision == b.revision != c.revision
    s1 = star.parse(Kind.REPAIR_STATUS_EVENT, status_event(n=1))
    s2 = star.parse(Kind.REPAIR_STATUS_EVENT, status_event(n=2, stage="EVALUATION"))
    assert s1.source_id != s2.source_id and s1.revision != s2.revision
