"""The Helm chart against the real API server.

``helm lint --strict``; every rendered object accepted by a server-side dry run; ``helm install``
creating every object and ``helm uninstall`` removing them; values outside the schema refused;
and the chart's RBAC exercised for real: a token of the chart's ServiceAccount is checked
against what it may and may not do, then the real ``album-operator run`` process brings
AlbumCollections, a MasterMerge and an EdgeSnapshotPolicy to Ready with nothing but that token.

Namespaces here start with ``helm-``, so the session's in-process operator (which watches
``albumops-it-*``) never touches them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from album_operator_dev.localcluster.cluster import free_port
from tests.helpers import Kubectl, wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "album-operator"
GROUP = "albumops.io"
KINDS = ("albumcollections", "mastermerges", "edgesnapshotpolicies")
# What kopf asks for cluster-wide in namespaced mode, and is refused without
# rbac.namespacedModeClusterRead: it then falls back to the exact namespace names.
CLUSTER_READS = ("/api/v1/namespaces", "/customresourcedefinitions",
                 "Not enough permissions to list namespaces",
                 "Not enough permissions to watch for resources")


@dataclass(frozen=True)
class Helm:
    binary: Path
    kubeconfig: str
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig,
               "HELM_CACHE_HOME": str(self.home / "cache"),
               "HELM_CONFIG_HOME": str(self.home / "config"),
               "HELM_DATA_HOME": str(self.home / "data")}
        result = subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                                env=env, timeout=180, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
        return result

    def template(self, namespace: str, *args: str) -> list[dict[str, Any]]:
        out = self.run("template", "rel", str(CHART), "--namespace", namespace, *args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def chart(helm: Path, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm, kubectl.kubeconfig, tmp_path_factory.mktemp("helm-home"))


def new_namespace(kubectl: Kubectl, role: str) -> str:
    name = f"helm-{role}-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", name)
    return name


def server_values(watched: str) -> dict[str, Any]:
    """A Qdrant server, one watched namespace, a ServiceMonitor and an Ingress."""
    return {
        "qdrant": {"existingSecret": "qdrant"},
        "watchNamespaces": [watched],
        "rbac": {"extraSecretNames": ["conn", f"{watched}/devices"]},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "snapshots": {"ingress": {"enabled": True, "className": "nginx",
                                  "host": "snapshots.example.com",
                                  "tls": [{"secretName": "snapshots-tls",
                                           "hosts": ["snapshots.example.com"]}]}},
    }


def values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return found


# --- the chart itself --------------------------------------------------------------------------


def test_the_chart_versions_follow_the_project_and_its_crds_are_the_generated_ones() -> None:
    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart_meta["apiVersion"] == "v2"
    assert chart_meta["name"] == "album-operator"
    assert chart_meta["appVersion"] == project["version"]
    generated = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert shipped == generated
    assert len(shipped) == 4  # the three kinds and kopf's peering kinds


def test_helm_lint_strict_passes_with_default_and_with_server_values(
        chart: Helm, tmp_path: Path) -> None:
    chart.run("lint", "--strict", str(CHART))
    chart.run("lint", "--strict", str(CHART), "-f", values_file(tmp_path, server_values("app")))


def test_the_deployment_runs_the_operator_locked_down_with_probes_on_its_health_port(
        chart: Helm) -> None:
    docs = chart.template("ops")
    main = container(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert main["command"] == ["album-operator", "run"]
    assert "--embedded-path=/var/lib/album-operator/qdrant" in main["args"]
    assert "--health-port=8080" in main["args"]
    assert not [a for a in main["args"] if a.startswith(("--namespace", "--qdrant-secret"))]
    assert {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
            "runAsNonRoot": True, "runAsUser": 10001,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}.items() <= main["securityContext"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    for probe in (main["livenessProbe"], main["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in main["ports"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert one(docs, "PersistentVolumeClaim")["metadata"]["name"] == claim
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_with_a_server_the_operator_reads_the_secret_and_watches_only_its_namespaces(
        chart: Helm, tmp_path: Path) -> None:
    docs = chart.template("ops", "-f", values_file(tmp_path, server_values("app")))
    args = container(docs)["args"]
    assert "--qdrant-secret=ops/qdrant" in args
    assert "--namespace=app" in args
    assert not [a for a in args if a.startswith("--embedded-path")]
    assert not by_kind(docs, "PersistentVolumeClaim")
    cluster_role = one(docs, "ClusterRole")
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["get", "list", "watch"]}], "namespaced mode reads nothing else cluster-wide"
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(docs, "Role")}
    assert roles == {("app", "ops-rel-album-operator"), ("app", "ops-rel-album-operator-secrets"),
                     ("ops", "ops-rel-album-operator-secrets")}
    monitor = one(docs, "ServiceMonitor")
    metrics = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("metrics"))
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= metrics["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == metrics["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "snapshots.example.com"


# --- against the API server ---------------------------------------------------------------------


def dry_run(kubectl: Kubectl, docs: list[dict[str, Any]]) -> None:
    """Every namespaced object names its namespace, so none is passed here."""
    text = yaml.safe_dump_all(docs)
    out = kubectl.run("apply", "--dry-run=server", "-f", "-", stdin=text).stdout
    assert out.count("(server dry run)") == len(docs), out


def servicemonitor_crd_installed(kubectl: Kubectl) -> bool:
    result = kubectl.run("get", "crd", "servicemonitors.monitoring.coreos.com",
                         "--ignore-not-found", "-o", "name", check=False)
    return bool(result.stdout.strip())


def test_every_rendered_object_is_accepted_by_the_api_server(
        chart: Helm, kubectl: Kubectl, tmp_path: Path) -> None:
    ops, app = new_namespace(kubectl, "ops"), new_namespace(kubectl, "app")
    dry_run(kubectl, chart.template(ops))
    values = server_values(app)
    docs = chart.template(ops, "-f", values_file(tmp_path, values))
    if not servicemonitor_crd_installed(kubectl):
        docs = [doc for doc in docs if doc["kind"] != "ServiceMonitor"]
    dry_run(kubectl, docs)


def test_names_that_yaml_reads_as_booleans_stay_strings(chart: Helm, kubectl: Kubectl) -> None:
    """Release "n", namespaces "on"/"off", a Secret "y": YAML 1.1 reads these unquoted as
    booleans, and the API machinery then refuses the object."""
    out = chart.run("template", "n", str(CHART), "--namespace", "no", "--set", "nameOverride=on",
                    "--set", "watchNamespaces={on,off}",
                    "--set", "rbac.extraSecretNames={y,no/n}").stdout
    result = kubectl.run("apply", "--dry-run=client", "-f", "-", stdin=out)
    assert result.stdout.count("(dry run)") == len([d for d in yaml.safe_load_all(out) if d])
    ops = new_namespace(kubectl, "ops")
    chart.run("install", "n", str(CHART), "--namespace", ops)
    assert exists(kubectl, "deployment", "n-album-operator", ops)
    chart.run("uninstall", "n", "--namespace", ops)


def manifest_objects(chart: Helm, release: str, namespace: str) -> list[tuple[str, str, str]]:
    """(kind, name, namespace or "") of every object of a release, from its stored manifest."""
    out = chart.run("get", "manifest", release, "--namespace", namespace).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    return [(doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace", ""))
            for doc in docs]


def exists(kubectl: Kubectl, kind: str, name: str, namespace: str) -> bool:
    args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
    result = kubectl.run(*args, namespace=namespace or None)
    return bool(result.stdout.strip())


def test_install_creates_every_object_upgrade_changes_it_and_uninstall_removes_them(
        chart: Helm, kubectl: Kubectl) -> None:
    ops = new_namespace(kubectl, "ops")
    chart.run("install", "album", str(CHART), "--namespace", ops,
              "--set", "rbac.extraSecretNames={conn}")
    objects = manifest_objects(chart, "album", ops)
    kinds = {kind for kind, _, _ in objects}
    assert kinds == {"ServiceAccount", "PersistentVolumeClaim", "ClusterRole",
                     "ClusterRoleBinding", "Service", "Deployment"}
    for kind, name, namespace in objects:
        assert exists(kubectl, kind, name, namespace), f"{kind} {namespace}/{name}"
    status = json.loads(chart.run("status", "album", "--namespace", ops, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"

    chart.run("upgrade", "album", str(CHART), "--namespace", ops, "--reuse-values",
              "--set", "operator.resyncSeconds=30")
    deployment = kubectl.get("deployment", "album-album-operator", ops)
    assert "--resync-seconds=30" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    chart.run("uninstall", "album", "--namespace", ops)
    for kind, name, namespace in objects:
        kept = kind == "PersistentVolumeClaim"  # helm.sh/resource-policy: keep
        assert exists(kubectl, kind, name, namespace) == kept, f"{kind} {namespace}/{name}"
    for plural in KINDS:
        assert exists(kubectl, "crd", f"{plural}.{GROUP}", ""), "CRDs stay after uninstall"
    assert chart.run("list", "--namespace", ops, "-q").stdout.strip() == ""


SCHEMA_VIOLATIONS = [
    (["--set", "replicaCount=6", "--set", "qdrant.existingSecret=q"],
     "at '/replicaCount': maximum: got 6, want 5"),
    (["--set", "replicaCount=2"], "at '/qdrant/existingSecret': minLength"),
    (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy': value must be one of"),
    (["--set", "replicas=3"], "additional properties 'replicas' not allowed"),
    (["--set", "metrics.port=0"], "at '/metrics/port': minimum: got 0, want 1"),
    (["--set", "watchNamespaces={Not_A_Namespace}"], "at '/watchNamespaces/0'"),
    (["--set", "snapshots.ingress.enabled=true"], "at '/snapshots/ingress/host'"),
    (["--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true"],
     "at '/metrics/enabled': value must be true"),
    (["--set", "rbac.extraSecretNames={a/b/c}"], "at '/rbac/extraSecretNames/0'"),
    (["--set", "embedded.persistence.accessMode=Sometimes"],
     "at '/embedded/persistence/accessMode'"),
]


@pytest.mark.parametrize(("args", "message"), SCHEMA_VIOLATIONS,
                         ids=[" ".join(a) for a, _ in SCHEMA_VIOLATIONS])
def test_values_outside_the_schema_are_refused_by_template_and_install(
        chart: Helm, kubectl: Kubectl, args: list[str], message: str) -> None:
    rendered = chart.run("template", "rel", str(CHART), *args, check=False)
    assert rendered.returncode != 0
    assert "values don't meet the specifications of the schema" in rendered.stderr
    assert message in rendered.stderr, rendered.stderr
    ops = new_namespace(kubectl, "bad")
    installed = chart.run("install", "bad", str(CHART), "--namespace", ops, *args, check=False)
    assert installed.returncode != 0
    assert message in installed.stderr, installed.stderr
    assert chart.run("list", "--namespace", ops, "-q").stdout.strip() == ""
    assert not exists(kubectl, "deployment", "bad-album-operator", ops)


def test_the_template_itself_refuses_embedded_replicas_when_schema_checks_are_skipped(
        chart: Helm) -> None:
    embedded = chart.run("template", "rel", str(CHART), "--skip-schema-validation",
                         "--set", "replicaCount=2", check=False)
    assert embedded.returncode != 0
    assert "not possible with the embedded engine" in embedded.stderr


def test_replicas_on_a_server_join_a_peering_with_distinct_priorities(chart: Helm) -> None:
    cluster_wide = chart.template("ops", "--set", "replicaCount=3",
                                  "--set", "qdrant.existingSecret=q")
    args = one(cluster_wide, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    name = one(cluster_wide, "Deployment")["metadata"]["name"]
    assert f"--peering={name}" in args
    assert "--priority=auto" in args
    assert "--peering-lifetime=60" in args
    assert [p["metadata"]["name"] for p in by_kind(cluster_wide, "ClusterKopfPeering")] == [
        name]
    rules = one(cluster_wide, "ClusterRole")["rules"]
    assert {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"],
            "verbs": ["get", "list", "watch", "patch"]} in rules
    namespaced = chart.template("ops", "--set", "replicaCount=2", "--set",
                                "qdrant.existingSecret=q", "--set", "watchNamespaces={a,b}")
    assert sorted(p["metadata"]["namespace"] for p in by_kind(namespaced, "KopfPeering")) == [
        "a", "b"]
    single = one(chart.template("ops"), "Deployment")
    assert not [a for a in single["spec"]["template"]["spec"]["containers"][0]["args"]
                if a.startswith("--peering")]


# --- RBAC with the chart's own ServiceAccount token ----------------------------------------------


def token_kubectl(kubectl: Kubectl, service_account: str, namespace: str, path: Path) -> Kubectl:
    """A kubectl that authenticates with a fresh token of the ServiceAccount and nothing else:
    the API server URL and CA come from the test cluster's kubeconfig."""
    token = kubectl.run("create", "token", service_account, "--duration=1h",
                        namespace=namespace).stdout.strip()
    admin = yaml.safe_load(Path(kubectl.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {
            "cluster": cluster["name"], "user": service_account, "namespace": namespace}}],
        "current-context": "operator",
    }))
    path.chmod(0o600)
    cache = path.parent / f"{path.stem}-cache"
    return Kubectl(kubectl.binary, str(path), str(cache))


