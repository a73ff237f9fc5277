"""`python -m mesh.scaffold`, proved: a throwaway service (`garage`) generated with
`--register` into a temporary copy of the checkout (mesh, protos, tools, k8s, pyproject and
the shared test fixtures; nothing is written to this checkout) gets its protos generated
(tools/protogen.py, its events proto included) and buf-linted, keeps the layout and the
shape the conventions tests require of lead and member (tests/conventions), passes ruff and
mypy, passes its own tests (a pytest subprocess; with MARQUE_TEST_POSTGRES_URL set they run
on PostgreSQL too), renders in Kubernetes (k8s_gen --check, kubectl kustomize), and serves as
a real process beside a real nats-server: health SERVING, then a Create and a Get over gRPC,
and the GarageCreated of the Create relayed to JetStream.

The served process itself runs on SQLite in both passes: what it proves (`python -m
services.<name>` starts, migrates, answers and relays its events) does not depend on the
back end, which the generated tests already cover."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
import yaml  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js.errors import NotFoundError

from mesh import scaffold
from mesh.events.envelope import stream_name
from mesh.identity import Caller, Kind
from mesh.keys import load_keys, mint_token
from mesh.nats_server import NatsServer
from tests.conventions import test_layout as layout
from tests.conventions import test_shape as shape

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = "garage"
COPIED = (
    "mesh",
    "protos",
    "tools",
    "k8s",
    "pyproject.toml",
    "tests/__init__.py",
    "tests/conftest.py",
)
# In this checkout clients/python is on the site path (marque-dev.pth), where mypy reports
# nothing about the generated buf/validate stubs; in the copy it is a plain directory.
MYPY_GENERATED = '\n[[tool.mypy.overrides]]\nmodule = ["buf.*"]\nignore_errors = true\n'
TIMEOUT = 120


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def copy_checkout(root: Path) -> None:
    for rel in COPIED:
        src, dst = REPO / rel, root / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    with (root / "pyproject.toml").open("a") as f:
        f.write(MYPY_GENERATED)


def child_env(root: Path, **extra: str) -> dict[str, str]:
    """The copy (and its generated code) first on the path; this checkout's services stay
    reachable behind it (`services` is a namespace package)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "clients" / "python"), str(root)])
    return env


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the checkout with `garage` scaffolded, registered and generated."""
    root = tmp_path_factory.mktemp("checkout")
    copy_checkout(root)
    out = run(sys.executable, "-m", "mesh.scaffold", NAME, "--root", root, "--register", cwd=REPO,
              env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))  # fmt: skip
    assert f'added ServiceEntry("{NAME}", "services.{NAME}", 50056, 9456)' in out
    run(sys.executable, root / "tools" / "protogen.py", "--protos", root / "protos",
        "--python-out", root / "clients" / "python", "--image", root / "build" / "image.binpb",
        cwd=root)  # fmt: skip
    yield root
    # Nothing of it reached this checkout.
    assert not (REPO / "services" / NAME).exists()
    assert not (REPO / "protos" / "marque" / NAME).exists()
    assert not (REPO / "k8s" / "base" / "services" / f"{NAME}.yaml").exists()
    assert f'"{NAME}"' not in (REPO / "mesh" / "catalog.py").read_text()


def test_the_contract_is_buf_lint_clean(root: Path) -> None:
    contracts = root / "protos" / "marque" / NAME / "v1"
    assert sorted(p.name for p in contracts.iterdir()) == [
        f"{NAME}.proto",
        f"{NAME}_events.proto",
        f"{NAME}_service.proto",
    ]
    generated = root / "clients" / "python" / "marque" / NAME / "v1"
    assert (generated / f"{NAME}_events_pb2.py").is_file()
    run(BIN / "buf", "lint", "build/image.binpb", "--path", f"marque/{NAME}",
        "--config", "protos/buf.yaml", cwd=root)  # fmt: skip


@pytest.mark.parametrize(
    "check",
    [
        layout.test_every_job_has_its_file,
        layout.test_served_the_same_way,
        shape.test_error_reasons_are_declared_once,
        shape.test_domain_code_knows_no_transport_or_database,
        shape.test_modules_stay_small,
    ],
    ids=lambda check: check.__name__,
)
def test_it_keeps_the_shape_of_the_others(
    root: Path, monkeypatch: pytest.MonkeyPatch, check: Any
) -> None:
    """The conventions tests' own checks of lead and member, run on the copy's garage."""
    monkeypatch.setattr(layout, "ROOT", root)
    monkeypatch.setattr(shape, "ROOT", root)
    check(NAME)


def test_the_python_passes_ruff_and_mypy(root: Path) -> None:
    package = f"services/{NAME}"
    run(BIN / "ruff", "check", package, cwd=root)
    run(BIN / "ruff", "format", "--check", package, cwd=root)
    run(BIN / "mypy", package, cwd=root, env=child_env(root))


def test_the_generated_tests_pass(root: Path) -> None:
    out = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"services/{NAME}",
              cwd=root, env=child_env(root))  # fmt: skip
    assert " passed" in out and "failed" not in out, out
    if os.environ.get("MARQUE_TEST_POSTGRES_URL"):
        assert "skipped" not in out, out  # every back-end test ran on PostgreSQL too


def test_it_deploys_like_the_others(root: Path) -> None:
    run(sys.executable, root / "tools" / "k8s_gen.py", "--check", cwd=root)
    manifest = list(yaml.safe_load_all((root / f"k8s/base/services/{NAME}.yaml").read_text()))
    kinds = sorted(o["kind"] for o in manifest)
    assert kinds == ["Deployment", "PodDisruptionBudget", "Service", "Service", "ServiceAccount"]
    deployment = next(o for o in manifest if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [f"services.{NAME}"]
    assert container["readinessProbe"]["grpc"]["port"] == 50056
    assert (root / f"k8s/observability/dashboards/{NAME}.json").is_file()
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the overlays were not rendered")
    for overlay in ("dev", "prod"):
        rendered = run("kubectl", "kustomize", root / "k8s" / "overlays" / overlay, cwd=root)
        assert f"name: {NAME}\n" in rendered


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message_classes(image: Path) -> dict[str, Any]:
    """The garage service's request classes, from the buf image (this process's `marque`
    package is the checkout's, which has no garage)."""
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes()).file:
        pool.Add(file)
    names = ["CreateGarageRequest", "CreateGarageResponse", "GetGarageRequest", "Garage"]
    names += ["GetGarageResponse", "GarageCreated"]
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"marque.{NAME}.v1.{n}"))
        for n in names
    }


