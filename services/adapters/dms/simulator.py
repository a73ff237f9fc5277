"""A dealer DMS of our own, over real HTTP (aiohttp): it takes the adapter's outbound STAR
documents, with a DMS's behaviour and errors, and plays inbound traffic to the adapter.

    python -m services.adapters.dms.simulator [--port 50172] [--latency-ms 50] [--error-rate 0.1]
    python -m services.adapters.dms.simulator --play http://127.0.0.1:50162 --dealer D1

Outbound (the adapter calls it):
- `POST /star/v1/dealers/{dealer}/retail-delivery-reports` and `.../service-appointments`:
  the adapter's signature checked with the dealer's secret (401 otherwise, as a DMS
  would); the document recorded by its id (`retail_delivery_report_id`,
  `service_appointment_key`): 201 with a `reference` the first time, 200 with the same
  reference for a resend (counted in `resends`): a DMS keys an RDR by its id.
- Knobs (`Knobs`; `POST /_sim/knobs` with JSON, `GET /_sim/received`, `POST /_sim/reset`):
  latency, a 5xx rate, an outage (503 on everything), `reject_next` (the next N answered
  422 with an error body), `hang_after_record` (record, then answer only after
  `hang_seconds`: the unclear failure a resend must not double).
Inbound (it calls the adapter): `play_repair_order` signs and posts a repair order, then
its status events through the workshop stages, with the errors a DMS makes on the way (a
resend, a wrong signature, a stale timestamp, a replay, a cut-off body), and returns what
the adapter answered to each; `POST /_sim/play` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import httpx
from aiohttp import web

from services.adapters.dms.domain import signature
from services.adapters.dms.domain.config import SIMULATOR_PORT, dev_secret

STAGES = (
    "VEHICLE_RECEIVED",
    "EVALUATION",
    "AWAITING_CUSTOMER_AUTHORIZATION",
    "WORK_IN_PROGRESS",
    "QUALITY_ASSURANCE",
    "COMPLETED",
    "VEHICLE_DELIVERED",
)
_KEYS = {
    "retail-delivery-reports": "retail_delivery_report_id",
    "service-appointments": "service_appointment_key",
}


@dataclass
class Knobs:
    """How the simulator misbehaves (all off by default)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0  # share of requests answered 500
    outage: bool = False  # every request 503
    reject_next: int = 0  # the next N documents answered 422
    hang_after_record: int = 0  # the next N documents recorded, then answered late
    hang_seconds: float = 30.0


