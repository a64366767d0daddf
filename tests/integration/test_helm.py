"""The Helm chart against the real API server.

``helm lint --strict`` and every rendered object accepted by a server-side dry run, for a matrix
of values (replicas and their PodDisruptionBudget, OpenShift's null security context fields,
extra env/args/volumes, topology spread, NetworkPolicy, templated CRDs and kopf's peering CRDs
on and off, watched namespaces); ``helm install`` creating every object and ``helm uninstall``
removing them; ``helm upgrade`` upgrading a CRD that uninstall then keeps; values outside the
schema refused (and the README showing helm's exact message);
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
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
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

from album_operator.adapters.crdinstall import install_crds
from album_operator.adapters.kube import load_api_client
from album_operator_dev.localcluster.cluster import free_port
from tests.helpers import Kubectl, wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "album-operator"
PEERING_CRDS_DIR = CHART / "charts" / "kopf-peering-crds" / "crds"
# The session installed the CRDs (conftest): releases here leave them alone, except in the
# tests about the chart's CRDs, which take them over.
SHARED_CRDS = ("--set", "crds.create=false")
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
    shipped = {p.name: p.read_text() for p in [*(CHART / "files" / "crds").glob("*.yaml"),
                                               *PEERING_CRDS_DIR.glob("*.yaml")]}
    assert shipped == generated
    assert len(shipped) == 4  # the three kinds and kopf's peering kinds
    assert not (CHART / "crds").exists(), "Helm would install it besides the templated CRDs"


def test_the_packaged_chart_carries_the_project_version_and_its_image_defaults_to_it(
        helm: Path, tmp_path: Path) -> None:
    """What `make chart-package` writes and `helm push` publishes (docs/release.md): the
    archive named and versioned after pyproject.toml, with the subchart, schema and CRDs."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    packager = Helm(helm, kubeconfig="", home=tmp_path / "helm-home")
    packager.run("package", str(CHART), "--destination", str(tmp_path))
    archive = tmp_path / f"album-operator-{version}.tgz"
    assert [p.name for p in tmp_path.glob("*.tgz")] == [archive.name]
    with tarfile.open(archive) as tgz:
        names = set(tgz.getnames())
        packaged_file = tgz.extractfile("album-operator/Chart.yaml")
        assert packaged_file is not None
        packaged = yaml.safe_load(packaged_file.read())
    assert (packaged["version"], packaged["appVersion"]) == (version, version)
    assert {"album-operator/values.schema.json",
            "album-operator/charts/kopf-peering-crds/Chart.yaml",
            *(f"album-operator/files/crds/{p.name}" for p in (REPO / "crds").glob("*.yaml")
              if "kopf" not in p.name)} <= names
    rendered = packager.run("template", "rel", str(archive), "--namespace", "ops").stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert container(docs)["image"] == f"album-operator:{version}"


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
    for probe in (main["startupProbe"], main["livenessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    # only the working replica, its policies registered, is Ready: Services route to it alone
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert main["startupProbe"]["periodSeconds"] * main["startupProbe"]["failureThreshold"] \
        >= 300
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in main["ports"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert one(docs, "PersistentVolumeClaim")["metadata"]["name"] == claim
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    # a read-only root: the home and temporary directories are the /tmp emptyDir
    assert {"name": "HOME", "value": "/tmp"} in main["env"]
    assert {"name": "TMPDIR", "value": "/tmp"} in main["env"]
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_probe_timings_are_values(chart: Helm) -> None:
    main = container(chart.template(
        "ops", "--set", "probes.readiness.periodSeconds=2",
        "--set", "probes.readiness.failureThreshold=1",
        "--set", "probes.startup.failureThreshold=120",
        "--set", "probes.liveness.initialDelaySeconds=30"))
    assert main["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "health"},
                                      "periodSeconds": 2, "timeoutSeconds": 5,
                                      "failureThreshold": 1}
    assert main["startupProbe"]["failureThreshold"] == 120
    assert main["livenessProbe"]["initialDelaySeconds"] == 30
    refused = chart.run("template", "rel", str(CHART), "--set", "probes.readiness.period=2",
                        check=False)
    assert refused.returncode != 0


def test_replicas_roll_without_waiting_for_a_ready_standby(chart: Helm) -> None:
    """A standby is never Ready while another replica works, so a rollout that counted Ready
    Pods would keep the old working replica for good."""
    deployment = one(chart.template("ops", "--set", "replicaCount=2",
                                    "--set", "qdrant.existingSecret=q"), "Deployment")
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "100%"}}


def test_snapshots_can_live_on_a_claim_with_a_server(chart: Helm) -> None:
    server = ("--set", "qdrant.existingSecret=q")
    default = chart.template("ops", *server)
    assert "emptyDir" in {v["name"]: v for v in pod_spec(default)["volumes"]}["data"]
    assert not by_kind(default, "PersistentVolumeClaim")
    kept = chart.template("ops", *server, "--set", "snapshots.persistence.enabled=true")
    [claim] = by_kind(kept, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = {v["name"]: v for v in pod_spec(kept)["volumes"]}["data"]
    assert data == {"name": "data", "persistentVolumeClaim": {
        "claimName": claim["metadata"]["name"]}}
    assert "--snapshot-dir=/var/lib/album-operator/snapshots" in container(kept)["args"]
    replicas = ("--set", "replicaCount=2", "--set", "snapshots.persistence.enabled=true")
    refused = chart.run("template", "rel", str(CHART), *server, *replicas, check=False)
    assert refused.returncode != 0
    assert "needs accessMode ReadWriteMany" in refused.stderr
    shared = chart.template("ops", *server, *replicas,
                            "--set", "snapshots.persistence.accessMode=ReadWriteMany")
    assert one(shared, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]
    existing = chart.template("ops", *server, *replicas,
                              "--set", "snapshots.persistence.existingClaim=mine")
    assert not by_kind(existing, "PersistentVolumeClaim")
    assert {v["name"]: v for v in pod_spec(existing)["volumes"]}["data"][
        "persistentVolumeClaim"] == {"claimName": "mine"}
    # with the embedded engine, snapshots share its claim
    embedded = chart.template("ops", "--set", "snapshots.persistence.enabled=true")
    assert len(by_kind(embedded, "PersistentVolumeClaim")) == 1


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
    # Without CRDs: kubectl's client-side dry run cannot patch an existing CRD ("expected a
    # struct, but received a nil"), whatever its content.
    out = chart.run("template", "n", str(CHART), "--namespace", "no", *SHARED_CRDS,
                    "--set", "nameOverride=on",
                    "--set", "watchNamespaces={on,off}",
                    "--set", "rbac.extraSecretNames={y,no/n}",
                    "--set", "networkPolicy.enabled=true",
                    "--set", "networkPolicy.ingress.healthFrom[0].podSelector.matchLabels.y=n"
                    ).stdout
    result = kubectl.run("apply", "--dry-run=client", "-f", "-", stdin=out)
    assert result.stdout.count("(dry run)") == len([d for d in yaml.safe_load_all(out) if d])
    ops = new_namespace(kubectl, "ops")
    chart.run("install", "n", str(CHART), "--namespace", ops, *SHARED_CRDS)
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
    # The default values, CRDs included: --take-ownership adopts the session's CRDs.
    chart.run("install", "album", str(CHART), "--namespace", ops, "--take-ownership",
              "--set", "rbac.extraSecretNames={conn}")
    objects = manifest_objects(chart, "album", ops)
    kinds = {kind for kind, _, _ in objects}
    assert kinds == {"ServiceAccount", "PersistentVolumeClaim", "ClusterRole",
                     "ClusterRoleBinding", "Service", "Deployment", "CustomResourceDefinition"}
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
        kept = kind in {"PersistentVolumeClaim", "CustomResourceDefinition"}  # resource-policy
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


def test_the_readme_shows_the_schema_error_helm_prints(chart: Helm) -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("naming the value (helm 4.3.1):\n\n```\n", 1)[1].split("\n```", 1)[0]
    command, shown = block.split("\n", 1)
    argv = shlex.split(command.removeprefix("$ "))
    assert argv[:3] == ["helm", "install", "album-operator"]
    args = [str(CHART) if arg == "charts/album-operator" else arg for arg in argv[1:]]
    result = chart.run(*args, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == shown + "\n\n", "exactly what helm prints"


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
    chart.run("install", "album", str(CHART), "--namespace", ops, *SHARED_CRDS,
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
    chart.run("install", "album", str(CHART), "--namespace", ops, *SHARED_CRDS,
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


# --- the values teams adapt: one render, one lint and one dry run per case ---------------------

OPENSHIFT = {"podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
             "containerSecurityContext": {"runAsUser": None, "runAsGroup": None}}
ASSIGNED_BY_THE_PLATFORM = ("runAsUser", "runAsGroup", "fsGroup")
SERVER = {"qdrant": {"existingSecret": "qdrant"}}
EXTRAS: dict[str, Any] = {
    "extraEnv": [{"name": "QDRANT_PEER_URLS",
                  "valueFrom": {"configMapKeyRef": {"name": "peers", "key": "urls"}}}],
    "extraArgs": ["--resync-seconds=15", "--verbose"],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readOnly": True}],
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway"}],
}
NETWORK_POLICY: dict[str, Any] = {"networkPolicy": {
    "enabled": True,
    "ingress": {"metricsFrom": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}],
                "healthFrom": [{"podSelector": {"matchLabels": {"app": "uptime"}}}]},
    "egress": {"kubernetesApi": {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]},
               "qdrant": {"ports": [6333, 443]},
               "extra": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
                          "ports": [{"port": 8443}]}]}}}