def allowed(sa: Kubectl, *args: str, namespace: str | None = None) -> bool:
    """Makes the real call; True if the API server let it through, False if it said Forbidden."""
    result = sa.run(*args, namespace=namespace, check=False)
    if result.returncode == 0:
        return True
    assert "forbidden" in result.stderr.lower(), result.stderr
    return False


def can_i(sa: Kubectl, verb: str, resource: str, namespace: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource]
    args += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
    return sa.run(*args, check=False).stdout.strip() == "yes"


def album(name: str, year: int) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "AlbumCollection",
            "metadata": {"name": name, "labels": {"album": "photos"}},
            "spec": {"year": year, "vectors": {"size": 4}, "deletionPolicy": "Delete"}}


def master(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "MasterMerge",
            "metadata": {"name": name},
            "spec": {"alias": name.replace("-", "_"), "deletionPolicy": "Delete",
                     "sourceSelector": {"matchLabels": {"album": "photos"}}}}


def edge_policy(name: str, collection: str, token_secret: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "EdgeSnapshotPolicy",
            "metadata": {"name": name},
            "spec": {"collection": collection, "source": "Build", "schedule": "0 0 1 1 *",
                     "devices": [{"name": "kiosk", "tokenSecretRef": token_secret}]}}


def create_secret(kubectl: Kubectl, name: str, namespace: str, **data: str) -> None:
    literals = [f"--from-literal={key}={value}" for key, value in data.items()] or [
        "--from-literal=token=t"]
    kubectl.run("create", "secret", "generic", name, *literals, namespace=namespace)