@dataclass(frozen=True)
class Served:
    address: str
    metrics_port: int
    nats_url: str


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server of the test's own, started as tests/natsfixture.py starts one."""
    server = NatsServer(tmp_path / "nats", port=0, monitor_port=0, mqtt_port=0,
                        name="marque-scaffold", log_path=tmp_path / "nats.log")  # fmt: skip
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def served(root: Path, tmp_path: Path, nats_url: str) -> Iterator[Served]:
    """`python -m services.garage` on free ports, its events relayed to `nats_url`."""
    port, metrics = free_port(), free_port()
    env = child_env(
        root,
        MARQUE_GRPC_PORT=str(port),
        MARQUE_METRICS_PORT=str(metrics),
        MARQUE_GARAGE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'garage.db'}",
        MARQUE_VAR_DIR=str(tmp_path / "var"),
        MARQUE_NATS_URL=nats_url,
    )
    load_keys(env)  # the dev signing pair, created before the service reads it
    log = (tmp_path / "garage.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{NAME}"], cwd=root, env=env, stdout=log, stderr=log
    )
    try:
        yield Served(f"127.0.0.1:{port}", metrics, nats_url)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
        assert code == 0, (tmp_path / "garage.log").read_text()


async def wait_serving(address: str, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            assert loop.time() < deadline, "the service did not report SERVING"
            await asyncio.sleep(0.1)


async def published(nats_url: str, subject: str, within: float = 30.0) -> Any:
    """The last message on `subject` in the service's stream, once the relay has put it
    there (the stream is the relay's to create)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        while True:
            try:
                return await js.get_last_msg(stream_name(NAME), subject)
            except NotFoundError:
                assert loop.time() < deadline, f"nothing was published on {subject}"
                await asyncio.sleep(0.1)
    finally:
        await nc.close()


async def test_it_serves_as_a_process(root: Path, tmp_path: Path, served: Served) -> None:
    await wait_serving(served.address)
    m = message_classes(root / "build" / "image.binpb")
    keys = load_keys({"MARQUE_VAR_DIR": str(tmp_path / "var")})
    dealer = Caller(Kind.DEALER, "d1-staff", dealer_id="D1")
    md = (("authorization", f"Bearer {mint_token(dealer, keys=keys)}"),)
    method = f"/marque.{NAME}.v1.GarageService/"
    async with grpc.aio.insecure_channel(served.address) as channel:

        def call(name: str, reply: str) -> Any:
            return channel.unary_unary(
                method + name,
                request_serializer=lambda msg: msg.SerializeToString(),
                response_deserializer=m[reply].FromString,
            )

        garage = m["Garage"](display_name="Bay 1")
        request = m["CreateGarageRequest"](garage=garage, request_id="r1")
        created = (await call("CreateGarage", "CreateGarageResponse")(request, metadata=md)).garage
        assert (created.dealer_id, created.display_name) == ("D1", "Bay 1")
        got = await call("GetGarage", "GetGarageResponse")(
            m["GetGarageRequest"](garage_id=created.id), metadata=md
        )
        assert got.garage == created
    text = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics",
                                       timeout=5).read()
    )  # fmt: skip
    assert b'marque_garage_garages_created_total{principal="dealer"} 1.0' in text
    # The Create's event, relayed from the outbox to JetStream with its CloudEvents headers.
    msg = await published(served.nats_url, f"marque.{NAME}.GarageCreated")
    assert msg.headers["ce-type"] == f"marque.{NAME}.v1.GarageCreated"
    assert msg.headers["ce-subject"] == created.id
    event = m["GarageCreated"].FromString(msg.data)
    assert (event.garage_id, event.dealer_id, event.display_name) == (created.id, "D1", "Bay 1")


# ------------------------------------------------------------------ the scaffold's own rules


@pytest.mark.parametrize("name", ["ab", "abcdefghijkl"])
def test_short_and_long_names_stay_lint_clean(root: Path, tmp_path: Path, name: str) -> None:
    """Line lengths and import order depend on the name: the shortest and the longest."""
    plan = scaffold.Plan(name, 50059, 9459, root, in_catalog=False)
    for path, text in scaffold.planned_files(plan).items():
        if path.suffix == ".py":
            target = tmp_path / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    # ruff sorts imports by what it finds beside them: the copy's first-party packages.
    for rel in ("mesh", "tests", "pyproject.toml"):
        (tmp_path / rel).symlink_to(root / rel)
    run(BIN / "ruff", "check", "--no-cache", "services", cwd=tmp_path)
    run(BIN / "ruff", "format", "--no-cache", "--check", "services", cwd=tmp_path)


def test_it_refuses_what_it_cannot_write(root: Path) -> None:
    for bad in ("Garage", "erp-adapter", "x", "common", "class", "a" * 13):
        with pytest.raises(scaffold.ScaffoldError, match="not a service name"):
            scaffold.make_plan(bad, root, None, None)
    with pytest.raises(scaffold.ScaffoldError, match="exists already"):
        scaffold.make_plan(NAME, root, None, None)
    with pytest.raises(scaffold.ScaffoldError, match="taken"):
        scaffold.make_plan("wash", root, 50051, None)
    with pytest.raises(scaffold.ScaffoldError, match="change them there"):
        scaffold.make_plan("sales", root, 50070, None)
    sales = scaffold.make_plan("sales", root, None, None)  # planned in the catalog already
    assert (sales.grpc_port, sales.metrics_port, sales.in_catalog) == (50053, 9453, True)
    wash = scaffold.make_plan("wash", root, None, None)
    assert (wash.grpc_port, wash.metrics_port) == (50057, 9457)  # after garage's 50056
    with pytest.raises(scaffold.ScaffoldError, match="unknown placeholder"):
        scaffold.render("{{name}} {{nope}}", scaffold.placeholders("wash"))
    assert [scaffold.plural(w) for w in ("garage", "bus", "battery", "key")] == [
        "garages",
        "buses",
        "batteries",
        "keys",
    ]
