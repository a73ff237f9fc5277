"""A SAP S/4HANA of our own: the subset of API_SALES_ORDER_SRV (OData V2) the adapter uses,
over real HTTP (aiohttp), with SAP's behaviour and errors.

    python -m services.adapters.erp.simulator [--port 50161] [--latency-ms 50] [--error-rate 0.1]

- `HEAD|GET <root>/` with `X-CSRF-Token: Fetch`: a token bound to a new session cookie
  (`SAP_SESSIONID_S4H_100`); a POST without the pair is 403 `X-CSRF-Token: Required`,
  body "CSRF token validation failed", as SAP Gateway answers.
- `POST <root>/A_SalesOrder`: the deep insert (`to_Item`, `to_PricingElement` PR00) ->
  201 with the order, its number (from 4000001), TotalNetAmount as a decimal string and
  CreationDate as `/Date(ms)/`. Missing or too long fields are 400 with SAP's error
  envelope and `errordetails`.
- `GET <root>/A_SalesOrder?$filter=PurchaseOrderByCustomer eq '...'`, `GET
  <root>/A_SalesOrder('4000001')` (404 envelope when unknown), `GET <root>/$metadata`.
- Basic auth (MARQUE / marque) or a bearer token from `POST /oauth/token`
  (client_credentials), both accepted.
- Knobs (`Knobs`; `POST /_sim/knobs` with JSON to change them, `GET /_sim/orders` to see
  what was created, `GET /_sim/refs` how many orders each PurchaseOrderByCustomer has,
  `POST /_sim/reset`): latency, a 5xx rate, expiring every CSRF token,
  an outage (503 on everything), and `hang_after_create` (create the order, then answer
  only after the client's timeout: the "unclear failure" of lookup-before-retry).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import random
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from importlib import resources
from typing import Any

from aiohttp import web

from services.adapters.erp.domain.config import SERVICE_PATH, SIMULATOR_PORT
from services.adapters.erp.domain.fields import check_payload
from services.adapters.erp.domain.odata import decimal_text, format_date, parse_decimal

COOKIE = "SAP_SESSIONID_S4H_100"
_FILTER = re.compile(r"^PurchaseOrderByCustomer eq '((?:[^']|'')*)'$")
_KEY = re.compile(r"^A_SalesOrder\('([^']*)'\)$")


@dataclass
class Knobs:
    """How the simulator misbehaves (all off by default)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0  # share of requests answered 500 with the envelope
    outage: bool = False  # every request 503, as SAP behind a web dispatcher in maintenance
    hang_after_create: int = 0  # the next N creates succeed, then answer after hang_seconds
    hang_seconds: float = 30.0
    expire_tokens: bool = False  # set: every token issued so far is refused once


def envelope(
    status: int, code: str, message: str, details: Sequence[dict[str, str]] = ()
) -> web.Response:
    """SAP Gateway's JSON error envelope."""
    body = {
        "error": {
            "code": code,
            "message": {"lang": "en", "value": message},
            "innererror": {
                "transactionid": secrets.token_hex(16).upper(),
                "errordetails": list(details),
            },
        }
    }
    return web.json_response(body, status=status)