def test_cluster_mode_rbac_reads_only_the_named_secrets(
        chart: Helm, kubectl: Kubectl, tmp_path: Path) -> None:
    ops, elsewhere = new_namespace(kubectl, "ops"), new_namespace(kubectl, "else")
    for name in ("qdrant", "conn", "private"):
        create_secret(kubectl, name, ops)
    create_secret(kubectl, "conn", elsewhere)
    create_secret(kubectl, "private", elsewhere)
    chart.run("install", "album", str(CHART), "--namespace", ops,
              "--set", "qdrant.existingSecret=qdrant", "--set", "rbac.extraSecretNames={conn}")
    kubectl.apply(album("photos", 2020), elsewhere)
    sa = token_kubectl(kubectl, "album-album-operator", ops, tmp_path / "sa.kubeconfig")

    assert allowed(sa, "get", "albumcollections", "--all-namespaces")
    assert allowed(sa, "label", "albumcollection/photos", "probe=1", namespace=elsewhere)
    assert can_i(sa, "patch", f"albumcollections.{GROUP}/status", elsewhere)
    assert can_i(sa, "watch", f"mastermerges.{GROUP}")
    assert can_i(sa, "create", "events", elsewhere)
    assert allowed(sa, "get", "crd", f"albumcollections.{GROUP}")
    assert allowed(sa, "get", "secret", "qdrant", namespace=ops)
    assert allowed(sa, "get", "secret", "conn", namespace=ops)
    assert allowed(sa, "get", "secret", "conn", namespace=elsewhere)
    assert not allowed(sa, "get", "secret", "private", namespace=ops)
    assert not allowed(sa, "get", "secret", "private", namespace=elsewhere)
    assert not allowed(sa, "get", "secret", "qdrant", namespace=elsewhere)
    assert not allowed(sa, "get", "secrets", namespace=ops)
    assert not allowed(sa, "get", "namespaces")
    assert not allowed(sa, "delete", "albumcollection/photos", namespace=elsewhere)
    assert not can_i(sa, "create", f"albumcollections.{GROUP}", elsewhere)
    assert not can_i(sa, "create", "configmaps", ops)
    kubectl.run("delete", "albumcollection", "photos", namespace=elsewhere)
    chart.run("uninstall", "album", "--namespace", ops)


