"""The shape every service keeps (DESIGN.md §2), checked on the source so a new service
cannot drift from it: reasons declared once, small modules, no grpc in domain code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The services moved onto the one service shape.
SHAPED = ["lead", "member", "sales", "adapters/erp", "adapters/dms"]
MAX_MODULE_LINES = 420


def _sources(service: str) -> list[Path]:
    base = ROOT / "services" / service
    return [p for p in base.rglob("*.py") if "tests" not in p.parts and "migrations" not in p.parts]


@pytest.mark.parametrize("service", SHAPED)
def test_error_reasons_are_declared_once(service: str) -> None:
    literal = re.compile(r"\breason=\"[A-Z_]+\"")
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in _sources(service)
        if p.name != "errors.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert found == [], "spell reasons in domain/errors.py, not at the raise"


@pytest.mark.parametrize("service", SHAPED)
def test_domain_code_knows_no_transport_or_database(service: str) -> None:
    banned = {"grpc", "sqlalchemy", "os"}
    offenders = []
    for path in (ROOT / "services" / service / "domain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in banned]
    assert offenders == []


@pytest.mark.parametrize("service", SHAPED)
def test_modules_stay_small(service: str) -> None:
    big = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in _sources(service)
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert big == []


MAX_FUNCTION_LINES = 60
# Where no function may be longer than MAX_FUNCTION_LINES: the mesh and every service.
ROOTS = [
    ROOT / "mesh",
    *sorted(p for p in (ROOT / "services").iterdir() if p.is_dir() and p.name[0] not in "_."),
]


def _python_files(root: Path) -> list[Path]:
    """The modules under `root`, without its tests/ and migrations/ directories."""
    return [
        p
        for p in sorted(root.rglob("*.py"))
        if not {"tests", "migrations"} & set(p.relative_to(root).parts)
    ]


def test_mesh_modules_stay_small() -> None:
    big = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in sorted((ROOT / "mesh").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert big == []


@pytest.mark.parametrize("root", ROOTS, ids=lambda r: str(r.relative_to(ROOT)))
def test_functions_stay_short(root: Path) -> None:
    long = [
        f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines"
        for p in _python_files(root)
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert long == []
