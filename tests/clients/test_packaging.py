"""clients/python as a backend installs it: the wheel (and an sdist) built from a checkout
with no generated code carries the generated modules of every contract, depends on what the
platform is tested with, and imports in a fresh virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MARQUE_TEST_POSTGRES_URL")),
    reason="packaging touches no database: checked in the SQLite pass only",
)


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _clean_checkout(dest: Path) -> Path:
    """The files of clients/python, protos/ and the generator that are not git-ignored: what
    a fresh clone (plus uncommitted work) has, never generated code."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: cannot tell generated files from sources")
    listed = _run(
        "git",
        "ls-files",
        "--cached",
        "--others",
        "--exclude-standard",
        "--",
        "clients/python",
        "protos",
        "tools/protogen.py",
        cwd=ROOT,
    ).splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    assert not (dest / "clients/python/marque/lead").exists(), "generated code was copied"
    return dest / "clients" / "python"


def _expected_modules() -> list[str]:
    """Every contract's modules, so a service added later is checked too."""
    names = ["buf/validate/validate_pb2.py", "marque/client/__init__.py"]
    names.append("marque/client/errors.py")
    for proto in sorted((ROOT / "protos").rglob("*.proto")):
        stem = proto.relative_to(ROOT / "protos").with_suffix("").as_posix()
        names += [f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"]
    return names


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(zf.read(meta).decode())
    missing = [m for m in _expected_modules() if m not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert "marque/py.typed" in names
    assert not [n for n in names if n.startswith(("protos/", "tests/", "examples/"))]

    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    assert {r.name for r in requirements} == {"grpcio", "protobuf", "googleapis-common-protos"}
    locked = _locked()
    for req in requirements:
        assert locked[req.name] in req.specifier, f"{req} excludes the locked {locked[req.name]}"
    grpcio = next(r for r in requirements if r.name == "grpcio")
    assert "1.85.0" not in grpcio.specifier, "grpcio must stay on the measured 1.78 line"


def test_the_wheel_and_the_sdist_carry_the_generated_code(tmp_path: Path) -> None:
    project = _clean_checkout(tmp_path / "checkout")
    wheels = tmp_path / "wheels"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--disable-pip-version-check",
        "--no-build-isolation",
        "--no-deps",
        "-w",
        wheels,
        project,
    )
    (wheel,) = wheels.glob("marque_clients-*.whl")
    _check_wheel(wheel)

    # The sdist builds on its own, away from the repository's protos/.
    sdists = tmp_path / "sdists"
    _run(
        sys.executable,
        "-c",
        f"from setuptools import build_meta; build_meta.build_sdist({str(sdists)!r})",
        cwd=project,
    )
    (sdist,) = sdists.glob("marque_clients-*.tar.gz")
    elsewhere = tmp_path / "elsewhere"
    with tarfile.open(sdist) as tf:
        tf.extractall(elsewhere, filter="data")
    (unpacked,) = elsewhere.iterdir()
    from_sdist = tmp_path / "from-sdist"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--disable-pip-version-check",
        "--no-build-isolation",
        "--no-deps",
        "-w",
        from_sdist,
        unpacked,
    )
    (second,) = from_sdist.glob("marque_clients-*.whl")
    _check_wheel(second)

    # Installed into a fresh venv (its dependencies taken from this one, offline), the
    # generated modules and the helper import from the installed wheel.
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-index",
        wheel,
    )
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"))
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.as_posix().strip()) / "deps-from-test.pth").write_text("\n".join(sorted(deps)))
    out = _run(
        python,
        "-I",
        "-c",
        "import marque, marque.client.errors\n"
        "from marque.lead.v1 import lead_service_pb2, lead_service_pb2_grpc\n"
        "from marque.member.v1 import member_service_pb2_grpc\n"
        "r = lead_service_pb2.SubmitLeadRequest(request_id='r1')\n"
        "assert lead_service_pb2.SubmitLeadRequest.FromString(r.SerializeToString()) == r\n"
        "print(marque.__file__)",
        cwd=tmp_path,
    )
    assert out.strip().startswith(str(venv)), out
