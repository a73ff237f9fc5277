"""The subset of STAR the adapter uses, checked on a parsed JSON document: required
fields, types, enumerations, VINs, date-times and decimal amounts. Everything wrong is
reported at once, as `(field path, what is wrong)` pairs (`$.labor_operations[1].amount.
value`), so a DMS fixes its document in one round.

STAR declares no required fields; these are the ones the adapter needs to act:
- repair order: `repair_order_id`; estimate lines from `labor_operations[]` and
  `repair_order_line_items[].service_jobs[].labor_operations[]`, each with its
  `labor_operation_id`;
- repair status event: `repair_status_event_id`, `repair_stage_type`,
  `occurrence_date_time`, and `repair_order_id` (Marque's one addition: STAR nests the
  event in its repair order, a standalone post must say which order it moves);
- retail delivery report: `retail_delivery_report_id`, `oem_rdr_status_type`, the VIN
  (`vehicle.vin`, or `vehicle.vehicle_identifier.vin` as older RDRs send it), and
  `occurrence_date_time` or `sale_date`;
- service appointment: `service_appointment_key` (or `_id`), `appointment_status_type`.
Unknown fields are ignored (STAR documents are large; the adapter reads what it uses). A
VIN is checked as every VIN of the platform is (mesh/vin.py, the check digit included).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from mesh import vin as vins
from mesh.errors import InvalidArgument
from services.adapters.dms.domain import star_enums as enums
from services.adapters.dms.domain.model import (
    Amount,
    Appointment,
    DeliveryReport,
    EstimateLine,
    Kind,
    Parsed,
    RepairOrder,
    RepairStatus,
)

MAX_ID = 80
MAX_LINES = 500


class Invalid(Exception):
    """The document does not fit the subset: every violation found."""

    def __init__(self, violations: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {d}" for p, d in violations))
        self.violations = violations


class _Reader:
    """Reads fields of a JSON object by path, noting what is wrong instead of raising."""

    def __init__(self) -> None:
        self.violations: list[tuple[str, str]] = []

    def bad(self, path: str, description: str) -> None:
        self.violations.append((path, description))

    def obj(self, parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(f"{path}.{key}", "must be an object")
            return {}
        return value

    def array(self, parent: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(f"{path}.{key}", "must be an array")
            return []
        if len(value) > MAX_LINES:
            self.bad(f"{path}.{key}", f"at most {MAX_LINES} items")
            return []
        return value

    def text(
        self, parent: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> str:
        value = parent.get(key)
        where = f"{path}.{key}"
        if value is None or value == "":
            if required:
                self.bad(where, "is required")
            return ""
        if not isinstance(value, str):
            self.bad(where, "must be a string")
            return ""
        if len(value) > MAX_ID or "\x00" in value:
            self.bad(where, f"at most {MAX_ID} characters, no NUL")
            return ""
        return value.strip()

    def enum(
        self,
        parent: Mapping[str, Any],
        key: str,
        path: str,
        allowed: frozenset[str],
        *,
        required: bool = False,
    ) -> str:
        value = self.text(parent, key, path, required=required)
        if value and value not in allowed:
            self.bad(f"{path}.{key}", f"{value!r} is not a STAR value ({_few(allowed)})")
            return ""
        return value

    def time(
        self, parent: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> dt.datetime | None:
        value = self.text(parent, key, path, required=required)
        if not value:
            return None
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None or "T" not in value:
            self.bad(f"{path}.{key}", "must be an RFC 3339 date-time with its offset")
            return None
        return parsed.astimezone(dt.UTC)

    def date(self, parent: Mapping[str, Any], key: str, path: str) -> dt.datetime | None:
        value = self.text(parent, key, path)
        if not value:
            return None
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            self.bad(f"{path}.{key}", "must be a date (YYYY-MM-DD)")
            return None
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)

    def vin(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool) -> str:
        value = self.text(parent, key, path, required=required)
        if not value:
            return ""
        try:
            return vins.normalize(f"{path}.{key}", value)
        except InvalidArgument as e:
            self.bad(f"{path}.{key}", e.field_violations[0].description)
            return ""

    def amount(self, value: Any, path: str, currency: str) -> Amount | None:
        if value is None:
            return None
        if isinstance(value, str):  # a bare decimal string, in the document's currency
            value = {"value": value}
        if not isinstance(value, dict):
            self.bad(path, "must be an object with a decimal string value")
            return None
        raw = value.get("value", value.get("amount"))
        cur = value.get("currency_code") or currency
        try:
            if not isinstance(raw, str):
                raise InvalidOperation
            number = Decimal(raw)
            if not number.is_finite() or abs(number) >= Decimal("1e15"):
                raise InvalidOperation
        except InvalidOperation:
            self.bad(f"{path}.value", 'must be a decimal string, e.g. "45.00"')
            return None
        if not (isinstance(cur, str) and len(cur) == 3 and cur.isalpha() and cur.isupper()):
            self.bad(f"{path}.currency_code", "must be an ISO 4217 code (or locale.currency_code)")
            return None
        return Amount(number, cur)


def _few(allowed: frozenset[str]) -> str:
    some = sorted(allowed)
    return ", ".join(some[:6]) + (", ..." if len(some) > 6 else "")


def digest(document: Mapping[str, Any]) -> str:
    """A digest of the content, whatever the key order and spacing (the revision of a
    document that carries no status time)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _lines(r: _Reader, doc: Mapping[str, Any], currency: str) -> list[EstimateLine]:
    found: list[tuple[Any, str]] = [
        (op, f"$.labor_operations[{i}]")
        for i, op in enumerate(r.array(doc, "labor_operations", "$"))
    ]
    for i, item in enumerate(r.array(doc, "repair_order_line_items", "$")):
        base = f"$.repair_order_line_items[{i}]"
        if not isinstance(item, dict):
            r.bad(base, "must be an object")
            continue
        for j, job in enumerate(r.array(item, "service_jobs", base)):
            jpath = f"{base}.service_jobs[{j}]"
            if not isinstance(job, dict):
                r.bad(jpath, "must be an object")
                continue
            ops = r.array(job, "labor_operations", jpath)
            found += [(op, f"{jpath}.labor_operations[{k}]") for k, op in enumerate(ops)]
    lines = []
    for op, path in found:
        if not isinstance(op, dict):
            r.bad(path, "must be an object")
            continue
        lines.append(
            EstimateLine(
                labor_operation_id=r.text(op, "labor_operation_id", path, required=True),
                code=r.text(op, "labor_operation_code", path),
                name=r.text(op, "labor_operation_name", path) or r.text(op, "name", path),
                status=r.enum(
                    op, "labor_operation_status_type", path, enums.LABOR_OPERATION_STATUS_TYPES
                ),
                amount=r.amount(op.get("amount"), f"{path}.amount", currency),
            )
        )
    return lines


