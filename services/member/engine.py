"""The member service's application layer: one method per RPC, the caller explicit.

The servicer hands decoded values to `MemberEngine` and gets domain records back, cut to
what the caller may see (a member it may not see is NOT_FOUND, like one that does not
exist); rules live in `domain/`, SQL in `store/`. Here: who may see which member (decided
once, `access.py`) and which unit of work does what (`mesh.unit_of_work`), idempotent by the
caller's request (`req`, AIP-155). Beside it: `base.py` (the engine's state, the unit of work
that changes one member), `ownership.py` (vehicles, dealer relations), `accounts.py`
(EarnPoints, RedeemPoints, the steps writes share), `lifecycle.py` (Register, Merge, Erase),
`events.py` (what member emits and consumes).
EarnPoints and RedeemPoints, the hot path, are committed in groups by the member writer
(`points_writer.py` on `mesh.groupcommit`): the engine's `start()` starts it, `stop()`
drains it (an engine driven without `start()` starts it on its first points write).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from mesh.errors import FailedPrecondition, NotFound
from mesh.idempotency import Asked
from mesh.identity import Caller
from mesh.unit_of_work import UnitOfWork, transaction
from services.member import access, accounts, lifecycle, metrics, store
from services.member.domain import consent, erasure, identities, ledger, profile, rules
from services.member.domain import visibility as vis
from services.member.domain.consent import ConsentState
from services.member.domain.erasure import ErasureStatus
from services.member.domain.errors import (
    INSUFFICIENT_POINTS,
    identity_not_found,
    invalid,
    member_not_found,
)
from services.member.domain.identities import IdentityKey
from services.member.domain.model import (
    MemberRecord,
    TierChangeRecord,
    TransactionRecord,
)
from services.member.domain.rules import MemberState
from services.member.ownership import Ownership
from services.member.points_writer import (
    EARN,
    REDEEM,
    Outcome,
    PointsWrite,
    Retried,
    Slow,
)
from services.member.store.tables import OUTBOX

Booked = accounts.Booked
LINK, UPDATE, CONSENT = "LinkIdentity", "UpdateMember", "RecordConsent"


class MemberEngine(Ownership):
    """Everything the servicer can ask of the member service (vehicles and dealer
    relations: ownership.py; the engine's state and shared steps: base.py)."""

    # -------------------------------------------------------------------------- members

    async def register(
        self, identity: IdentityKey, display_name: str, city: str, *, req: Asked, caller: Caller
    ) -> tuple[MemberRecord, bool]:
        """RegisterMember: see lifecycle.register_member; (member, created)."""
        key = identities.normalised(identity)
        now = self.clock()

        async def work(uow: UnitOfWork) -> tuple[str, bool]:
            return await lifecycle.register_member(uow, key, display_name, city, req=req, now=now,
                                                   secret=self.secret)  # fmt: skip

        member_id, created = await transaction(self.db, work, outbox=OUTBOX)
        return await self._member_at(member_id, now), created

    async def link_identity(
        self, member_id: str, identity: IdentityKey, *, req: Asked, caller: Caller
    ) -> MemberRecord:
        """LinkIdentity: add an identity; another member's is FAILED_PRECONDITION."""
        view = await access.view(self.db, caller, member_id)
        key = identities.normalised(identity)
        vis.check_may_link(caller)
        now = self.clock()

        async def link(uow: UnitOfWork) -> str:
            holder = await store.members.member_id_for(uow.conn, key)
            if identities.needs_link(member_id, holder):
                await store.members.insert_identity(uow.conn, member_id, key, now)
                await store.members.update(uow.conn, member_id, update_time=now,
                                           update_actor=req.scope)  # fmt: skip
            return member_id

        await self._change_member(LINK, member_id, req, now, link)
        return vis.member_shown(await self._member_at(member_id, now), view)

    async def merge(
        self, winner_id: str, loser_id: str, reason: str, *, req: Asked, caller: Caller
    ) -> tuple[MemberRecord, MemberRecord]:
        """MergeMembers (OEM staff, by the access policy): see lifecycle.merge_members."""
        rules.check_merge(winner_id, loser_id)
        now, tier_rules = self.clock(), self.config.tiers

        async def work(uow: UnitOfWork) -> None:
            await lifecycle.merge_members(uow, winner_id, loser_id, reason, req=req, now=now,
                                          tier_rules=tier_rules, secret=self.secret)  # fmt: skip

        await transaction(self.db, work, outbox=OUTBOX)
        return await self._member_at(winner_id, now), await self._member_at(loser_id, now)

    async def get_member(self, member_id: str, *, caller: Caller) -> MemberRecord:
        """GetMember: the member as of now, as the caller may see it."""
        view = await access.view(self.db, caller, member_id)
        return vis.member_shown(await self._member_at(member_id, self.clock()), view)

    async def find_member(self, identity: IdentityKey, *, caller: Caller) -> MemberRecord:
        """FindMember: not registered and not visible are one answer."""
        member_id = await access.member_id_for(self.db, identity, caller, "search members")
        if member_id is None:
            raise identity_not_found()
        try:
            view = await access.view(self.db, caller, member_id)
        except NotFound:
            raise identity_not_found() from None
        return vis.member_shown(await self._member_at(member_id, self.clock()), view)

    async def update_member(
        self, member_id: str, paths: Sequence[str], values: Mapping[str, str], *, req: Asked,
        caller: Caller,
    ) -> MemberRecord:  # fmt: skip
        """UpdateMember: the profile fields of the mask (domain/profile.py)."""
        if not member_id:
            raise invalid("member.id", "the member to update is required")
        view = await access.view(self.db, caller, member_id)
        changes = profile.changes(paths, values)
        now = self.clock()

        async def update(uow: UnitOfWork) -> str:
            if changes:
                await store.members.update(uow.conn, member_id, **changes, update_time=now,
                                           update_actor=req.scope)  # fmt: skip
            return member_id

        await self._change_member(UPDATE, member_id, req, now, update)
        return vis.member_shown(await self._member_at(member_id, now), view)

    async def erase(
        self, member_id: str, *, req: Asked, caller: Caller
    ) -> tuple[MemberRecord, dt.datetime]:
        """EraseMember: see lifecycle.erase_member; (member, first erase time)."""
        if not vis.may_erase(caller, member_id):
            raise member_not_found(member_id)
        now = self.clock()

        async def work(uow: UnitOfWork) -> dt.datetime:
            return await lifecycle.erase_member(uow, member_id, req=req, now=now,
                                                secret=self.secret)  # fmt: skip

        erased_at = await transaction(self.db, work, outbox=OUTBOX)
        return await self._member_at(member_id, now), erased_at

    async def erasure_status(self, member_id: str, *, caller: Caller) -> ErasureStatus:
        """GetErasureStatus: which services have erased the member, which have not yet."""
        if not vis.may_erase(caller, member_id):
            raise member_not_found(member_id)
        async with self.db.engine.connect() as conn:
            if await store.members.state_of(conn, member_id) is None:
                raise member_not_found(member_id)
            receipts = await store.erasures.receipts_of(conn, member_id)
        return erasure.status(receipts)

    # -------------------------------------------------------------------------- points

    async def earn(
        self, member_id: str, points: int, reason: str, source_ref: str, *, req: Asked,
        caller: Caller,
    ) -> Booked:  # fmt: skip
        """EarnPoints (the hot path): group-committed (points_writer.py); what the batch
        does not decide runs as accounts.earn in its own unit of work."""
        now, tier_rules = self.clock(), self.config.tiers
        entry = ledger.earn(accounts.new_entry_id(), points, now, self.config.expiry_months)
        outcome = await self._write(
            PointsWrite(EARN, member_id, req, now, entry.id, points, reason, source_ref, entry)
        )
        if isinstance(outcome, Retried):
            return await self._retried(outcome.txn_id, member_id, now)
        if not isinstance(outcome, Slow):
            return outcome

        async def work(uow: UnitOfWork) -> tuple[str, Booked | None]:
            return await accounts.earn(uow, member_id, entry, reason=reason,
                                       source_ref=source_ref, req=req,
                                       tier_rules=tier_rules)  # fmt: skip

        txn_id, booked = await transaction(self.db, work)
        return booked or await self._retried(txn_id, member_id, now)

    async def redeem(
        self, member_id: str, points: int, reason: str, source_ref: str, *, req: Asked,
        caller: Caller,
    ) -> Booked:  # fmt: skip
        """RedeemPoints: group-committed like EarnPoints (accounts.redeem when the batch
        does not decide it); refusals are counted."""
        view = await access.view(self.db, caller, member_id)
        if points <= 0:
            raise invalid("points", "must be positive")
        now, entry_id = self.clock(), accounts.new_entry_id()

        async def work(uow: UnitOfWork) -> tuple[str, Booked | None]:
            return await accounts.redeem(uow, member_id, entry_id, points, reason=reason,
                                         source_ref=source_ref, req=req, now=now)  # fmt: skip

        try:
            outcome = await self._write(
                PointsWrite(REDEEM, member_id, req, now, entry_id, points, reason, source_ref)
            )
            if isinstance(outcome, Retried):
                txn_id, booked = outcome.txn_id, None
            elif isinstance(outcome, Slow):
                txn_id, booked = await transaction(self.db, work)
            else:
                booked = outcome
        except FailedPrecondition as e:
            if e.reason == INSUFFICIENT_POINTS:
                metrics.REDEEM_REFUSED.inc()
            raise
        txn, record = booked or await self._retried(txn_id, member_id, now)
        return vis.transaction_shown(txn, caller), vis.member_shown(record, view)

    async def _write(self, write: PointsWrite) -> Outcome:
        """One points write through the writer (started on first use when the engine is
        driven without `start()`)."""
        self.writer.start()
        return await self.writer.submit(write)

    async def _retried(self, txn_id: str, member_id: str, now: dt.datetime) -> Booked:
        """What a retried points write answers: the first call's entry, the member now."""
        txn = await accounts.transaction_record(self.db, txn_id)
        return txn, await self._member_at(member_id, now)

    async def list_transactions(
        self, member_id: str, before_seq: int | None, limit: int, *, caller: Caller
    ) -> list[TransactionRecord]:
        """ListPointTransactions: entries older than `before_seq`, newest first."""
        await access.view(self.db, caller, member_id)
        async with self.db.engine.connect() as conn:
            rows = await store.points.list_transactions(conn, member_id, before_seq, limit)
        return [vis.transaction_shown(t, caller) for t in rows]

    async def list_tier_changes(
        self, member_id: str, before_seq: int | None, limit: int, *, caller: Caller
    ) -> list[TierChangeRecord]:
        """ListTierChanges: reading the member first records what the rolling window did."""
        await access.view(self.db, caller, member_id)
        await self._member_at(member_id, self.clock())
        async with self.db.engine.connect() as conn:
            return await store.points.list_tier_changes(conn, member_id, before_seq, limit)

    # -------------------------------------------------------------------------- consent

    async def record_consent(
        self, member_id: str, decision: consent.Decision, occur_time: dt.datetime | None,
        source: str, *, req: Asked, caller: Caller,
    ) -> ConsentState:  # fmt: skip
        """RecordConsent: append a decision (made at `occur_time`, None: now)."""
        await access.view(self.db, caller, member_id)
        now = self.clock()
        event = consent.event(member_id, decision, occur_time=occur_time or now, source=source,
                              actor=req.scope, now=now)  # fmt: skip

        async def record(uow: UnitOfWork) -> str:
            await store.consents.insert(uow.conn, event, now)
            return "ok"

        await self._change_member(CONSENT, member_id, req, now, record)
        return await access.consent_of(self.db, member_id, event.purpose, event.channel)

    async def check_consent(
        self, purpose: consent.Purpose, channel: consent.Channel, member_id: str,
        identity: IdentityKey | None, *, caller: Caller,
    ) -> ConsentState:  # fmt: skip
        """CheckConsent by member id or identity. A member the caller may not see is
        NOT_FOUND naming only what was sent; an unknown or erased one is no consent."""
        found: str | None = member_id
        hidden = member_not_found(member_id)
        if identity is not None:
            found = await access.member_id_for(self.db, identity, caller, "look members up")
            hidden = identity_not_found()
        async with self.db.engine.connect() as conn:
            state = await store.members.state_of(conn, found) if found else None
            if state is not None and state[0] is MemberState.MERGED:
                found, state = state[1], await store.members.state_of(conn, state[1])
        if vis.must_be_seen(caller):
            if found is None or state is None:
                raise hidden
            try:
                await access.view(self.db, caller, found)
            except NotFound:
                raise hidden from None
        if found is None or state is None or state[0] is not MemberState.ACTIVE:
            return ConsentState(purpose, channel, False, None)
        return await access.consent_of(self.db, found, purpose, channel)

    async def list_consents(self, member_id: str, *, caller: Caller) -> list[ConsentState]:
        """ListConsents: every (purpose, channel) the member decided on."""
        await access.view(self.db, caller, member_id)
        async with self.db.engine.connect() as conn:
            return consent.current(await store.consents.events_of(conn, member_id))