@pytest.fixture
def operator_log(tmp_path: Path) -> Path:
    return tmp_path / "operator.log"


@dataclass(frozen=True)
class NamespacedRelease:
    ops: str
    app: str
    other: str
    cluster_read: bool


@pytest.fixture(params=[True, False], ids=["cluster-read", "no-cluster-rights"])
def namespaced_release(request: pytest.FixtureRequest, chart: Helm, kubectl: Kubectl,
                       tmp_path: Path) -> Iterator[NamespacedRelease]:
    """The chart in namespaced mode: installed in ``ops``, watching ``app`` only; with and
    without the read-only cluster-wide rights of rbac.namespacedModeClusterRead."""
    cluster_read: bool = request.param
    ops, app, other = (new_namespace(kubectl, role) for role in ("ops", "app", "other"))
    create_secret(kubectl, "qdrant", ops, url="http://qdrant.invalid:6333", apiKey="k")
    for namespace in (ops, app, other):
        create_secret(kubectl, "conn", namespace)
        create_secret(kubectl, "private", namespace)
    create_secret(kubectl, "kiosk-token", app, token="device-token-0123456789abcdef")
    values = {"watchNamespaces": [app], "qdrant": {"existingSecret": "qdrant"},
              "rbac": {"extraSecretNames": ["conn", f"{app}/kiosk-token"],
                       "namespacedModeClusterRead": cluster_read}}
    chart.run("install", "album", str(CHART), "--namespace", ops,
              "-f", values_file(tmp_path, values))
    yield NamespacedRelease(ops, app, other, cluster_read)
    chart.run("uninstall", "album", "--namespace", ops)


