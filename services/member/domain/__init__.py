"""The member rules as plain Python on plain data: no grpc, no SQLAlchemy, no clock.

Time and ids are always passed in, so every rule is reproducible in a unit test.

- `model`: the records (MemberRow as stored, MemberRecord as replied, ledger, tier, car).
- `config`: MemberConfig, points expiry and tiers, `from_env(env)`.
- `errors`: the ErrorInfo reasons (MEMBER_NOT_FOUND ...) and the errors built in many places.
- `identities`: `normalise(...)` per identity type, `needs_link(...)`.
- `ledger`: entries and lots: `earn`, `redeem`, `expire`, `carry_over`, `forfeit`, `due`.
- `tiers`: `tier_for`, `review(...)` -> TierChangeDecision, the rolling window.
- `qualifying`: the cached qualifying points, `needs_refresh(...)` (a read that writes).
- `rules`: MemberState, `require_active`, `check_merge`.
- `visibility`: `view_for(caller, ...)` -> View, and replies cut to it (`member_shown` ...).
- `profile`: UpdateMember's `changes(...)`, a merge's `merged(...)`.
- `merge`: `plan(...)` -> MergePlan, what a merge books and moves.
- `erasure`: `plan(...)` -> ErasurePlan, tombstones, `erased_fingerprint`.
- `vehicles`: `bind(...)` -> Binding, `transfer(...)`; `vin`: `normalise_vin`.
- `relations`: DealerRelation (`of`, `check_owner`), `missing(...)`.
- `consent`: `event(...)`, `decide(...)`, `current(...)`, `merge_copies(...)`.
"""
