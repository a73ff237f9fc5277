"""`python -m mesh.scaffold <name>`: a new service in the one service shape, in one step.

    python -m mesh.scaffold garage               # write it; print the lines that register it
    python -m mesh.scaffold garage --register    # write it and register it (catalog, k8s)
    python -m mesh.scaffold garage --port 50056 --metrics-port 9456 --root DIR

It writes, from the templates in `mesh/scaffold_template/` (files named `*.tmpl`, with
`{{name}}`, `{{Name}}`, `{{NAME}}`, `{{names}}` and `{{date}}` placeholders in their paths
and text, so that no tool takes them for code):
- `protos/marque/<name>/v1/<name>.proto` and `<name>_service.proto`: one resource, its
  Create and Get RPCs with access policies and protovalidate rules; `<name>_events.proto`:
  its `<Name>Created` event;
- `services/<name>/`: the four rooms (`servicer.py`, `engine.py` the application layer,
  `domain/` with its `config.py` read once, `store/`), `events.py` (the `EventSpec`: the
  Create emits `<Name>Created` through the outbox in its transaction; no subscriptions yet),
  `migrations/` (0001 with the request-id table of mesh/idempotency.py and the outbox and
  inbox of mesh.events.schema_v1), `metrics.py`, `app.py` (a `mesh.service.Service` with
  `events=EVENTS`), `__main__.py`, and `tests/` (a real in-process server on both back
  ends, events written but not relayed, like lead's and member's);
- `k8s/base/services/<name>.yaml`: the service's ServiceAccount, Deployment, Services and
  PodDisruptionBudget, rendered by tools/k8s_gen.py exactly as that script renders them once
  the service is in its `DEPLOYED`.

A service is served by `make run` (and fuzzed by tests/fuzz) once its line is in
`mesh/catalog.py`, and deployed once it is in `DEPLOYED` of tools/k8s_gen.py. Without
`--register` both lines are printed, to add by hand; with it they are added (in port order;
a line already there is left alone) and tools/k8s_gen.py is run to write the rest of k8s/
(kustomization, addresses, prod HPA, dev database, dashboard, alert rules). A name already in
the catalog (`sales`) keeps the catalog's ports; a new one gets the next free port of the
services' block (50051-50060, metrics 9451-9460) unless `--port` says otherwise. Nothing that
exists is overwritten: the command refuses before writing anything.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib.util
import keyword
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from mesh.catalog import ServiceEntry

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "scaffold_template"
SUFFIX = ".tmpl"
NAME = re.compile(r"^[a-z][a-z0-9]{1,11}$")
# Proto packages and folders that are not services.
RESERVED = frozenset({"common", "testing", "adapters", "mesh", "tests", "tools"})
FIRST_PORT, BLOCK_END, FIRST_METRICS_PORT = 50051, 50061, 9451
PLACEHOLDER = re.compile(r"\{\{\w+\}\}")
ENTRY_LINE = re.compile(r'^\s+ServiceEntry\("[^"]+", "[^"]+", (\d+), (\d+)\),\s*$')
DEPLOYED_START = "DEPLOYED: dict[str, Tuning] = {"


class ScaffoldError(Exception):
    """The service cannot be scaffolded as asked; the message says why."""


@dataclass(frozen=True)
class Plan:
    """What to write: the service's name and ports, and the checkout to write into."""

    name: str
    grpc_port: int
    metrics_port: int
    root: Path
    in_catalog: bool

    @property
    def entry(self) -> ServiceEntry:
        return ServiceEntry(self.name, f"services.{self.name}", self.grpc_port, self.metrics_port)


