"""`python -m mesh.token`: one sub-command per principal."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pytest

from mesh.identity import Kind
from mesh.keys import decode_token
from mesh.token import main, parse_ttl


@pytest.mark.parametrize(
    ("argv", "kind", "attr", "value"),
    [
        (["oem"], Kind.OEM, "subject", "oem-dev"),
        (["oem", "--subject", "alice"], Kind.OEM, "subject", "alice"),
        (["dealer", "--dealer-id", "D001"], Kind.DEALER, "dealer_id", "D001"),
        (["customer", "--member-id", "M42"], Kind.CUSTOMER, "member_id", "M42"),
        (["service", "--name", "lead"], Kind.SERVICE, "service", "lead"),
        (["channel", "--channel", "autohome"], Kind.CHANNEL, "channel", "autohome"),
    ],
)
def test_mints_each_principal(
    argv: list[str], kind: Kind, attr: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 0
    caller, expires = decode_token(capsys.readouterr().out.strip())
    assert caller.kind is kind
    assert getattr(caller, attr) == value
    assert expires == pytest.approx(time.time() + 24 * 3600, abs=60)


def test_ttl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oem", "--ttl", "15m"]) == 0
    _, expires = decode_token(capsys.readouterr().out.strip())
    assert expires == pytest.approx(time.time() + 900, abs=60)
    assert parse_ttl("90") == 90 and parse_ttl("7d") == 7 * 86400
    for bad in ("0", "1w", "-5", "soon"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_ttl(bad)


def test_dealer_needs_its_id() -> None:
    with pytest.raises(SystemExit):
        main(["dealer"])


def test_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mesh.token", "dealer", "--dealer-id", "D7"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    caller, _ = decode_token(out.strip())  # same MARQUE_VAR_DIR, so the same dev key
    assert caller.dealer_id == "D7"
