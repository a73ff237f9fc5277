"""Who is calling: the authenticated principal of the current call."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """Principal kinds; the values are the JWT `principal` claim."""

    OEM = "oem"
    DEALER = "dealer"
    CUSTOMER = "customer"
    SERVICE = "service"
    CHANNEL = "channel"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller. Holds ids only, never personal data."""

    kind: Kind
    subject: str
    dealer_id: str | None = None
    member_id: str | None = None
    channel: str | None = None
    service: str | None = None

    @property
    def ref(self) -> str:
        """A stable, non-personal reference for audit fields and logs: `dealer:D001`."""
        return f"{self.kind.value}:{self.subject}"


ANONYMOUS = Caller(Kind.ANONYMOUS, "anonymous")

_caller: ContextVar[Caller] = ContextVar("marque_caller", default=ANONYMOUS)


def current_caller() -> Caller:
    """The caller of the RPC being handled (ANONYMOUS outside a call or on public methods)."""
    return _caller.get()


def set_caller(caller: Caller) -> object:
    """Bind the caller for the current task; returns a token for `reset_caller`."""
    return _caller.set(caller)


def reset_caller(token: object) -> None:
    """Undo `set_caller`."""
    _caller.reset(token)  # type: ignore[arg-type]