class DmsSimulator:
    """The simulator's state: the dealers' secrets, what was received."""

    def __init__(self, knobs: Knobs | None = None, secrets: dict[str, str] | None = None) -> None:
        self.knobs = knobs or Knobs()
        # None: the local default, every dealer signing with its dev secret.
        self.secrets = secrets
        # (dealer, collection, id) -> (reference, document)
        self.received: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
        self.posts = 0
        self.resends = 0
        self.traceparents: list[str] = []
        self._rng = random.Random(7)

    def secret_of(self, dealer: str) -> str | None:
        """The dealer's secret (its dev secret in the local default)."""
        if self.secrets is None:
            return dev_secret(dealer)
        return self.secrets.get(dealer)

    def reset(self) -> None:
        """Forget everything (knobs back to their defaults)."""
        self.__init__(secrets=self.secrets)  # type: ignore[misc]

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._misbehave])
        app.router.add_post("/_sim/knobs", self._set_knobs)
        app.router.add_get("/_sim/knobs", self._get_knobs)
        app.router.add_get("/_sim/received", self._list)
        app.router.add_post("/_sim/reset", self._reset)
        app.router.add_post("/_sim/play", self._play)
        app.router.add_post("/star/v1/dealers/{dealer}/{collection}", self._receive)
        return app

    @web.middleware
    async def _misbehave(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        if self.knobs.latency_ms:
            await asyncio.sleep(self.knobs.latency_ms / 1000)
        if self.knobs.outage:
            return web.Response(status=503, text="<html>DMS maintenance</html>")
        if self.knobs.error_rate and self._rng.random() < self.knobs.error_rate:
            return _error(500, "INTERNAL", "the DMS failed")
        return await handler(request)

    async def _receive(self, request: web.Request) -> web.Response:
        dealer, collection = request.match_info["dealer"], request.match_info["collection"]
        key_field = _KEYS.get(collection)
        if key_field is None:
            return _error(404, "NOT_FOUND", "no such collection")
        body = await request.read()
        secret = self.secret_of(dealer)
        refusal = (
            signature.Refusal(signature.BAD, "unknown dealer")
            if secret is None
            else signature.check(
                secret.encode(),
                request.headers.get(signature.TIMESTAMP_HEADER, ""),
                request.headers.get(signature.SIGNATURE_HEADER, ""),
                body,
                now=time.time(),
                max_skew=300,
            )
        )
        if refusal is not None:
            return _error(401, refusal.reason, refusal.message)
        try:
            document = json.loads(body)
            doc_id = str(document[key_field])
        except (ValueError, KeyError, TypeError):
            return _error(400, "INVALID", f"a JSON document with {key_field} is required")
        self.posts += 1
        self.traceparents.append(request.headers.get("traceparent", ""))
        if self.knobs.reject_next > 0:
            self.knobs.reject_next -= 1
            return _error(422, "REJECTED", "the dealer's DMS refused the document")
        key = (dealer, collection, doc_id)
        status = 200
        if key in self.received:
            self.resends += 1
        else:
            self.received[key] = (f"DMS-{len(self.received) + 1:06d}", document)
            status = 201
        if self.knobs.hang_after_record > 0:
            self.knobs.hang_after_record -= 1
            await asyncio.sleep(self.knobs.hang_seconds)
        return web.json_response({"reference": self.received[key][0]}, status=status)

    # -- the control API ------------------------------------------------------------------------

    async def _set_knobs(self, request: web.Request) -> web.Response:
        names = {f.name for f in fields(Knobs)}
        for key, value in (await request.json()).items():
            if key in names:
                setattr(self.knobs, key, value)
        return web.json_response(asdict(self.knobs))

    async def _get_knobs(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.knobs))

    async def _list(self, request: web.Request) -> web.Response:
        items = [
            {"dealer": d, "collection": c, "id": i, "reference": r, "document": doc}
            for (d, c, i), (r, doc) in self.received.items()
        ]
        return web.json_response({"received": items, "posts": self.posts, "resends": self.resends})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({})

    async def _play(self, request: web.Request) -> web.Response:
        spec = await request.json()
        dealer = str(spec.get("dealer", "D1"))
        steps = await play_repair_order(
            str(spec["target"]),
            dealer,
            self.secret_of(dealer) or "",
            str(spec.get("repair_order_id", "RO-SIM-1")),
            vin=str(spec.get("vin", "")),
        )
        return web.json_response({"steps": [asdict(s) for s in steps]})


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"reason": code, "message": message}}, status=status)


# -- inbound traffic ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One post of the play and what the adapter answered."""

    name: str
    status: int
    reason: str
    duplicate: bool


def repair_order_document(ro_id: str, vin: str = "") -> dict[str, Any]:
    """A repair order with two estimate lines, as a DMS sends it."""
    doc: dict[str, Any] = {
        "repair_order_id": ro_id,
        "locale": {"currency_code": "CNY"},
        "labor_operations": [
            {
                "labor_operation_id": "OP-OIL-001",
                "labor_operation_code": "01-OIL",
                "labor_operation_name": "Engine oil and filter",
                "labor_operation_status_type": "PENDING",
                "amount": {"value": "680.00", "currency_code": "CNY"},
            },
            {
                "labor_operation_id": "OP-BRAKE-002",
                "labor_operation_name": "Front brake pads",
                "labor_operation_status_type": "SCHEDULED",
                "amount": {"value": "1240.00", "currency_code": "CNY"},
            },
        ],
        "total_assessment": {"grand_total": "1920.00"},
    }
    if vin:
        doc["vehicle_reference"] = {"vin": vin}
    return doc


