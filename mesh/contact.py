"""Contact digests: how services name a person to each other without saying who it is.

Lead knows a customer by the mobile of a lead, member by its identities; for an erasure or a
link to reach across, events must say "this person" without carrying the mobile (events are
kept in the stream and in outboxes for days, and a plain hash of an 11-digit mobile is
reversed by trying them all). A keyed HMAC-SHA256 of the normalised contact is what every
service computes alike from its own rows: the key is `MARQUE_CONTACT_DIGEST_KEY` (production:
one Secret shared by every service), else var/contact-digest.key, created once beside the
page-token secret so every service of one `make run` shares it.

A contact is an E.164 mobile (`+8613812345678`) or `email:` and the lower-cased address;
lead's dedup keys have that form already.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from functools import lru_cache

KEY_ENV = "MARQUE_CONTACT_DIGEST_KEY"
KEY_FILE = "contact-digest.key"
MIN_KEY_BYTES = 32


def mobile_contact(e164: str) -> str:
    """The contact of a mobile, already normalised to E.164."""
    return e164


def email_contact(address: str) -> str:
    """The contact of an e-mail address."""
    return "email:" + address.strip().lower()


def digest(contact: str, key: bytes) -> str:
    """The digest of one contact (64 hex characters)."""
    return hmac.new(key, contact.encode(), hashlib.sha256).hexdigest()


def load_key(env: Mapping[str, str] | None = None) -> bytes:
    """The digest key, from the environment or the var file (see the module docstring)."""
    from mesh.config import var_dir  # the key's file; the digest itself needs nothing
    from mesh.varfiles import shared_secret

    env = os.environ if env is None else env
    return shared_secret(env, KEY_ENV, var_dir(env), KEY_FILE, MIN_KEY_BYTES)


@lru_cache(maxsize=1)
def default_key() -> bytes:
    """The key of this process, read once."""
    return load_key()
