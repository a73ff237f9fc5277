"""Mint a token for local development and tests (`make token ARGS="dealer --dealer-id D001"`).

    python -m mesh.token oem [--subject S]
    python -m mesh.token dealer --dealer-id D001 [--subject S]
    python -m mesh.token customer --member-id M001 [--subject S]
    python -m mesh.token service --name lead
    python -m mesh.token channel --channel autohome
    ... [--ttl 24h]

The token is signed with the process's keys (`mesh.keys`): the development key pair under
var/ (created on first use, the same one `make run` verifies with), or the configured
private key. Only the token is printed on stdout, so `TOKEN=$(make token ARGS=oem)` works.
"""

from __future__ import annotations

import argparse
import re
import sys

from mesh.identity import Caller, Kind
from mesh.keys import TokenError, mint_token

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """`90`, `90s`, `15m`, `24h`, `7d` -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"invalid ttl {text!r}: use e.g. 3600, 15m, 24h, 7d")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one sub-command per principal kind."""
    parser = argparse.ArgumentParser(
        prog="python -m mesh.token", description="Mint a Marque JWT for development."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--ttl", type=parse_ttl, default=24 * 3600, help="lifetime: 3600, 15m, 24h (default), 7d"
    )
    common.add_argument("--subject", help="the `sub` claim (default derived from the scope)")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    kinds.add_parser("oem", parents=[common], help="brand staff; sees everything")
    p = kinds.add_parser("dealer", parents=[common], help="dealer staff, scoped to one dealer")
    p.add_argument("--dealer-id", required=True)
    p = kinds.add_parser("customer", parents=[common], help="a member, scoped to their data")
    p.add_argument("--member-id", required=True)
    p = kinds.add_parser("service", parents=[common], help="another platform service")
    p.add_argument("--name", required=True, help="the calling service, e.g. lead")
    p = kinds.add_parser("channel", parents=[common], help="a lead channel (autohome, yiche...)")
    p.add_argument("--channel", required=True)
    return parser


def caller_from_args(args: argparse.Namespace) -> Caller:
    """The principal the parsed arguments describe."""
    kind = Kind(args.kind)
    if kind is Kind.OEM:
        return Caller(kind, args.subject or "oem-dev")
    if kind is Kind.DEALER:
        return Caller(kind, args.subject or f"dealer-{args.dealer_id}", dealer_id=args.dealer_id)
    if kind is Kind.CUSTOMER:
        return Caller(kind, args.subject or f"member-{args.member_id}", member_id=args.member_id)
    if kind is Kind.SERVICE:
        return Caller(kind, args.subject or args.name, service=args.name)
    return Caller(kind, args.subject or f"channel-{args.channel}", channel=args.channel)


def main(argv: list[str] | None = None) -> int:
    """Print a token; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        token = mint_token(caller_from_args(args), ttl_seconds=args.ttl)
    except TokenError as e:
        print(f"cannot mint a token: {e}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