def repair_order(doc: Mapping[str, Any]) -> Parsed:
    """A repair order (POST .../repair-orders); its revision is its content's digest."""
    r = _Reader()
    ro_id = r.text(doc, "repair_order_id", "$", required=True)
    currency = r.text(r.obj(doc, "locale", "$"), "currency_code", "$.locale") or "CNY"
    vehicle = r.obj(doc, "vehicle_reference", "$")
    vin = r.vin(vehicle, "vin", "$.vehicle_reference", required=False)
    lines = _lines(r, doc, currency)
    total_of = r.obj(doc, "total_assessment", "$").get("grand_total")
    if total_of is None:
        total_of = r.obj(doc, "repair_financial_summary", "$").get("estimated_grand_total_amount")
    total = r.amount(total_of, "$.total_assessment.grand_total", currency)
    _raise(r)
    return Parsed(
        Kind.REPAIR_ORDER, ro_id, digest(doc), RepairOrder(ro_id, vin, tuple(lines), total)
    )


def repair_status_event(doc: Mapping[str, Any]) -> Parsed:
    """A stage change (POST .../repair-status-events); revision: its time and stage."""
    r = _Reader()
    ro_id = r.text(doc, "repair_order_id", "$", required=True)
    event_id = r.text(doc, "repair_status_event_id", "$", required=True)
    stage = r.enum(doc, "repair_stage_type", "$", enums.REPAIR_STAGE_TYPES, required=True)
    status = r.enum(doc, "repair_status_type", "$", enums.REPAIR_STATUS_TYPES)
    when = r.time(doc, "occurrence_date_time", "$", required=True)
    _raise(r)
    assert when is not None
    revision = f"{when.isoformat()}|{stage}"
    return Parsed(
        Kind.REPAIR_STATUS_EVENT,
        f"{ro_id}/{event_id}",
        revision,
        RepairStatus(ro_id, event_id, stage, status, when),
    )


