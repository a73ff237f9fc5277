"""Lead and member read alike: a reader who knows one service finds any part of another in
one hop, because every shaped service keeps the same files for the same jobs (DESIGN.md §2,
docs/adding-a-service.md) and is served the same way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHAPED = ["lead", "member", "sales", "adapters/erp", "adapters/dms"]

# The file of each job, the same in every service.
LAYOUT = {
    "__main__.py": "runs the service: mesh.server.run(build_spec())",
    "app.py": "the Service: servicer, migrations, request ids, events, lifespan",
    "servicer.py": "transport: proto in, proto out",
    "engine.py": "the application layer: one method per RPC, the caller explicit",
    "events.py": "what the service emits and consumes (EVENTS)",
    "metrics.py": "the service's own metrics",
    "domain/errors.py": "the reasons it gives, declared once",
    "domain/config.py": "its configuration, read once",
    "domain/visibility.py": "what a caller may see of a row",
    "store/tables.py": "its tables, as the migrations make them",
    "migrations/env.py": "its Alembic environment",
}


@pytest.mark.parametrize("service", SHAPED)
def test_every_job_has_its_file(service: str) -> None:
    base = ROOT / "services" / service
    missing = [f"{path} ({job})" for path, job in LAYOUT.items() if not (base / path).is_file()]
    assert missing == []


def _names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.Assign):
            found |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return found


@pytest.mark.parametrize("service", SHAPED)
def test_served_the_same_way(service: str) -> None:
    base = ROOT / "services" / service
    app = (base / "app.py").read_text()
    assert "Service(" in app and "events=EVENTS" in app, "app.py builds a mesh.service.Service"
    assert {"service", "build_spec"} <= _names(base / "app.py")
    assert "EVENTS" in _names(base / "events.py")
    assert "REQUEST_IDS" in _names(base / "store" / "tables.py")
    assert {"OUTBOX", "INBOX"} <= _names(base / "store" / "tables.py")
    servicer = (base / "servicer.py").read_text()
    assert "sqlalchemy" not in servicer and "store" not in _imports(base / "servicer.py")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module.rsplit(".", 1)[-1], *(a.name for a in node.names)}
        elif isinstance(node, ast.Import):
            names |= {a.name.rsplit(".", 1)[-1] for a in node.names}
    return names
