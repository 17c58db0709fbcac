"""The Helm chart (``helm/ats``): rendered and linted by Helm itself, validated against Kubernetes' schemas.

Helm comes from ``helm-python-sdk`` (the ``test`` extra): it binds Helm's Go SDK through ctypes, so
rendering and linting run in-process, offline, in milliseconds, with no ``helm`` binary to fetch.
Every rendered manifest is checked with ``kubernetes-validate`` (strict: unknown fields are errors).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from availability import metrics as catalogue
from availability.settings import Settings, describe_variables, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ats"
PRODUCTION_VALUES = CHART / "values-production.yaml"
KUBE_VERSIONS = ("1.27.0", "1.30.0", "1.37.0")  # Chart.yaml's kubeVersion floor, a common one, the newest schema
RELEASE, NAMESPACE = "ats", "retail"

#: Kinds from CRDs (no schema in kubernetes-validate): checked field by field below instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
#: ATS_* variables the chart leaves unset on purpose, each with the reason (values.yaml says it too).
OMITTED = {
    "ATS_CHANNELS_FILE": "set only when `channels` is given; unset means every location, no buffer",
    "ATS_API_TOKENS_FILE": "the chart gives ATS_API_TOKENS from its Secret; the file form is for extraVolumes",
    "ATS_TRADING_HOURS_FILE": "per-location hours are a file: mount it with extraVolumes, set it in extraEnv",
    **dict.fromkeys(("ATS_KAFKA_SASL_USERNAME", "ATS_KAFKA_SASL_PASSWORD_FILE", "ATS_KAFKA_SSL_CAFILE",
                     "ATS_KAFKA_SSL_CERTFILE", "ATS_KAFKA_SSL_KEYFILE", "ATS_REDIS_PASSWORD_FILE",
                     "ATS_REDIS_SSL_CAFILE"),
                    "null in values.yaml: set only with the Kafka/Redis security that needs it (a file or a user)"),
}
SECRET_VARIABLES = {"ATS_REDIS_URL", "ATS_API_TOKENS", "ATS_KAFKA_SASL_PASSWORD"}
#: Settings whose chart default differs from the process default, and why.
POD_DEFAULTS = {
    "broker_url": "no embedded broker in a cluster: a placeholder to override",
    "redis_url": "no embedded cache in a cluster: a placeholder to override",
    "api_host": "0.0.0.0: reachable from the Service, not loopback",
    "data_dir": "/var/lib/ats: the worker's persistent volume",
    "worker_metrics_host": "0.0.0.0: Prometheus scrapes each worker pod from outside it",
}


def _helm() -> Any:
    try:
        return importlib.import_module("helm_python")
    except (ImportError, OSError) as exc:  # OSError: the bundled libhelm_c failed to load
        pytest.fail(f"Helm is needed to test the chart: install the test extra (pip install -e '.[test]'), "
                    f"which brings helm-python-sdk with Helm's library bundled ({exc})")


@pytest.fixture(scope="module")
def helm() -> Any:
    return _helm()


@pytest.fixture(scope="module")
def chart(helm: Any) -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def production_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(PRODUCTION_VALUES.read_text(encoding="utf-8"))
    return values


def render(chart: Any, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every rendered Kubernetes object (NOTES.txt and empty documents left out)."""
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def environment(objects: list[dict[str, Any]]) -> dict[str, str]:
    """What the pods get from the ConfigMap and the chart's Secret."""
    env = dict(one(objects, "ConfigMap", f"{RELEASE}-config")["data"])
    env.update(one(objects, "Secret")["stringData"])
    return env


VALUE_SETS = {"default": None, "production": production_values}


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, chart: Any) -> tuple[str, list[dict[str, Any]]]:
    make = VALUE_SETS[request.param]
    return request.param, render(chart, make() if make else None)


@pytest.fixture(scope="module")
def default(chart: Any) -> list[dict[str, Any]]:
    return render(chart)


@pytest.fixture(scope="module")
def production(chart: Any) -> list[dict[str, Any]]:
    return render(chart, production_values())


# ---- Helm and Kubernetes agree ------------------------------------------------------------------------

