"""Generates the Python code of the contracts into the build, so every wheel and install
(`pip install ./clients/python`, `make dist`) carries it, whatever the state of the checkout.

The contracts and the generator are found beside this file in an sdist (copied there by
`sdist` below), else in the repository (../../protos, ../../tools/protogen.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup  # type: ignore[import-untyped]
from setuptools.command.build_py import build_py  # type: ignore[import-untyped]
from setuptools.command.sdist import sdist  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SDIST_PROTOS, SDIST_PROTOGEN = "protos", "_protogen.py"


def _sources() -> tuple[Path, Path]:
    for protos, protogen in (
        (HERE / SDIST_PROTOS, HERE / SDIST_PROTOGEN),
        (REPO / "protos", REPO / "tools" / "protogen.py"),
    ):
        if protos.is_dir() and protogen.is_file():
            return protos, protogen
    sys.exit("marque-clients: no contracts (protos/) to generate the clients from")


class BuildPy(build_py):
    """The hand-written packages, then the generated ones, fresh, into build_lib."""

    def run(self) -> None:
        out = Path(self.build_lib)
        for stale in ("buf", "marque"):  # a previous build's generated packages
            shutil.rmtree(out / stale, ignore_errors=True)
        super().run()
        protos, protogen = _sources()
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    sys.executable,
                    str(protogen),
                    "--protos",
                    str(protos),
                    "--python-out",
                    str(out),
                    "--image",
                    str(Path(tmp) / "image.binpb"),
                ],
                check=True,
            )


class Sdist(sdist):
    """An sdist that builds on its own: it carries the contracts and the generator."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        protos, protogen = _sources()
        shutil.copytree(protos, Path(base_dir) / SDIST_PROTOS, dirs_exist_ok=True)
        shutil.copy2(protogen, Path(base_dir) / SDIST_PROTOGEN)


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
