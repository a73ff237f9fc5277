"""The member engine's vehicles and dealer relations: BindVehicle, TransferVehicle,
ListVehicles, RecordDealerRelation (one method per RPC, the caller explicit; the rules are
domain/vehicles.py and domain/relations.py, the SQL store/vehicles.py and
store/relations.py)."""

from __future__ import annotations

from collections.abc import Mapping

from mesh.idempotency import Asked
from mesh.identity import Caller
from mesh.unit_of_work import UnitOfWork
from services.member import access, events, store
from services.member.base import EngineBase
from services.member.domain import vehicles as cars
from services.member.domain import visibility as vis
from services.member.domain.errors import vehicle_not_found
from services.member.domain.model import VehicleRecord
from services.member.domain.relations import DealerRelation, Relation
from services.member.domain.vin import normalise_vin

BIND, TRANSFER, RELATION = "BindVehicle", "TransferVehicle", "RecordDealerRelation"


class Ownership(EngineBase):
    """Cars a member owns and the dealers a member relates to."""

    async def bind_vehicle(
        self, member_id: str, vin: str, details: Mapping[str, str], *, req: Asked, caller: Caller
    ) -> VehicleRecord:
        """BindVehicle: the member becomes the VIN's owner (domain/vehicles.py)."""
        vin, now = normalise_vin(vin), self.clock()
        attrs = {k: v if k == "purchase_date" else v.strip() for k, v in details.items()}

        async def bind(uow: UnitOfWork) -> str:
            known, owner = await store.vehicles.lock_owner(uow.conn, vin)
            binding = cars.bind(member_id, known=known, owner_id=owner)
            if binding is cars.Binding.NEW:
                await store.vehicles.insert(uow.conn, vin, attrs, now)
            elif binding is cars.Binding.CLAIM:
                await store.vehicles.update(uow.conn, vin, attrs)
            if binding is not cars.Binding.KEEP:
                await store.vehicles.change_owner(uow.conn, vin, member_id, now, cars.BIND)
                uow.emit(events.vehicle_bound(member_id, vin, now), subject=member_id)
            return vin

        await self._change_member(BIND, member_id, req, now, bind)
        return vis.vehicle_shown(await self._vehicle(vin), caller, member_id)

    async def transfer_vehicle(
        self, vin: str, to_member: str, *, req: Asked, caller: Caller
    ) -> VehicleRecord:
        """TransferVehicle: the VIN moves to `to_member`, keeping its history."""
        vin, now = normalise_vin(vin), self.clock()

        async def transfer(uow: UnitOfWork) -> str:
            known, owner = await store.vehicles.lock_owner(uow.conn, vin)
            if cars.transfer(vin, to_member, known=known, owner_id=owner):
                await store.vehicles.change_owner(uow.conn, vin, to_member, now, cars.TRANSFER)
            return vin

        await self._change_member(TRANSFER, to_member, req, now, transfer)
        return vis.vehicle_shown(await self._vehicle(vin), caller, to_member)

    async def _vehicle(self, vin: str) -> VehicleRecord:
        async with self.db.engine.connect() as conn:
            car = await store.vehicles.vehicle(conn, vin)
        if car is None:
            raise vehicle_not_found(vin)
        return car

    async def list_vehicles(
        self, member_id: str, after_vin: str | None, limit: int, *, caller: Caller
    ) -> list[VehicleRecord]:
        """ListVehicles: the cars the member owns now, by VIN, after `after_vin`."""
        await access.view(self.db, caller, member_id)
        async with self.db.engine.connect() as conn:
            rows = await store.vehicles.list_vehicles(conn, member_id, after_vin, limit)
        return [vis.vehicle_shown(c, caller, member_id) for c in rows]

    async def record_dealer_relation(
        self, member_id: str, dealer_id: str, relation: Relation, vin: str, *, req: Asked,
        caller: Caller,
    ) -> bool:  # fmt: skip
        """RecordDealerRelation: whether the relation (service, lead) is new."""
        rel = DealerRelation.of(dealer_id, relation, normalise_vin(vin) if vin else "")
        now = self.clock()

        async def record(uow: UnitOfWork) -> str:
            if rel.vin:
                rel.check_owner(member_id, await store.vehicles.owner_of(uow.conn, rel.vin))
            if await store.relations.exists(uow.conn, member_id, rel):
                return "0"
            await store.relations.insert(uow.conn, member_id, rel, now)
            return "1"

        return await self._change_member(RELATION, member_id, req, now, record) == "1"