def assert_namespaced_rbac(sa: Kubectl, release: NamespacedRelease) -> None:
    ops, app, other = release.ops, release.app, release.other
    assert allowed(sa, "get", "albumcollections,mastermerges,edgesnapshotpolicies",
                   namespace=app)
    assert can_i(sa, "patch", f"albumcollections.{GROUP}", app)
    assert can_i(sa, "patch", f"mastermerges.{GROUP}/status", app)
    assert can_i(sa, "create", "events", app)
    assert not allowed(sa, "get", "albumcollections", namespace=other)
    assert not allowed(sa, "get", "albumcollections", namespace=ops)
    assert not allowed(sa, "get", "albumcollections", "--all-namespaces")
    assert allowed(sa, "get", "secret", "qdrant", namespace=ops)
    assert allowed(sa, "get", "secret", "conn", namespace=app)
    assert not allowed(sa, "get", "secret", "private", namespace=ops)
    assert not allowed(sa, "get", "secret", "private", namespace=app)
    assert not allowed(sa, "get", "secret", "conn", namespace=other)
    assert not allowed(sa, "get", "secrets", namespace=app)
    assert allowed(sa, "get", "namespaces") == release.cluster_read
    assert allowed(sa, "get", "customresourcedefinitions") == release.cluster_read
    assert not can_i(sa, "get", "namespaces")
    assert not can_i(sa, "patch", "customresourcedefinitions")
    assert not allowed(sa, "get", "clusterroles")


