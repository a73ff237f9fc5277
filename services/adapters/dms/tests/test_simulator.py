"""The simulator's inbound play against the adapter over real HTTP: a repair order moving
through its stages, with a DMS's mistakes on the way, each answered as it should be."""

from __future__ import annotations

from marque.dms.v1 import dms_events_pb2

from services.adapters.dms.simulator import STAGES, play_repair_order
from services.adapters.dms.tests.harness import serve
from services.adapters.dms.tests.helpers import SECRETS, VIN, Dms


async def test_a_repair_order_moves_through_its_stages_errors_included(
    database_url: str, dms: Dms
) -> None:
    async with serve(database_url, dms) as h:
        steps = await play_repair_order(h.base, "D1", SECRETS["D1"], "RO-77", vin=VIN)
        answers = {
            s.name: (s.status, s.reason or ("duplicate" if s.duplicate else "")) for s in steps
        }
        assert answers["repair order"] == (200, "")
        assert all(answers[f"stage {stage}"] == (200, "") for stage in STAGES)
        assert answers["resend"] == (200, "duplicate")
        assert answers["replay"] == (409, "SIGNATURE_REPLAYED")
        assert answers["wrong signature"] == (401, "SIGNATURE_INVALID")
        assert answers["stale timestamp"] == (401, "TIMESTAMP_STALE")
        assert answers["cut-off body"] == (400, "MALFORMED_JSON")
        rows = await h.outbox()
        assert [r[0].rsplit(".", 1)[1] for r in rows] == ["RepairOrderReceived"] + [
            "RepairStatusChanged"
        ] * len(STAGES)
        stages = [dms_events_pb2.RepairStatusChanged.FromString(r[2]).stage for r in rows[1:]]
        assert stages == list(STAGES)
        received = dms_events_pb2.RepairOrderReceived.FromString(rows[0][2])
        assert received.vin == VIN and received.total.units == 1920
        assert {r[1] for r in rows} == {"D1/RO-77"} | {f"D1/RO-77/RO-77-E{n}" for n in range(1, 8)}