class SapSimulator:
    """The simulator's state: sessions, tokens, orders."""

    def __init__(
        self, knobs: Knobs | None = None, *, user: str = "MARQUE", password: str = "marque"
    ) -> None:
        self.knobs = knobs or Knobs()
        self._basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._bearers: set[str] = set()
        self._sessions: dict[str, str] = {}  # session cookie -> CSRF token
        self.orders: dict[str, dict[str, Any]] = {}
        # PurchaseOrderByCustomer -> numbers, so a look-up costs the same at 100k orders.
        self._by_ref: dict[str, list[str]] = {}
        self.creates = 0  # POSTs that created an order
        self.csrf_fetches = 0
        self._next = 4000001
        self._rng = random.Random(7)

    def reset(self) -> None:
        """Forget every order and session (knobs back to their defaults)."""
        self.__init__()  # type: ignore[misc]

    # -- plumbing ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._misbehave])
        app.router.add_post("/oauth/token", self._oauth)
        app.router.add_post("/_sim/knobs", self._set_knobs)
        app.router.add_get("/_sim/knobs", self._get_knobs)
        app.router.add_get("/_sim/orders", self._list_orders)
        app.router.add_get("/_sim/refs", self._list_refs)
        app.router.add_post("/_sim/reset", self._reset)
        app.router.add_get(SERVICE_PATH + "/", self._fetch)
        app.router.add_get(SERVICE_PATH + "/$metadata", self._metadata)
        app.router.add_post(SERVICE_PATH + "/A_SalesOrder", self._create)
        app.router.add_get(SERVICE_PATH + "/{entity}", self._get)
        return app

    @web.middleware
    async def _misbehave(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        if self.knobs.latency_ms:
            await asyncio.sleep(self.knobs.latency_ms / 1000)
        if self.knobs.outage:
            return web.Response(
                status=503, text="<html>Service Unavailable</html>", content_type="text/html"
            )
        if request.path != "/oauth/token" and not self._authorised(request):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="SAP"'})
        if self.knobs.error_rate and self._rng.random() < self.knobs.error_rate:
            return envelope(500, "/IWBEP/CM_MGW_RT/020", "Internal server error; try again later")
        return await handler(request)

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth == self._basic:
            return True
        return auth.startswith("Bearer ") and auth[7:] in self._bearers

    async def _oauth(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials" or not request.headers.get(
            "Authorization"
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_urlsafe(24)
        self._bearers.add(token)
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": 3600}
        )

    async def _set_knobs(self, request: web.Request) -> web.Response:
        body = await request.json()
        names = {f.name for f in fields(Knobs)}
        for name, value in body.items():
            if name not in names:
                return web.json_response({"unknown knob": name}, status=400)
            setattr(self.knobs, name, value)
        if body.get("expire_tokens"):
            self._sessions = {cookie: "expired" for cookie in self._sessions}
            self.knobs.expire_tokens = False
        return await self._get_knobs(request)

    async def _get_knobs(self, _: web.Request) -> web.Response:
        return web.json_response(asdict(self.knobs))

    async def _list_orders(self, _: web.Request) -> web.Response:
        return web.json_response({"creates": self.creates, "orders": list(self.orders.values())})

    async def _list_refs(self, _: web.Request) -> web.Response:
        counts = {ref: len(numbers) for ref, numbers in self._by_ref.items()}
        return web.json_response({"creates": self.creates, "refs": counts})

    async def _reset(self, _: web.Request) -> web.Response:
        self.reset()
        return web.json_response({})

    # -- OData -------------------------------------------------------------------------------

    async def _fetch(self, request: web.Request) -> web.Response:
        headers = {"DataServiceVersion": "2.0"}
        if request.headers.get("X-CSRF-Token", "").lower() == "fetch":
            self.csrf_fetches += 1
            cookie, token = secrets.token_hex(16), secrets.token_urlsafe(18)
            self._sessions[cookie] = token
            headers["X-CSRF-Token"] = token
            resp = web.Response(status=200, headers=headers)
            resp.set_cookie(COOKIE, cookie, httponly=True, path="/")
            return resp
        return web.Response(status=200, headers=headers)

    async def _metadata(self, _: web.Request) -> web.Response:
        text = (
            resources.files("services.adapters.erp")
            .joinpath("data/API_SALES_ORDER_SRV.edmx")
            .read_text()
        )
        return web.Response(text=text, content_type="application/xml")

    def _csrf_ok(self, request: web.Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        token = request.headers.get("X-CSRF-Token", "")
        return bool(token) and self._sessions.get(cookie) == token

    async def _create(self, request: web.Request) -> web.Response:
        if not self._csrf_ok(request):
            return web.Response(
                status=403,
                text="CSRF token validation failed",
                headers={"X-CSRF-Token": "Required"},
            )
        try:
            body = await request.json()
        except ValueError:
            return envelope(400, "CX_SXML_PARSE_ERROR", "Error while parsing an XML/JSON stream")
        violations = check_payload(body) if isinstance(body, dict) else []
        if not isinstance(body, dict) or violations:
            details = [
                {
                    "code": "V1/320",
                    "message": f"{v.field}: {v.description}",
                    "severity": "error",
                    "target": v.field,
                }
                for v in violations
            ]
            return envelope(400, "V1/320", "The sales order could not be created", details)
        order = self._store(body)
        if self.knobs.hang_after_create > 0:
            self.knobs.hang_after_create -= 1
            await asyncio.sleep(self.knobs.hang_seconds)
        return web.json_response({"d": order}, status=201)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        number = str(self._next)
        self._next += 1
        items, total = [], Decimal(0)
        for item in body["to_Item"]["results"]:
            qty = parse_decimal(item["RequestedQuantity"])
            conds = item.get("to_PricingElement", {}).get("results", [])
            rate = sum(
                (
                    parse_decimal(c["ConditionRateValue"])
                    for c in conds
                    if c.get("ConditionType") == "PR00"
                ),
                Decimal(0),
            )
            net = rate * qty
            total += net
            items.append(
                {
                    **{k: v for k, v in item.items() if k != "to_PricingElement"},
                    "SalesOrder": number,
                    "NetAmount": decimal_text(net),
                }
            )
        now = dt.datetime.now(dt.UTC)
        order = {
            **{k: v for k, v in body.items() if k != "to_Item"},
            "SalesOrder": number,
            "TotalNetAmount": decimal_text(total),
            "TransactionCurrency": body.get("TransactionCurrency") or "CNY",
            "OverallSDProcessStatus": "A",
            "CreationDate": format_date(now.replace(hour=0, minute=0, second=0, microsecond=0)),
            "LastChangeDateTime": f"/Date({int(now.timestamp() * 1000)}+0000)/",
            "to_Item": {"results": items},
        }
        self.orders[number] = order
        self._by_ref.setdefault(str(body.get("PurchaseOrderByCustomer", "")), []).append(number)
        self.creates += 1
        return order

    async def _get(self, request: web.Request) -> web.Response:
        entity = request.match_info["entity"]
        key = _KEY.match(entity)
        if key is not None:
            order = self.orders.get(key.group(1))
            if order is None:
                return envelope(
                    404, "/IWBEP/CM_MGW_RT/021", f"Resource not found for segment '{entity}'"
                )
            return web.json_response({"d": order})
        if entity != "A_SalesOrder":
            return envelope(
                404, "/IWBEP/CM_MGW_RT/021", f"Resource not found for segment '{entity}'"
            )
        flt = request.query.get("$filter", "")
        found = list(self.orders.values())
        if flt:
            m = _FILTER.match(flt.strip())
            if m is None:
                return envelope(400, "/IWBEP/CM_MGW_RT/001", "Invalid filter expression")
            ref = m.group(1).replace("''", "'")
            found = [self.orders[n] for n in self._by_ref.get(ref, ())]
        top = int(request.query.get("$top", "100"))
        return web.json_response({"d": {"results": found[:top]}})


async def serve(
    sim: SapSimulator, host: str = "127.0.0.1", port: int = SIMULATOR_PORT
) -> web.AppRunner:
    """Start serving `sim` (port 0: any free one; `runner.addresses` says which)."""
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a runner listens on."""
    return int(runner.addresses[0][1])


async def _run(args: argparse.Namespace) -> None:
    knobs = Knobs(latency_ms=args.latency_ms, error_rate=args.error_rate)
    runner = await serve(SapSimulator(knobs), args.host, args.port)
    print(
        json.dumps({"sap_simulator": f"http://{args.host}:{bound_port(runner)}{SERVICE_PATH}"}),
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(
        prog="python -m services.adapters.erp.simulator", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=SIMULATOR_PORT)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
