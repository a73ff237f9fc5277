"""Who may read SAP orders: OEM staff and services (the contract's access policy says the
same; checked again here so a policy typo cannot open the ERP to dealers or customers)."""

from __future__ import annotations

from mesh.identity import Caller, Kind

READERS = frozenset({Kind.OEM, Kind.SERVICE})


def may_read(caller: Caller) -> bool:
    """Whether the caller may read sales orders."""
    return caller.kind in READERS
