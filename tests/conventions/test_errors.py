"""Errors without grpc in the domain: a service's domain code raises `mesh.errors` classes,
which name their status code; only the chain (mesh/chain.py) knows grpc. Checked on what
the domain actually imports, transitively within the repository, so a helper module in
between cannot bring grpc back in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mesh.errors import DomainError, InvalidArgument, NotFound

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(
    p.name for p in (ROOT / "services").iterdir() if (p / "domain").is_dir() and p.name[0] != "_"
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _closure(start: list[Path]) -> dict[str, set[str]]:
    """Every third-party module reached from `start` through the repository's own modules,
    with the repository file that imports it."""
    seen: set[Path] = set()
    reached: dict[str, set[str]] = {}
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            own = _module_file(name)
            if own is not None:
                todo.append(own)
            else:
                reached.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return reached


def test_mesh_errors_imports_no_grpc() -> None:
    assert "grpc" not in _closure([ROOT / "mesh" / "errors.py"])


@pytest.mark.parametrize("service", SERVICES)
def test_domain_reaches_no_grpc_even_through_mesh(service: str) -> None:
    domain = sorted((ROOT / "services" / service / "domain").rglob("*.py"))
    reached = _closure(domain)
    assert "grpc" not in reached, f"grpc reached via {sorted(reached.get('grpc', ()))}"


def test_error_classes_name_their_code() -> None:
    assert InvalidArgument("x").code == "INVALID_ARGUMENT"
    assert NotFound("x", reason="MEMBER_NOT_FOUND").code == "NOT_FOUND"
    assert DomainError("x").code == "FAILED_PRECONDITION"


def test_every_named_code_is_a_grpc_code() -> None:
    import grpc

    classes: list[type[DomainError]] = [DomainError, *DomainError.__subclasses__()]
    names = {cls.code for cls in classes}
    assert names <= {c.name for c in grpc.StatusCode}
    assert len(names) == len(classes) - 1  # FailedPrecondition shares the base's code