def status_document(ro_id: str, n: int, stage: str, when: float) -> dict[str, Any]:
    """The n-th status event of a repair order."""
    return {
        "repair_order_id": ro_id,
        "repair_status_event_id": f"{ro_id}-E{n}",
        "repair_stage_type": stage,
        "repair_status_type": "ACTIVE",
        "occurrence_date_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
    }


async def _post(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    head: dict[str, str],
    name: str,
) -> Step:
    resp = await http.post(url, content=body, headers={"Content-Type": "application/json", **head})
    try:
        answer = resp.json()
    except ValueError:
        answer = {}
    reason = answer.get("error", {}).get("reason", "") if isinstance(answer, dict) else ""
    return Step(name, resp.status_code, reason, bool(answer.get("duplicate", False)))


async def play_repair_order(
    target: str, dealer: str, secret: str, ro_id: str, *, vin: str = "", start: float | None = None
) -> list[Step]:
    """A repair order moving through its stages to the adapter at `target`, with a DMS's
    mistakes on the way; what the adapter answered to each post."""
    key = secret.encode()
    base = f"{target.rstrip('/')}/star/v1/dealers/{dealer}"
    t0 = time.time() if start is None else start
    steps: list[Step] = []
    async with httpx.AsyncClient(timeout=10) as http:

        async def send(
            path: str, doc: dict[str, Any] | bytes, name: str, **kw: Any
        ) -> dict[str, str]:
            body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
            head = kw.get("head") or signature.headers(key, int(time.time()), body)
            steps.append(await _post(http, base + path, body, head, name))
            return head

        await send("/repair-orders", repair_order_document(ro_id, vin), "repair order")
        for n, stage in enumerate(STAGES, 1):
            doc = status_document(ro_id, n, stage, t0 + 600 * n)
            head = await send("/repair-status-events", doc, f"stage {stage}")
            if n == 2:  # the DMS's retry of a post it thinks was lost, signed anew: a resend
                body = json.dumps(doc).encode()
                again = signature.headers(key, int(time.time()) + 1, body)
                await send("/repair-status-events", body, "resend", head=again)
                await send("/repair-status-events", doc, "replay", head=head)  # verbatim
            if n == 3:
                body = json.dumps(doc).encode()
                bad = signature.headers(b"not-the-dealers-secret-0", int(time.time()), body)
                await send("/repair-status-events", body, "wrong signature", head=bad)
                stale = signature.headers(key, int(time.time()) - 3600, body)
                await send("/repair-status-events", body, "stale timestamp", head=stale)
            if n == 4:
                cut = json.dumps(doc).encode()[:-7]
                await send("/repair-status-events", cut, "cut-off body")
    return steps


async def serve(sim: DmsSimulator, host: str, port: int) -> web.AppRunner:
    """Start the simulator on host:port (0: a free port); the runner stops it."""
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the simulator listens on."""
    for addr in runner.addresses:
        return int(addr[1])
    raise RuntimeError("the simulator is not listening")


async def _main(args: argparse.Namespace) -> None:
    if args.play:
        steps = await play_repair_order(
            args.play, args.dealer, dev_secret(args.dealer), args.repair_order
        )
        for s in steps:
            print(f"{s.name:28} {s.status} {s.reason or ('duplicate' if s.duplicate else 'ok')}")
        return
    knobs = Knobs(latency_ms=args.latency_ms, error_rate=args.error_rate)
    runner = await serve(DmsSimulator(knobs), args.host, args.port)
    print(f"DMS simulator on http://{args.host}:{bound_port(runner)}/star/v1", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=SIMULATOR_PORT)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--play", default="", help="post a repair order's journey to this adapter URL")
    p.add_argument("--dealer", default="D1")
    p.add_argument("--repair-order", default="RO-SIM-1")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