@pytest.mark.parametrize("which", sorted(VALUE_SETS))
def test_lint_is_clean(helm: Any, which: str) -> None:
    values = production_values() if which == "production" else None
    report = helm.lint(CHART, values, strict=True, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert report["errors"] == [], report
    assert problems == [], report


def test_every_manifest_validates_against_the_kubernetes_schemas(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    import kubernetes_validate

    which, objects = rendered
    checked = []
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                name = f"{obj['kind']}/{obj['metadata']['name']}"
                pytest.fail(f"{which}: {name} at {path}: {exc.message} (k8s {version})")
        checked.append(obj["kind"])
    expected = {"ConfigMap", "Secret", "ServiceAccount", "StatefulSet", "Service", "PodDisruptionBudget",
                "Deployment", "HorizontalPodAutoscaler"}
    if which == "production":
        expected -= {"Secret"}  # existingSecret
    assert expected <= set(checked), checked


def test_names_are_unique_per_kind(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), keys


# ---- configuration: 1:1 with the settings ---------------------------------------------------------------

def test_every_setting_is_configured_or_deliberately_omitted(default: list[dict[str, Any]]) -> None:
    variables = {name for name, _default, _meaning in describe_variables()}
    env = environment(default)
    assert set(env) <= variables, f"the chart sets variables the engine does not know: {set(env) - variables}"
    assert variables - set(env) == set(OMITTED), "every ATS_* variable is set, or listed in OMITTED with a reason"
    assert set(one(default, "Secret")["stringData"]) == SECRET_VARIABLES
    assert not SECRET_VARIABLES & set(one(default, "ConfigMap", f"{RELEASE}-config")["data"])
    values_text = (CHART / "values.yaml").read_text(encoding="utf-8")
    for name in OMITTED:
        assert name in values_text, f"values.yaml must say why {name} is left unset"


def test_the_rendered_environment_is_accepted_by_the_engine_and_keeps_its_defaults(
        default: list[dict[str, Any]]) -> None:
    settings = load_settings(environment(default))  # raises SettingsError naming a bad variable
    process_defaults = Settings.model_validate({})
    for field in Settings.model_fields:
        if field in POD_DEFAULTS or field == "api_tokens":
            continue
        assert getattr(settings, field) == getattr(process_defaults, field), f"ATS_{field.upper()} drifted"
    assert settings.api_host == "0.0.0.0"
    assert str(settings.data_dir) == "/var/lib/ats"


def test_large_numbers_stay_integers(chart: Any) -> None:
    """Helm holds every number as float64; 1048576 must not reach the engine as 1.048576e+06."""
    env = environment(render(chart, {"config": {"max_body_bytes": 4_194_304, "session_timeout_seconds": 2.5}}))
    assert env["ATS_MAX_BODY_BYTES"] == "4194304"
    assert env["ATS_SESSION_TIMEOUT_SECONDS"] == "2.5"
    assert load_settings(env).max_body_bytes == 4_194_304


def test_channels_become_a_mounted_file_the_api_and_the_worker_read(production: list[dict[str, Any]]) -> None:
    """The worker reads it too (the change feed's low-stock levels), and refuses to start without it."""
    env = one(production, "ConfigMap", f"{RELEASE}-config")["data"]
    path = Path(env["ATS_CHANNELS_FILE"])
    channels = one(production, "ConfigMap", f"{RELEASE}-channels")
    assert path.name in channels["data"]
    for kind in ("Deployment", "StatefulSet"):
        pod = one(production, kind)["spec"]["template"]["spec"]
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "channels")
        assert mount["mountPath"] == str(path.parent)
        assert any(v["name"] == "channels" and v["configMap"]["name"] == channels["metadata"]["name"]
                   for v in pod["volumes"])


def test_production_takes_credentials_from_an_existing_secret(production: list[dict[str, Any]]) -> None:
    assert not [o for o in production if o["kind"] == "Secret"], "no Secret of ours when existingSecret is set"
    for kind in ("StatefulSet", "Deployment"):
        container = one(production, kind)["spec"]["template"]["spec"]["containers"][0]
        refs = [source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source]
        assert refs == ["ats-credentials"]


def test_production_connects_with_sasl_over_tls_from_mounted_files(production: list[dict[str, Any]],
                                                                      tmp_path: Path) -> None:
    """Every file the production settings name is mounted from a Secret, and the engine accepts them."""
    env = one(production, "ConfigMap", f"{RELEASE}-config")["data"]
    assert env["ATS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert "ATS_KAFKA_SASL_PASSWORD" not in env, "a password is never in a ConfigMap"
    files = {name: value for name, value in env.items()
             if name.startswith(("ATS_KAFKA_", "ATS_REDIS_")) and name.endswith("FILE")}
    assert set(files) >= {"ATS_KAFKA_SASL_PASSWORD_FILE", "ATS_KAFKA_SSL_CAFILE", "ATS_REDIS_SSL_CAFILE"}
    for kind in ("StatefulSet", "Deployment"):
        spec = one(production, kind)["spec"]["template"]["spec"]
        secrets = {v["name"] for v in spec["volumes"] if "secret" in v}
        mounted = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"] if m["name"] in secrets}
        for name, path in files.items():
            assert str(Path(path).parent) in mounted, f"{name}={path} is not on a mounted Secret in the {kind}"
    # The engine's parser takes the rendered values (files stood in for by local ones).
    local = {}
    for name in files:
        (tmp_path / name).write_text("x")
        local[name] = str(tmp_path / name)
    settings = load_settings({**env, **local, "ATS_REDIS_URL": "rediss://redis.example.internal:6380/0"})
    assert settings.kafka_sasl_username == "ats-engine"


# ---- the worker -------------------------------------------------------------------------------------------

def test_worker_is_a_statefulset_with_its_own_volume(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    env = one(objects, "ConfigMap", f"{RELEASE}-config")["data"]
    worker = one(objects, "StatefulSet")
    spec = worker["spec"]
    assert 1 <= spec["replicas"] <= int(env["ATS_PARTITIONS"])
    assert spec["podManagementPolicy"] == "Parallel"
    headless = one(objects, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    claim = spec["volumeClaimTemplates"][0]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["worker"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == env["ATS_DATA_DIR"], "RocksDB lives on the claimed volume"
    assert env["ATS_STORE"] == "rocksdb"
    assert pod["terminationGracePeriodSeconds"] >= 60, "SIGTERM needs time to flush, write the changelog, commit"
    assert "livenessProbe" not in container, "none by default: the worker exits on fatal errors (see values.yaml)"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_production_runs_three_workers_spread_over_zones(production: list[dict[str, Any]]) -> None:
    assert one(production, "StatefulSet")["spec"]["replicas"] == 3
    for kind in ("StatefulSet", "Deployment"):
        (spread,) = one(production, kind)["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "topology.kubernetes.io/zone"


def test_more_workers_than_partitions_is_refused(helm: Any, chart: Any) -> None:
    # `helm lint` turns `fail` into a log line (lint mode), so the guard is asserted on render, as install runs it.
    with pytest.raises(helm.HelmRenderError, match=r"worker.replicas \(9\) must not exceed config.partitions \(8\)"):
        render(chart, {"worker": {"replicas": 9}})


def test_a_misspelt_setting_is_refused(helm: Any, chart: Any) -> None:
    with pytest.raises(helm.HelmValuesError, match="partiton"):
        render(chart, {"config": {"partiton": 3}})


# ---- the API ----------------------------------------------------------------------------------------------

def test_api_probes_ports_and_service(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    env = one(objects, "ConfigMap", f"{RELEASE}-config")["data"]
    deployment = one(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["api"]
    assert container["ports"] == [{"name": "http", "containerPort": int(env["ATS_API_PORT"]), "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["requests"]["memory"]
    service = one(objects, "Service", f"{RELEASE}-api")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_hpa_scales_the_api_deployment(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    which, objects = rendered
    deployment = one(objects, "Deployment")
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    if which == "production":
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)


def test_pdbs_select_their_pods(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    budgets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodDisruptionBudget"}
    api_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    worker_labels = one(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert budgets[f"{RELEASE}-api"]["spec"]["selector"]["matchLabels"].items() <= api_labels.items()
    assert budgets[f"{RELEASE}-api"]["spec"]["minAvailable"] >= 1
    assert budgets[f"{RELEASE}-worker"]["spec"]["selector"]["matchLabels"].items() <= worker_labels.items()
    assert not budgets[f"{RELEASE}-api"]["spec"]["selector"]["matchLabels"].items() <= worker_labels.items()


def test_pods_run_as_non_root_on_a_read_only_root(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for kind in ("StatefulSet", "Deployment"):
        pod = one(objects, kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}  # noqa: S108 - an emptyDir


# ---- Prometheus -----------------------------------------------------------------------------------------

def test_service_monitor_is_gated_and_scrapes_the_api(default: list[dict[str, Any]],
                                                      production: list[dict[str, Any]]) -> None:
    assert not [o for o in default if o["kind"] == "ServiceMonitor"]
    monitor = one(production, "ServiceMonitor", f"{RELEASE}-api")
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    service = one(production, "Service", f"{RELEASE}-api")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_every_worker_serves_metrics_and_a_service_monitor_scrapes_them(production: list[dict[str, Any]]) -> None:
    env = one(production, "ConfigMap", f"{RELEASE}-config")["data"]
    port = int(env["ATS_WORKER_METRICS_PORT"])
    assert port
    assert env["ATS_WORKER_METRICS_HOST"] == "0.0.0.0"
    worker = one(production, "StatefulSet")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    service = one(production, "Service", worker["spec"]["serviceName"])
    assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]
    monitor = one(production, "ServiceMonitor", f"{RELEASE}-worker")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= one(
        production, "Service", f"{RELEASE}-api")["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")


def test_a_worker_without_a_metrics_port_exposes_none(chart: Any) -> None:
    objects = render(chart, {"config": {"worker_metrics_port": 0}, "serviceMonitor": {"enabled": True}})
    assert "ports" not in one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceMonitor"] == [f"{RELEASE}-api"]


# ---- dashboard and alerts: only what the metrics catalogue lists --------------------------------------

DASHBOARD = CHART / "dashboards" / "ats.json"
METRIC_NAME = re.compile(r"\b(ats_[a-z0-9_]+)\b")


def queried(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in METRIC_NAME.findall(expr)}


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    return [target["expr"] for panel in panels(dashboard["panels"]) for target in panel.get("targets", [])]


def test_every_metric_the_dashboard_queries_is_in_the_catalogue() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    names = queried(dashboard_expressions(dashboard))
    assert names, "the dashboard queries nothing"
    assert names <= catalogue.series_names(), f"not in availability/metrics.py: {names - catalogue.series_names()}"
    families = {m.name for m in catalogue.CATALOGUE if set(m.series) & names}
    assert families == {m.name for m in catalogue.CATALOGUE}, "every catalogued metric has a panel"
    assert {"${datasource}"} == {t["datasource"]["uid"] for expr_panel in dashboard["panels"]
                                 for t in expr_panel.get("targets", [])}


def test_the_dashboard_ships_in_a_configmap_grafana_picks_up(default: list[dict[str, Any]],
                                                           production: list[dict[str, Any]]) -> None:
    assert not [o for o in default if o["metadata"]["name"] == f"{RELEASE}-dashboard"]
    config = one(production, "ConfigMap", f"{RELEASE}-dashboard")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config["data"]["ats.json"]) == json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_alerts_query_the_catalogue_and_link_their_runbook(default: list[dict[str, Any]],
                                                           production: list[dict[str, Any]]) -> None:
    assert not [o for o in default if o["kind"] == "PrometheusRule"]
    rule = one(production, "PrometheusRule")
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"ATSConsumerLagGrowing", "ATSFreshnessP99High", "ATSDeadLettersRising",
                           "ATSCacheWriteErrors", "ATSNegativeOnHand", "ATSErpDrift", "ATSSilentLocations"}
    names = queried([r["expr"] for r in alerts.values()])
    assert names <= catalogue.series_names(), names - catalogue.series_names()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        anchor = alert["annotations"]["runbook_url"].rpartition("#")[2]
        assert anchor == name.lower()
        assert f"### {name}" in readme, f"the README's runbook has no section for {name}"
