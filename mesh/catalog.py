"""The platform's services and their ports (DESIGN.md §10), in one place."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceEntry:
    """Where a service lives: its Python module and its default ports."""

    name: str
    module: str
    grpc_port: int
    metrics_port: int

    @property
    def env_prefix(self) -> str:
        """`lead` -> `MARQUE_LEAD`, `erp-adapter` -> `MARQUE_ERP_ADAPTER`."""
        return "MARQUE_" + self.name.upper().replace("-", "_")

    def exists(self) -> bool:
        """True once the service's package has been written."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False


SERVICES: tuple[ServiceEntry, ...] = (
    ServiceEntry("lead", "services.lead", 50051, 9451),
    ServiceEntry("member", "services.member", 50052, 9452),
    ServiceEntry("sales", "services.sales", 50053, 9453),
    ServiceEntry("aftersales", "services.aftersales", 50054, 9454),
    ServiceEntry("commerce", "services.commerce", 50055, 9455),
    ServiceEntry("erp-adapter", "services.adapters.erp", 50061, 9461),
    ServiceEntry("dms-adapter", "services.adapters.dms", 50062, 9462),
    ServiceEntry("telematics-adapter", "services.adapters.telematics", 50063, 9463),
)

BY_NAME: dict[str, ServiceEntry] = {s.name: s for s in SERVICES}


def entry(name: str) -> ServiceEntry:
    """The catalog entry of a service, or a KeyError naming the known ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(BY_NAME)}") from None


def existing() -> list[ServiceEntry]:
    """The services whose code exists in this checkout, in port order."""
    return [s for s in SERVICES if s.exists()]