# The watched namespace "{app}" is created by the fixture.
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "replicas-3": {**SERVER, "replicaCount": 3},
    "replicas-3-namespaced-maxUnavailable": {**SERVER, "replicaCount": 3,
                                             "watchNamespaces": ["{app}"],
                                             "pdb": {"enabled": True,
                                                     "maxUnavailable": "50%"}},
    "replicas-3-pdb": {**SERVER, "replicaCount": 3, "pdb": {"enabled": True}},
    "replicas-2-snapshot-claim": {**SERVER, "replicaCount": 2, "snapshots": {"persistence": {
        "enabled": True, "accessMode": "ReadWriteMany", "size": "2Gi"}}},
    "openshift": OPENSHIFT,
    "openshift-replicas-2": {**OPENSHIFT, **SERVER, "replicaCount": 2},
    "extras": EXTRAS,
    "network-policy": NETWORK_POLICY,
    "network-policy-ingress-only": {"networkPolicy": {"enabled": True,
                                                      "egress": {"enabled": False}}},
    "crds-off": {"crds": {"create": False}},
    "peering-crds-off-replicas-2": {**SERVER, "replicaCount": 2,
                                    "peering": {"installCRDs": False}},
    "watch-namespaces": {**SERVER, "watchNamespaces": ["{app}"],
                         "rbac": {"extraSecretNames": ["conn"]}},
}