@pytest.fixture
def token_operator(namespaced_release: NamespacedRelease, kubectl: Kubectl,
                   tmp_path: Path, operator_log: Path) -> Iterator[tuple[Kubectl, int]]:
    """``album-operator run`` as a process, authenticated only by the chart's token."""
    ops, app = namespaced_release.ops, namespaced_release.app
    sa = token_kubectl(kubectl, "album-album-operator", ops, tmp_path / "sa.kubeconfig")
    health_port = free_port()
    command = [str(Path(sys.executable).parent / "album-operator"), "run", "-n", app,
               "--embedded-path", str(tmp_path / "qdrant"), "--health-port", str(health_port),
               "--resync-seconds", "5"]
    with operator_log.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "KUBECONFIG": sa.kubeconfig})
    try:
        yield sa, health_port
    finally:
        kubectl.run("delete", "edgesnapshotpolicies,mastermerges,albumcollections", "--all",
                    "--wait=true",
                    "--timeout=60s", namespace=app, check=False)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def healthz(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


# kopf's APIForbiddenError and the kubernetes client's ApiException both say "forbidden";
# a bare "403" would also match the milliseconds of a timestamp or a duration.
REFUSAL = re.compile(r"forbidden", re.IGNORECASE)


def refusals(log: str) -> list[str]:
    return [line for line in log.splitlines() if REFUSAL.search(line)]


def test_namespaced_mode_rbac_is_enough_for_the_real_operator_and_no_more(
        namespaced_release: NamespacedRelease, token_operator: tuple[Kubectl, int],
        kubectl: Kubectl, operator_log: Path) -> None:
    app = namespaced_release.app
    sa, health_port = token_operator
    assert_namespaced_rbac(sa, namespaced_release)
    wait_for(lambda: healthz(health_port), timeout=60, what="the operator's /healthz")

    kubectl.apply(album("album-2020", 2020), app)
    kubectl.apply(album("album-2021", 2021), app)
    started = time.monotonic()
    kubectl.run("wait", "--for=condition=Ready", "albumcollections", "--all",
                "--timeout=180s", namespace=app)
    took = time.monotonic() - started
    kubectl.apply(master("master"), app)
    kubectl.run("wait", "--for=condition=Ready", "mastermerge/master", "--timeout=120s",
                namespace=app)
    kubectl.apply(edge_policy("kiosks", "album_2020", "kiosk-token"), app)
    kubectl.run("wait", "--for=condition=Ready", "edgesnapshotpolicy/kiosks",
                "--timeout=120s", namespace=app)
    events = kubectl.events("album-2020", app)
    assert any(e.get("reportingComponent") == "album-operator"
               or e.get("source", {}).get("component") == "album-operator" for e in events)

    refused = refusals(operator_log.read_text())
    if namespaced_release.cluster_read:
        assert refused == [], "the operator was refused nothing"
        assert took < 30, f"Ready after {took:.0f}s"
    else:
        assert refused, "kopf asked for the cluster-wide reads and was refused"
        unexpected = [line for line in refused if not any(r in line for r in CLUSTER_READS)]
        assert unexpected == [], "and was refused nothing else"
