"""The sales engine's price book and quotes: PutTrim, ListTrims, CalculateQuote,
CreateQuote, GetQuote (one method per RPC, the caller explicit).

CalculateQuote is pure CPU on the cached price book (pricebook_cache.py): no database round
trip per call. CreateQuote prices again from the database in its own transaction, so a
kept quote never depends on a cache's age, and moves the opportunity to QUOTE.
"""

from __future__ import annotations

import datetime as dt

from mesh.identity import Caller
from mesh.unit_of_work import UnitOfWork
from services.sales.base import new_id
from services.sales.domain import quoting
from services.sales.domain import visibility as vis
from services.sales.domain.errors import QUOTE_NOT_FOUND, not_found
from services.sales.domain.opportunity import Stage
from services.sales.domain.pricebook import PriceBook, Trim
from services.sales.domain.quoting import Priced, Quote, QuoteSpec
from services.sales.opportunities import Opportunities
from services.sales.store import pricebook, quotes

CREATE_QUOTE = "CreateQuote"


class Quotes(Opportunities):
    """The price book and quotes."""

    async def put_trim(self, trim: Trim, *, caller: Caller) -> Trim:
        """PutTrim: write the entry, then reload this process's price book at once."""

        async def work(uow: UnitOfWork) -> None:
            await pricebook.put(uow.conn, trim, self.clock())

        await self.write(work)
        await self.prices.refresh()
        return trim

    def list_trims(self, day: dt.date | None, model_code: str) -> list[Trim]:
        """ListTrims: the entries in effect on `day` (today by default), from the cache."""
        return self.prices.book.on(day or self.today(), model_code)

    def calculate(self, spec: QuoteSpec) -> Priced:
        """CalculateQuote: the figures, from the cached price book."""
        return quoting.price(spec, self.prices.book)

    async def create_quote(
        self,
        opportunity_id: str,
        spec: QuoteSpec,
        member_id: str,
        until: dt.date | None,
        *,
        request_id: str,
        caller: Caller,
    ) -> Quote:
        """CreateQuote: priced from the database's price book, kept until a day."""
        now, today = self.clock(), self.today()
        valid = quoting.valid_until(until, today, self.config.quote_valid_days)
        req = self.request(
            caller,
            request_id,
            CREATE_QUOTE,
            opportunity_id,
            repr(spec),
            member_id,
            valid.isoformat(),
        )

        quote_id = new_id("quo")

        async def work(uow: UnitOfWork) -> str:
            async def make() -> None:
                opp = await self.opportunity_to_change(uow, opportunity_id, caller)
                book = PriceBook(await pricebook.entries_of(uow.conn, spec.trim_code))
                priced = quoting.price(spec, book)
                quote = Quote(
                    quote_id,
                    opp.id,
                    opp.dealer_id,
                    member_id or opp.member_id,
                    spec,
                    priced,
                    valid,
                    now,
                )
                await quotes.insert(uow.conn, quote)
                await self.advance(uow, opp, Stage.QUOTE, now, member_id=quote.member_id)

            return (await self.once(uow, CREATE_QUOTE, req, quote_id, make))[0]

        return await self.get_quote(await self.write(work), caller=caller)

    async def get_quote(self, quote_id: str, *, caller: Caller) -> Quote:
        """GetQuote: a dealer its own, a customer theirs."""
        async with self.db.engine.connect() as conn:
            found = await quotes.get(conn, quote_id)
        if found is None or not vis.may_see(caller, found.dealer_id, found.member_id):
            raise not_found(QUOTE_NOT_FOUND, "quote", quote_id)
        return found