@dataclass(frozen=True)
class MatrixNamespaces:
    ops: str
    app: str


@pytest.fixture(scope="module")
def matrix_namespaces(kubectl: Kubectl) -> MatrixNamespaces:
    """The release and a watched namespace, and kopf's peering CRDs: a dry run creates
    nothing, so a peering object is only accepted where its CRD already exists."""
    kubectl.run("apply", "--server-side", "-f", str(PEERING_CRDS_DIR / "kopf.dev-peerings.yaml"))
    kubectl.run("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev",
                "crd/kopfpeerings.kopf.dev", "--timeout=60s")
    return MatrixNamespaces(new_namespace(kubectl, "ops"), new_namespace(kubectl, "app"))


def with_namespaces(values: dict[str, Any], app: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(values).replace("{app}", app))
    return loaded


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def helm_test_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pods = [d for d in by_kind(docs, "Pod")
            if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(pods) == 1, "one `helm test` Pod"
    return pods[0]




def assert_security_contexts(values: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    test_spec = helm_test_pod(docs)["spec"]
    pods = (pod_spec(docs)["securityContext"], test_spec["securityContext"])
    containers = (container(docs)["securityContext"], test_spec["containers"][0]["securityContext"])
    for context in (*pods, *containers):
        assert context["runAsNonRoot"] is True
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for context in containers:
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
    if values.get("podSecurityContext") == OPENSHIFT["podSecurityContext"]:
        for context in (*pods, *containers):
            assert not set(ASSIGNED_BY_THE_PLATFORM) & set(context), "null leaves the field out"
    else:
        assert pods[0]["fsGroup"] == 10001
        for context in (pods[0], containers[0]):
            assert (context["runAsUser"], context["runAsGroup"]) == (10001, 10001)


def assert_crds(values: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    groups = [d["spec"]["group"] for d in by_kind(docs, "CustomResourceDefinition")]
    templated = values.get("crds", {}).get("create", True)
    assert groups.count(GROUP) == (3 if templated else 0)
    peering = values.get("peering", {}).get("installCRDs", True)
    assert groups.count("kopf.dev") == (2 if peering else 0)
    peering_objects = by_kind(docs, "ClusterKopfPeering") + by_kind(docs, "KopfPeering")
    assert bool(peering_objects) == (values.get("replicaCount", 1) > 1), (
        "the peering object comes with replicas, wherever its CRDs come from")


def assert_pdb(values: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    budgets = by_kind(docs, "PodDisruptionBudget")
    wanted = values.get("replicaCount", 1) > 1 and values.get("pdb", {}).get("enabled", False)
    assert len(budgets) == (1 if wanted else 0)
    if budgets:
        spec = budgets[0]["spec"]
        limit = values.get("pdb", {}).get("maxUnavailable")
        assert spec.get("maxUnavailable") == limit
        assert spec.get("minAvailable") == (None if limit else 1)
        assert spec["selector"] == one(docs, "Deployment")["spec"]["selector"]


def assert_extras(values: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    main, pod = container(docs), pod_spec(docs)
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in (
        main["env"]), "kopf's identity from the Pod name, not the passwd database"
    if not values.get("extraArgs"):
        return
    assert main["args"][-2:] == EXTRAS["extraArgs"], "after the chart's own: a repeat wins"
    assert EXTRAS["extraEnv"][0] in main["env"]
    assert EXTRAS["extraVolumes"][0] in pod["volumes"]
    assert EXTRAS["extraVolumeMounts"][0] in main["volumeMounts"]
    [spread] = pod["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == one(docs, "Deployment")["spec"][
        "selector"]["matchLabels"]


def assert_network_policy(values: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    policy = values.get("networkPolicy", {})
    policies = by_kind(docs, "NetworkPolicy")
    assert len(policies) == (1 if policy.get("enabled") else 0)
    if not policies:
        return
    spec = policies[0]["spec"]
    ports = {rule["ports"][0]["port"]: rule.get("from") for rule in spec["ingress"]}
    assert set(ports) == {"health", "metrics", "snapshots"}
    egress = policy.get("egress", {}).get("enabled", True)
    assert ("Egress" in spec["policyTypes"]) == egress
    if not egress:
        return
    assert all(rule["ports"] for rule in spec["egress"][:3]), "no rule opens every port"
    if policy.get("ingress", {}).get("healthFrom"):
        test_labels = helm_test_pod(docs)["metadata"]["labels"]
        [_, test_peer] = ports["health"]
        assert test_peer["podSelector"]["matchLabels"].items() <= test_labels.items()
        assert ports["metrics"] == NETWORK_POLICY["networkPolicy"]["ingress"]["metricsFrom"]
        assert ports["snapshots"] is None, "an empty list lets every source in"


def assert_the_test_pod_is_not_an_operator_pod(docs: list[dict[str, Any]]) -> None:
    labels = helm_test_pod(docs)["metadata"]["labels"]
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= labels.items(), "no Service, budget or policy selects it"
    [check] = helm_test_pod(docs)["spec"]["containers"]
    assert check["image"] == container(docs)["image"]
    health = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-health"))
    assert f"{health['metadata']['name']}." in check["command"][-1]
    assert check["command"][-1].endswith(f":{health['spec']['ports'][0]['port']}/healthz")


@pytest.mark.parametrize("case", list(MATRIX))
def test_every_value_combination_lints_renders_and_is_accepted_by_the_api_server(
        chart: Helm, kubectl: Kubectl, matrix_namespaces: MatrixNamespaces, tmp_path: Path,
        case: str) -> None:
    """The `helm test` Pod is in the render (helm template keeps test hooks) and so in the
    server-side dry run: the API server accepts it, which is as far as it can be taken here,
    as no kubelet runs Pods on the test control plane."""
    values = with_namespaces(MATRIX[case], matrix_namespaces.app)
    path = values_file(tmp_path, values)
    chart.run("lint", "--strict", str(CHART), "-f", path)
    docs = chart.template(matrix_namespaces.ops, "-f", path, "--include-crds")
    assert_security_contexts(values, docs)
    assert_crds(values, docs)
    assert_pdb(values, docs)
    assert_extras(values, docs)
    assert_network_policy(values, docs)
    assert_the_test_pod_is_not_an_operator_pod(docs)
    dry_run(kubectl, docs)


# --- the chart's CRDs ----------------------------------------------------------------------------


def test_the_templated_crds_are_the_generated_ones_and_kept_on_uninstall(chart: Helm) -> None:
    rendered = {d["metadata"]["name"]: d for d in by_kind(chart.template("ops"),
                                                          "CustomResourceDefinition")}
    for path in sorted((CHART / "files" / "crds").glob("*.yaml")):
        generated = yaml.safe_load(path.read_text())
        crd = rendered.pop(generated["metadata"]["name"])
        assert crd["spec"] == generated["spec"]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert generated["metadata"]["labels"].items() <= crd["metadata"]["labels"].items()
    assert rendered == {}


def served_columns(kubectl: Kubectl, crd: str) -> list[str]:
    out = kubectl.run("get", "crd", crd, "-o",
                      "jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}").stdout
    return out.split()


def chart_with_a_new_column(tmp_path: Path) -> Path:
    """A copy of the chart whose AlbumCollection CRD has one more printer column."""
    copy = tmp_path / "album-operator"
    shutil.copytree(CHART, copy)
    path = copy / "files" / "crds" / f"albumcollections.{GROUP}.yaml"
    crd = yaml.safe_load(path.read_text())
    crd["spec"]["versions"][0]["additionalPrinterColumns"].append(
        {"name": "Probe", "type": "string", "jsonPath": ".spec.collectionName"})
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return copy


def test_helm_upgrade_upgrades_the_crds_and_uninstall_keeps_them(
        chart: Helm, kubectl: Kubectl, tmp_path: Path) -> None:
    """The session's CRDs were applied by `album-operator crds install`, as in a cluster where
    the CRDs came from an earlier chart's crds/ or by hand: Helm adopts them only with
    --take-ownership, and takes the fields the `album-operator` field manager applied only with
    --force-conflicts (the chart README's upgrade path)."""
    ops, crd = new_namespace(kubectl, "crds"), f"albumcollections.{GROUP}"
    refused = chart.run("install", "album", str(CHART), "--namespace", ops, check=False)
    assert "exists and cannot be imported into the current release" in refused.stderr
    chart.run("install", "album", str(CHART), "--namespace", ops, "--take-ownership")
    labels = kubectl.get("crd", crd, "")["metadata"]
    assert labels["annotations"]["meta.helm.sh/release-name"] == "album"
    assert labels["annotations"]["helm.sh/resource-policy"] == "keep"

    changed = chart_with_a_new_column(tmp_path)
    conflict = chart.run("upgrade", "album", str(changed), "--namespace", ops, check=False)
    assert 'conflict with "album-operator": .spec.versions' in conflict.stderr
    chart.run("upgrade", "album", str(changed), "--namespace", ops, "--force-conflicts")
    assert served_columns(kubectl, crd)[-1] == "Probe"
    table = kubectl.run("get", "albumcollections", namespace=ops).stderr
    assert "No resources found" in table, "and the API server serves the kind"

    chart.run("uninstall", "album", "--namespace", ops)
    assert "Probe" in served_columns(kubectl, crd), "kept, as the last upgrade left it"
    for plural in KINDS:
        assert exists(kubectl, "crd", f"{plural}.{GROUP}", "")
    install_crds(load_api_client())
    assert "Probe" not in served_columns(kubectl, crd), "back to the generated CRD"
