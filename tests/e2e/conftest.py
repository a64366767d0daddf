"""The end-to-end suite: the operator image, built here, installed by `helm install` on a real
node (kubelet, containerd, CNI, kube-proxy, CoreDNS; localcluster/node.py), as platform teams
run it. It needs root; `make e2e` runs it, and `.ci/run` runs it after `make test`.

Every test works in namespaces of its own and uninstalls what it installed, so one node serves
the whole session. ``ALBUMOPS_E2E_KEEP=1`` leaves the node running after the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from album_operator_dev.localcluster import node as local_node
from album_operator_dev.localcluster.qdrant_server import find_binary
from tests.helpers import Kubectl, wait_for

REPO = Path(__file__).resolve().parents[2]
# ALBUMOPS_E2E_CHART, ALBUMOPS_E2E_IMAGE_TAG and ALBUMOPS_E2E_IMPORT (image tars to put on the
# node) run the suite against another build, e.g. an older one, to see a test fail there.
CHART = Path(os.environ.get("ALBUMOPS_E2E_CHART", REPO / "charts" / "album-operator"))
MANIFESTS = Path(__file__).with_name("manifests")
QDRANT_API_KEY = "e2e-qdrant-api-key-0123456789"
KINDS = ("albumcollections", "mastermerges", "edgesnapshotpolicies")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def node() -> Iterator[local_node.NodeState]:
    if os.geteuid() != 0:
        pytest.skip("the end-to-end suite runs a kubelet and needs root (make e2e as root)")
    binary = find_binary()
    if binary is None:
        pytest.fail("the end-to-end suite needs a Qdrant server binary: set QDRANT_BIN")
    state = local_node.up(Path(binary))
    for tar in filter(None, os.environ.get("ALBUMOPS_E2E_IMPORT", "").split(":")):
        local_node.import_image(Path(tar))
    try:
        yield state
    finally:
        if os.environ.get("ALBUMOPS_E2E_KEEP") != "1":
            local_node.down()


@pytest.fixture(scope="session")
def kube(node: local_node.NodeState, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    os.environ["KUBECONFIG"] = node.kubeconfig
    return Kubectl(node.kubectl, node.kubeconfig, str(tmp_path_factory.mktemp("kube-cache")))


@dataclass
class Helm:
    binary: str
    kubeconfig: str
    operator_image: str

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        done = subprocess.run([self.binary, f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout + done.stderr

    def image_args(self, tag: str | None = None) -> list[str]:
        repository, default_tag = self.operator_image.rsplit(":", 1)
        # Another image already on the node, e.g. an older build to see a test fail on it.
        default_tag = os.environ.get("ALBUMOPS_E2E_IMAGE_TAG", default_tag)
        # pullPolicy Never: the node has no registry to pull from, and a typo must fail fast.
        return ["--set", f"image.repository={repository}",
                "--set", f"image.tag={tag or default_tag}", "--set", "image.pullPolicy=Never"]


@pytest.fixture(scope="session")
def helm(node: local_node.NodeState) -> Helm:
    return Helm(node.helm, node.kubeconfig, node.operator_image)


@dataclass
class Release:
    """One `helm install` of the chart into a namespace of its own."""

    helm: Helm
    kube: Kubectl
    namespace: str
    name: str = "album-operator"
    values: list[str] = field(default_factory=list)

    def install(self, *extra: str, wait: bool = True) -> str:
        args = ["install", self.name, str(CHART), "-n", self.namespace, "--create-namespace",
                *self.helm.image_args(), *self.values, *extra]
        if wait:
            args += ["--wait", "--timeout", "4m"]
        return self.helm.run(*args)

    def upgrade(self, *extra: str) -> str:
        return self.helm.run("upgrade", self.name, str(CHART), "-n", self.namespace,
                             "--reuse-values", *extra, "--wait", "--timeout", "4m")

    def pods(self) -> list[dict[str, Any]]:
        out = self.kube.run("get", "pods", "-l", "app.kubernetes.io/name=album-operator",
                            "-o", "json", namespace=self.namespace).stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def service_url(self, service: str, port: int) -> str:
        ip = self.kube.get("service", service, self.namespace)["spec"]["clusterIP"]
        return f"http://{ip}:{port}"

    def logs(self) -> str:
        return self.kube.run("logs", "-l", "app.kubernetes.io/name=album-operator",
                             "--tail=200", "--prefix", namespace=self.namespace,
                             check=False).stdout

    def report(self) -> str:
        """What a failed test leaves to read: the resources' status and the operator's log."""
        kinds = ",".join(f"{kind}.albumops.io" for kind in KINDS)
        resources = self.kube.run("get", kinds, "-A", "-o", "yaml", check=False).stdout
        return f"--- resources\n{resources}\n--- operator log\n{self.logs()}"

    def uninstall(self) -> None:
        """Leaves the node as the test found it. The chart keeps its CRDs on uninstall (with
        this release's ownership), which the next test's release could not adopt: the
        resources go first, while the operator still removes their finalizers."""
        kinds = ",".join(f"{kind}.albumops.io" for kind in KINDS)
        self.kube.run("delete", kinds, "--all", "--all-namespaces", "--timeout=90s",
                      check=False)
        self.helm.run("uninstall", self.name, "-n", self.namespace, "--wait", check=False)
        self.kube.run("delete", "crd", *(f"{kind}.albumops.io" for kind in KINDS),
                      "--ignore-not-found", "--timeout=60s", check=False)
        self.kube.run("delete", "namespace", self.namespace, "--wait=false", check=False)


def new_namespace(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def finish(release: Release, request: pytest.FixtureRequest) -> None:
    outcome = getattr(request.node, "rep_call", None)
    if outcome is not None and outcome.failed:
        print(release.report())
    if os.environ.get("ALBUMOPS_E2E_KEEP") != "1":
        release.uninstall()


@pytest.fixture
def release(helm: Helm, kube: Kubectl, request: pytest.FixtureRequest) -> Iterator[Release]:
    installed = Release(helm, kube, new_namespace("e2e"))
    yield installed
    finish(installed, request)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@dataclass(frozen=True)
class QdrantInCluster:
    """A Qdrant StatefulSet in a namespace, and how the host reaches it (its ClusterIP)."""

    namespace: str
    peers: int
    url: str

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = requests.request(method, f"{self.url}{path}", timeout=60,
                                  headers={"api-key": QDRANT_API_KEY}, **kwargs)
        answer.raise_for_status()
        return answer.json()["result"]

    def service_dns(self) -> str:
        return f"http://qdrant.{self.namespace}.svc.cluster.local:6333"


def deploy_qdrant(kube: Kubectl, image: str, namespace: str, peers: int) -> QdrantInCluster:
    manifest = ((MANIFESTS / "qdrant.yaml").read_text()
                .replace("PEERS", str(peers)).replace("QDRANT_IMAGE", image)
                .replace("CLUSTER_ENABLED", "true" if peers > 1 else "false"))
    kube.run("create", "namespace", namespace, check=False)
    kube.apply(manifest, namespace)
    kube.run("rollout", "status", "statefulset/qdrant", "--timeout=180s", namespace=namespace)
    ip = kube.get("service", "qdrant", namespace)["spec"]["clusterIP"]
    qdrant = QdrantInCluster(namespace, peers, f"http://{ip}:6333")
    if peers > 1:
        wait_for(lambda: len(qdrant.rest("GET", "/cluster")["peers"]) == peers, timeout=60,
                 what=f"{peers} Qdrant peers joined")
    return qdrant


def connection_secret(kube: Kubectl, namespace: str, qdrant: QdrantInCluster,
                      name: str = "qdrant") -> str:
    kube.run("create", "namespace", namespace, check=False)
    kube.run("create", "secret", "generic", name, f"--from-literal=url={qdrant.service_dns()}",
             f"--from-literal=apiKey={QDRANT_API_KEY}", namespace=namespace)
    return name


RESYNC_SECONDS = 10


def _server_release(helm: Helm, kube: Kubectl, node: local_node.NodeState,
                    request: pytest.FixtureRequest, peers: int) -> Iterator[
                        tuple[Release, QdrantInCluster]]:
    """A release whose connection Secret names a Qdrant StatefulSet of ``peers`` by its
    Service's DNS name, and may read the story's device token Secret."""
    release = Release(helm, kube, new_namespace(f"e2e-q{peers}"))
    qdrant = deploy_qdrant(kube, node.qdrant_image, release.namespace, peers=peers)
    connection_secret(kube, release.namespace, qdrant)
    release.values = ["--set", "qdrant.existingSecret=qdrant",
                      "--set", "rbac.extraSecretNames={kiosk-token}",
                      "--set", f"operator.resyncSeconds={RESYNC_SECONDS}"]
    yield release, qdrant
    finish(release, request)


@pytest.fixture
def server_release(helm: Helm, kube: Kubectl, node: local_node.NodeState,
                   request: pytest.FixtureRequest) -> Iterator[
        tuple[Release, QdrantInCluster]]:
    yield from _server_release(helm, kube, node, request, peers=1)


@pytest.fixture
def cluster_release(helm: Helm, kube: Kubectl, node: local_node.NodeState,
                    request: pytest.FixtureRequest) -> Iterator[
        tuple[Release, QdrantInCluster]]:
    yield from _server_release(helm, kube, node, request, peers=3)