def plural(word: str) -> str:
    """The table name of a resource: `garage` -> `garages`, `battery` -> `batteries`."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def placeholders(name: str, today: dt.date | None = None) -> dict[str, str]:
    """What each placeholder of the templates stands for."""
    return {
        "{{name}}": name,
        "{{Name}}": name.capitalize(),
        "{{NAME}}": name.upper(),
        "{{names}}": plural(name),
        "{{date}}": (today or dt.date.today()).isoformat(),
    }


def render(text: str, values: dict[str, str], where: str = "") -> str:
    """`text` with its placeholders replaced; an unknown placeholder is an error."""
    for key, value in values.items():
        text = text.replace(key, value)
    left = PLACEHOLDER.search(text)
    if left:
        raise ScaffoldError(f"unknown placeholder {left.group()} in {where or 'a template'}")
    return text


def catalog_entries(catalog: Path) -> list[ServiceEntry]:
    """The `ServiceEntry(...)` lines of a checkout's mesh/catalog.py, read without importing
    it (the checkout may be another one than the running code's)."""
    entries = []
    for node in ast.walk(ast.parse(catalog.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ServiceEntry":
            args = [a.value for a in node.args if isinstance(a, ast.Constant)]
            match args:
                case [str(name), str(module), int(grpc_port), int(metrics_port)]:
                    entries.append(ServiceEntry(name, module, grpc_port, metrics_port))
    return entries


def choose_ports(
    name: str, entries: list[ServiceEntry], port: int | None, metrics_port: int | None
) -> tuple[int, int, bool]:
    """(gRPC port, metrics port, already in the catalog) of the new service."""
    known = {e.name: e for e in entries}
    if name in known:
        e = known[name]
        if e.module != f"services.{name}":
            raise ScaffoldError(f"{name} is in the catalog as {e.module}, not services.{name}")
        if (port or e.grpc_port, metrics_port or e.metrics_port) != (e.grpc_port, e.metrics_port):
            raise ScaffoldError(
                f"{name} is in the catalog with ports {e.grpc_port}/{e.metrics_port}; "
                "change them there, not here"
            )
        return e.grpc_port, e.metrics_port, True
    taken = {p for e in entries for p in (e.grpc_port, e.metrics_port)}
    if port is None:
        free = [p for p in range(FIRST_PORT, BLOCK_END) if p not in taken]
        if not free:
            raise ScaffoldError(f"ports {FIRST_PORT}-{BLOCK_END - 1} are all taken: pass --port")
        port = free[0]
    if metrics_port is None:
        metrics_port = port - FIRST_PORT + FIRST_METRICS_PORT
    for p in (port, metrics_port):
        if not 1024 <= p <= 65535:
            raise ScaffoldError(f"port {p} is outside 1024-65535")
        if p in taken:
            raise ScaffoldError(f"port {p} is taken in mesh/catalog.py")
    if port == metrics_port:
        raise ScaffoldError("the gRPC and metrics ports must differ")
    return port, metrics_port, False


def make_plan(name: str, root: Path, port: int | None, metrics_port: int | None) -> Plan:
    """Check the name and the checkout; choose the ports."""
    if not NAME.match(name) or keyword.iskeyword(name) or name in RESERVED:
        raise ScaffoldError(
            f"{name!r} is not a service name: 2-12 lower-case letters and digits, starting "
            f"with a letter (it is a Python module, a proto package and a Kubernetes name); "
            f"not one of {', '.join(sorted(RESERVED))}"
        )
    catalog = root / "mesh" / "catalog.py"
    if not catalog.is_file() or not (root / "protos" / "marque" / "common").is_dir():
        raise ScaffoldError(f"{root} is not a Marque checkout (no mesh/catalog.py or protos/)")
    if (root / "services" / name).exists():
        raise ScaffoldError(f"services/{name} exists already")
    grpc_port, metrics, known = choose_ports(name, catalog_entries(catalog), port, metrics_port)
    return Plan(name, grpc_port, metrics, root, known)


def k8s_gen(root: Path) -> ModuleType:
    """The checkout's tools/k8s_gen.py, loaded as a module."""
    path = root / "tools" / "k8s_gen.py"
    spec = importlib.util.spec_from_file_location("_scaffold_k8s_gen", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ScaffoldError(f"{path} is missing: it renders the service's manifests")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def k8s_manifest(plan: Plan) -> str:
    """k8s/base/services/<name>.yaml, as tools/k8s_gen.py writes it for a deployed service."""
    gen = k8s_gen(plan.root)
    tuning = gen.DEPLOYED.get(plan.name, gen.Tuning())
    return str(gen.dump_all(gen.service_objects(plan.entry, tuning)))


def planned_files(plan: Plan) -> dict[Path, str]:
    """Every file the scaffold writes: path -> content."""
    values = placeholders(plan.name)
    files: dict[Path, str] = {}
    for src in sorted(TEMPLATE.rglob(f"*{SUFFIX}")):
        rel = src.relative_to(TEMPLATE).as_posix().removesuffix(SUFFIX)
        where = f"{TEMPLATE.name}/{src.relative_to(TEMPLATE).as_posix()}"
        files[plan.root / render(rel, values, where)] = render(src.read_text(), values, where)
    files[plan.root / "k8s" / "base" / "services" / f"{plan.name}.yaml"] = k8s_manifest(plan)
    return files


def write_files(files: dict[Path, str]) -> None:
    """Write them all, or nothing if one of them exists."""
    clash = sorted(str(p) for p in files if p.exists())
    if clash:
        raise ScaffoldError("these exist already, nothing written: " + ", ".join(clash))
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def catalog_line(plan: Plan) -> str:
    e = plan.entry
    return f'ServiceEntry("{e.name}", "{e.module}", {e.grpc_port}, {e.metrics_port}),'


def deployed_line(plan: Plan) -> str:
    return f'"{plan.name}": Tuning(),'


def with_catalog_line(text: str, plan: Plan) -> str:
    """mesh/catalog.py with the service's entry inserted in port order."""
    lines = text.splitlines(keepends=True)
    ports = [(i, int(m.group(1))) for i, ln in enumerate(lines) if (m := ENTRY_LINE.match(ln))]
    if not ports:
        raise ScaffoldError("no ServiceEntry lines found in mesh/catalog.py to add one beside")
    before = [i for i, p in ports if p < plan.grpc_port]
    at = before[-1] + 1 if before else ports[0][0]
    lines.insert(at, f"    {catalog_line(plan)}\n")
    return "".join(lines)


def with_deployed_line(text: str, plan: Plan) -> str:
    """tools/k8s_gen.py with the service added to DEPLOYED (unchanged if it is there)."""
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith(DEPLOYED_START))
        end = next(i for i in range(start, len(lines)) if lines[i].rstrip() == "}")
    except StopIteration:
        raise ScaffoldError(f"no `{DEPLOYED_START} ... }}` block in tools/k8s_gen.py") from None
    if any(ln.strip().startswith(f'"{plan.name}":') for ln in lines[start:end]):
        return text
    lines.insert(end, f"    {deployed_line(plan)}\n")
    return "".join(lines)


def register(plan: Plan) -> list[str]:
    """Add the catalog and DEPLOYED lines, then run tools/k8s_gen.py; what was done."""
    done = []
    if not plan.in_catalog:
        catalog = plan.root / "mesh" / "catalog.py"
        catalog.write_text(with_catalog_line(catalog.read_text(), plan))
        done.append(f"mesh/catalog.py: added {catalog_line(plan)}")
    gen = plan.root / "tools" / "k8s_gen.py"
    before = gen.read_text()
    after = with_deployed_line(before, plan)
    if after != before:
        gen.write_text(after)
        done.append(f"tools/k8s_gen.py: added {deployed_line(plan)} to DEPLOYED")
    run = subprocess.run(
        [sys.executable, str(gen)], cwd=plan.root, capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise ScaffoldError(f"tools/k8s_gen.py failed:\n{run.stdout}{run.stderr}")
    done += [f"tools/k8s_gen.py: {line}" for line in run.stdout.splitlines()]
    return done


def report(plan: Plan, files: dict[Path, str], registered: list[str] | None) -> str:
    """What was written and what the newcomer does next."""
    name = plan.name
    lines = [f"scaffolded {name} (gRPC {plan.grpc_port}, metrics {plan.metrics_port}):"]
    lines += [f"  {p.relative_to(plan.root)}" for p in sorted(files)]
    if registered is not None:
        lines += ["registered:", *(f"  {d}" for d in registered)]
    else:
        lines += ["", "Register it (or run again with --register, which does both):"]
        if not plan.in_catalog:
            lines.append(f"  mesh/catalog.py, SERVICES:   {catalog_line(plan)}")
        lines += [
            f"  tools/k8s_gen.py, DEPLOYED:  {deployed_line(plan)}",
            "  then: python tools/k8s_gen.py   (until then it removes the manifest above)",
        ]
    lines += [
        "",
        "Then:",
        f"  make protos   # clients/python/marque/{name}/v1 (make test and make run do it too)",
        f"  .venv/bin/python -m pytest services/{name}",
        f"  .venv/bin/python -m services.{name}   # or: make run",
        f'  add "{name}" to SHAPED in tests/conventions/test_shape.py and test_layout.py',
        "and fill in the rooms: docs/adding-a-service.md.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mesh.scaffold",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", help="the service's name, e.g. garage")
    parser.add_argument("--port", type=int, help="gRPC port (default: the next free one)")
    parser.add_argument("--metrics-port", type=int, help="metrics port (default: port - 40600)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to write into")
    parser.add_argument(
        "--register", action="store_true", help="add the catalog and DEPLOYED lines, run k8s_gen"
    )
    args = parser.parse_args(argv)
    try:
        plan = make_plan(args.name, args.root.resolve(), args.port, args.metrics_port)
        files = planned_files(plan)
        write_files(files)
        registered = register(plan) if args.register else None
    except ScaffoldError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(plan, files, registered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
