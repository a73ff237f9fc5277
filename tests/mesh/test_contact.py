"""mesh/contact.py: the digests services name a person by."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh import contact

KEY = b"k" * 32


def test_one_contact_one_digest_per_key() -> None:
    a = contact.digest(contact.mobile_contact("+8613812345678"), KEY)
    assert a == contact.digest("+8613812345678", KEY) and len(a) == 64
    assert a != contact.digest("+8613812345678", b"x" * 32)  # keyed: no rainbow table
    assert contact.email_contact(" Li.Lei@Example.COM ") == "email:li.lei@example.com"


def test_the_key_is_configured_or_made_once(tmp_path: Path) -> None:
    env = {"MARQUE_VAR_DIR": str(tmp_path)}
    made = contact.load_key(env)
    assert len(made) >= contact.MIN_KEY_BYTES and contact.load_key(env) == made
    assert (tmp_path / contact.KEY_FILE).stat().st_mode & 0o077 == 0
    assert contact.load_key({**env, contact.KEY_ENV: "s" * 40}) == b"s" * 40
    with pytest.raises(ValueError, match=contact.KEY_ENV):
        contact.load_key({contact.KEY_ENV: "short"})
