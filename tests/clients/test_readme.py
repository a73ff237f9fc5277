"""README "Client packages": its examples are the tested files, verbatim, and its way of
minting a backend's token works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.identity import Kind
from mesh.keys import KeySet, decode_token

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "ts": ROOT / "clients" / "node" / "examples" / "submit_and_get.ts",
    "python": ROOT / "clients" / "python" / "examples" / "submit_and_get.py",
}


def _blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [m.group(1) for m in re.finditer(rf"^```{language}\n(.*?)^```$", text, re.M | re.S)]


@pytest.mark.parametrize("language", sorted(EXAMPLES))
def test_the_readme_shows_the_tested_example(language: str) -> None:
    example = EXAMPLES[language].read_text()
    assert example in _blocks(language), (
        f"README.md has no ```{language} block equal to {EXAMPLES[language].relative_to(ROOT)}:"
        " copy the file into the README's Client packages section"
    )


def test_the_documented_production_minting_works(tmp_path: Path) -> None:
    """README "A token for a backend": the command, run against a key that is not the
    development one, writes nothing to var/ and mints a token that key's public half and
    issuer accept."""
    (block,) = [
        b for b in _blocks("sh") if "MARQUE_JWT_PRIVATE_KEY_FILE=" in b and "mesh.token" in b
    ]
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "private.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    command = block.replace("/secure/marque/private.pem", str(private)).replace(
        ".venv/bin/python", sys.executable
    )
    var = tmp_path / "var"
    var.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUE_JWT_")}
    env["MARQUE_VAR_DIR"] = str(var)
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert list(var.iterdir()) == [], "minting with a configured key wrote to var/"
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    caller, _ = decode_token(
        done.stdout.strip(), keys=KeySet(public_pem=public, private_pem=None, issuer="marque")
    )
    assert caller.kind is Kind.SERVICE
    assert caller.service == "miniprogram-bff"
