"""JWT signing keys and the token format.

Tokens are ES256 JWTs. In production the keys and issuer come from configuration
(`MARQUE_JWT_PUBLIC_KEY[_FILE]`, `MARQUE_JWT_PRIVATE_KEY[_FILE]`, `MARQUE_JWT_ISSUER`);
locally a development key pair is created under `var/` on first use, so `make run` needs
no set-up. Verifying services need only the public key.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.config import var_dir
from mesh.identity import Caller, Kind
from mesh.varfiles import write_once

ALGORITHM = "ES256"
DEFAULT_ISSUER = "marque-dev"
AUDIENCE = "marque"
DEV_PRIVATE = "jwt-dev-private.pem"
DEV_PUBLIC = "jwt-dev-public.pem"


class TokenError(Exception):
    """A token that cannot be trusted; the message is safe to return to the caller."""


@dataclass(frozen=True)
class KeySet:
    """The keys and names one process signs and verifies with."""

    public_pem: bytes
    private_pem: bytes | None
    issuer: str
    audience: str = AUDIENCE


def _from_env(env: Mapping[str, str], name: str) -> bytes | None:
    if env.get(name):
        return env[name].encode()
    path = env.get(f"{name}_FILE")
    if path:
        return Path(path).read_bytes()
    return None


def _ensure_dev_keys(directory: Path) -> tuple[bytes, bytes]:
    """Create the development key pair once; concurrent first starts agree on one pair."""
    private_path, public_path = directory / DEV_PRIVATE, directory / DEV_PUBLIC

    def new_key() -> bytes:
        return ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    private_pem = write_once(private_path, new_key)
    loaded = serialization.load_pem_private_key(private_pem, password=None)
    public_pem = loaded.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        public_path.write_bytes(public_pem)
    return private_pem, public_pem


def load_keys(env: Mapping[str, str] | None = None) -> KeySet:
    """Keys from configuration, else the development pair under var/."""
    env = os.environ if env is None else env
    issuer = env.get("MARQUE_JWT_ISSUER", DEFAULT_ISSUER)
    audience = env.get("MARQUE_JWT_AUDIENCE", AUDIENCE)
    public_pem = _from_env(env, "MARQUE_JWT_PUBLIC_KEY")
    private_pem = _from_env(env, "MARQUE_JWT_PRIVATE_KEY")
    if public_pem is None and private_pem is None:
        private_pem, public_pem = _ensure_dev_keys(var_dir(env))
    elif public_pem is None and private_pem is not None:
        loaded = serialization.load_pem_private_key(private_pem, password=None)
        public_pem = loaded.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    assert public_pem is not None
    return KeySet(public_pem=public_pem, private_pem=private_pem, issuer=issuer, audience=audience)


@lru_cache(maxsize=1)
def default_keys() -> KeySet:
    """The process's keys, loaded once."""
    return load_keys()


def mint_token(
    caller: Caller, *, keys: KeySet | None = None, ttl_seconds: int = 3600, now: float | None = None
) -> str:
    """A signed token for `caller`."""
    keys = keys or default_keys()
    if keys.private_pem is None:
        raise TokenError("no private key configured: this process cannot mint tokens")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": keys.issuer,
        "aud": keys.audience,
        "sub": caller.subject,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "principal": caller.kind.value,
    }
    for name in ("dealer_id", "member_id", "channel", "service"):
        value = getattr(caller, name)
        if value:
            claims[name] = value
    return jwt.encode(claims, keys.private_pem, algorithm=ALGORITHM)


def decode_token(token: str, *, keys: KeySet | None = None) -> tuple[Caller, float]:
    """Verify a token; returns the caller and the token's expiry (epoch seconds)."""
    keys = keys or default_keys()
    try:
        claims = jwt.decode(
            token,
            keys.public_pem,
            algorithms=[ALGORITHM],
            audience=keys.audience,
            issuer=keys.issuer,
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.PyJWTError as e:
        raise TokenError(f"invalid token: {type(e).__name__}") from None
    try:
        kind = Kind(claims.get("principal", ""))
    except ValueError:
        raise TokenError("invalid token: unknown principal") from None
    if kind is Kind.ANONYMOUS:
        raise TokenError("invalid token: unknown principal")
    caller = Caller(
        kind=kind,
        subject=str(claims["sub"]),
        dealer_id=claims.get("dealer_id"),
        member_id=claims.get("member_id"),
        channel=claims.get("channel"),
        service=claims.get("service"),
    )
    required = {
        Kind.DEALER: caller.dealer_id,
        Kind.CUSTOMER: caller.member_id,
        Kind.CHANNEL: caller.channel,
        Kind.SERVICE: caller.service,
    }
    if kind in required and not required[kind]:
        raise TokenError(f"invalid token: a {kind.value} token needs its scope claim")
    return caller, float(claims["exp"])
