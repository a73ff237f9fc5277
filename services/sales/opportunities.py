"""The sales engine's opportunities: opened and moved by lead's events (events.py calls
`events.open_or_move`), GetOpportunity, ListOpportunities, LogFollowUp, ListFollowUps,
MarkOpportunityLost, and the stage steps the other parts take (`advance`)."""

from __future__ import annotations

import datetime as dt

from mesh.identity import Caller
from mesh.unit_of_work import UnitOfWork
from services.sales import events
from services.sales.base import EngineBase, new_id
from services.sales.domain import opportunity as rules
from services.sales.domain import visibility as vis
from services.sales.domain.errors import OPPORTUNITY_NOT_FOUND, not_found
from services.sales.domain.opportunity import Channel, FollowUp, Opportunity, Stage
from services.sales.store import opportunities as store

LOG_FOLLOW_UP = "LogFollowUp"


class Opportunities(EngineBase):
    """A dealer's pipeline."""

    async def opportunity_to_change(
        self, uow: UnitOfWork, opp_id: str, caller: Caller
    ) -> Opportunity:
        """The opportunity, locked, if the caller may change it (else NOT_FOUND)."""
        opp = await store.get(uow.conn, opp_id, lock=True)
        if opp is None or not vis.may_change(caller, opp.dealer_id):
            raise not_found(OPPORTUNITY_NOT_FOUND, "opportunity", opp_id)
        return opp

    async def advance(
        self,
        uow: UnitOfWork,
        opp: Opportunity,
        stage: Stage,
        now: dt.datetime,
        *,
        member_id: str = "",
    ) -> Opportunity:
        """Move the opportunity forward to `stage` (never back), learning the customer's
        member id if it had none; the change is an event lead follows."""
        after = rules.advance(opp, stage, now)
        if member_id and not after.member_id:
            after = rules.with_member(after, member_id, now)
        if after != opp:
            await store.update(uow.conn, after)
            if after.stage is not opp.stage:
                uow.emit(events.stage_changed(opp, after), subject=after.id)
        return after

    async def get_opportunity(self, opp_id: str, *, caller: Caller) -> Opportunity:
        """GetOpportunity: another dealer's is NOT_FOUND; a customer sees their own."""
        async with self.db.engine.connect() as conn:
            opp = await store.get(conn, opp_id)
        if opp is None or not vis.may_see(caller, opp.dealer_id, opp.member_id):
            raise not_found(OPPORTUNITY_NOT_FOUND, "opportunity", opp_id)
        return opp

    async def list_opportunities(
        self,
        dealer_id: str,
        stage: Stage | None,
        overdue_only: bool,
        after: str | None,
        limit: int,
        *,
        caller: Caller,
    ) -> list[Opportunity]:
        """ListOpportunities: one dealer's, newest first."""
        dealer = vis.dealer_for(caller, dealer_id, "dealer_id")
        overdue_at = self.clock() if overdue_only else None
        async with self.db.engine.connect() as conn:
            return await store.page(
                conn, dealer, stage=stage, overdue_at=overdue_at, after=after, limit=limit
            )

    async def log_follow_up(
        self,
        opp_id: str,
        channel: Channel,
        outcome: str,
        next_action: str,
        next_action_due: dt.datetime | None,
        *,
        request_id: str,
        caller: Caller,
    ) -> tuple[FollowUp, Opportunity]:
        """LogFollowUp: the follow-up and the opportunity's next action (and stage)."""
        now = self.clock()
        req = self.request(
            caller,
            request_id,
            LOG_FOLLOW_UP,
            opp_id,
            channel.value,
            outcome,
            next_action,
            next_action_due,
        )

        follow_up_id = new_id("fu")

        async def work(uow: UnitOfWork) -> str:
            async def make() -> None:
                opp = await self.opportunity_to_change(uow, opp_id, caller)
                after, follow_up = rules.log_follow_up(
                    opp,
                    follow_up_id,
                    channel,
                    outcome,
                    "",
                    next_action,
                    next_action_due,
                    caller.ref,
                    now,
                )
                await store.insert_follow_up(uow.conn, follow_up)
                await store.update(uow.conn, after)
                if after.stage is not opp.stage:
                    uow.emit(events.stage_changed(opp, after), subject=after.id)

            return (await self.once(uow, LOG_FOLLOW_UP, req, follow_up_id, make))[0]

        done_id = await self.write(work)
        async with self.db.engine.connect() as conn:
            follow_up = await store.get_follow_up(conn, done_id)
        assert follow_up is not None
        return follow_up, await self.get_opportunity(follow_up.opportunity_id, caller=caller)

    async def list_follow_ups(
        self, opp_id: str, after: str | None, limit: int, *, caller: Caller
    ) -> list[FollowUp]:
        """ListFollowUps: the opportunity's, newest first."""
        opp = await self.get_opportunity(opp_id, caller=caller)
        async with self.db.engine.connect() as conn:
            return await store.follow_ups_of(conn, opp.id, after, limit)

    async def mark_lost(self, opp_id: str, reason: str, *, caller: Caller) -> Opportunity:
        """MarkOpportunityLost: closed with a reason; lead hears of it."""
        now = self.clock()

        async def work(uow: UnitOfWork) -> Opportunity:
            opp = await self.opportunity_to_change(uow, opp_id, caller)
            after = rules.mark_lost(opp, reason, now)
            if after is not opp:
                await store.update(uow.conn, after)
                uow.emit(events.stage_changed(opp, after), subject=after.id)
            return after

        return await self.write(work)