def retail_delivery_report(doc: Mapping[str, Any]) -> Parsed:
    """An RDR (POST .../retail-delivery-reports); revision: its occurrence time."""
    r = _Reader()
    rdr_id = r.text(doc, "retail_delivery_report_id", "$", required=True)
    status = r.enum(doc, "oem_rdr_status_type", "$", enums.OEM_RDR_STATUS_TYPES, required=True)
    purchase = r.enum(doc, "purchase_type", "$", enums.PURCHASE_TYPES)
    vehicle = r.obj(doc, "vehicle", "$")
    if "vin" in vehicle or "vehicle_identifier" not in vehicle:
        vin = r.vin(vehicle, "vin", "$.vehicle", required=True)
    else:
        ident = r.obj(vehicle, "vehicle_identifier", "$.vehicle")
        vin = r.vin(ident, "vin", "$.vehicle.vehicle_identifier", required=True)
    when = r.time(doc, "occurrence_date_time", "$") or r.date(doc, "sale_date", "$")
    if when is None and not any(
        p.endswith(("occurrence_date_time", "sale_date")) for p, _ in r.violations
    ):
        r.bad("$.occurrence_date_time", "is required (or sale_date)")
    order_id = r.text(doc, "sales_transaction_number", "$")
    _raise(r)
    assert when is not None
    report = DeliveryReport(rdr_id, vin, order_id, status, purchase, when)
    return Parsed(Kind.RETAIL_DELIVERY_REPORT, rdr_id, f"{when.isoformat()}|{status}", report)


def service_appointment(doc: Mapping[str, Any]) -> Parsed:
    """A service appointment (POST .../service-appointments); revision: content digest."""
    r = _Reader()
    appt_id = r.text(doc, "service_appointment_key", "$") or r.text(
        doc, "service_appointment_id", "$", required=True
    )
    status = r.enum(
        doc, "appointment_status_type", "$", enums.APPOINTMENT_STATUS_TYPES, required=True
    )
    types = []
    for i, t in enumerate(r.array(doc, "appointment_types", "$")):
        if not isinstance(t, str) or t not in enums.APPOINTMENT_TYPES:
            r.bad(f"$.appointment_types[{i}]", f"{t!r} is not a STAR value")
        else:
            types.append(t)
    period = r.obj(doc, "appointment_period", "$")
    start = r.time(period, "start_date_time", "$.appointment_period")
    end = r.time(period, "complete_date_time", "$.appointment_period")
    if start and end and end < start:
        r.bad("$.appointment_period.complete_date_time", "must not be before start_date_time")
    asset = r.obj(doc, "vehicle_asset", "$")
    ref = r.obj(asset, "vehicle_reference", "$.vehicle_asset")
    vin = r.vin(ref, "vin", "$.vehicle_asset.vehicle_reference", required=False)
    _raise(r)
    appt = Appointment(appt_id, status, tuple(types), vin, start, end)
    return Parsed(Kind.SERVICE_APPOINTMENT, appt_id, digest(doc), appt)


def _raise(r: _Reader) -> None:
    if r.violations:
        raise Invalid(r.violations)


PARSERS = {
    Kind.REPAIR_ORDER: repair_order,
    Kind.REPAIR_STATUS_EVENT: repair_status_event,
    Kind.RETAIL_DELIVERY_REPORT: retail_delivery_report,
    Kind.SERVICE_APPOINTMENT: service_appointment,
}


def parse(kind: Kind, document: Any) -> Parsed:
    """The document of `kind` read and checked; `Invalid` lists what is wrong."""
    if not isinstance(document, dict):
        raise Invalid([("$", "must be a JSON object")])
    return PARSERS[kind](document)
