"""Fixtures: the real local control plane, the CRDs, a namespace per test, the operator.

Integration tests run against a real kube-apiserver + etcd (started here, or the cluster in
KUBECONFIG when ALBUMOPS_USE_EXISTING_CLUSTER=true) and a real Qdrant engine: the embedded
one by default, a server when QDRANT_URL is set.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from album_operator.adapters.qdrant.connection import ConnectionSettings, QdrantPool
from album_operator.runner import OperatorThread
from tests.helpers import Kubectl

TEST_NAMESPACE_PREFIX = "albumops-it-"
T = TypeVar("T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("QDRANT_URL"):
        return
    skip = pytest.mark.skip(reason="needs a Qdrant server: set QDRANT_URL (and QDRANT_API_KEY)")
    for item in items:
        if "qdrant_server" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    from album_operator.adapters.localcluster import cluster

    cache = str(tmp_path_factory.mktemp("kubectl-cache"))
    if cluster.use_existing_cluster():
        kubeconfig = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
        binary = shutil.which("kubectl") or "kubectl"
        yield Kubectl(binary, kubeconfig, cache)
        return
    name = os.environ.get("ALBUMOPS_TEST_CLUSTER", "pytest")
    # A test cluster left running by an interrupted session still holds its objects, which
    # the new session's operator would have to work through first: always start empty.
    cluster.down(name, quiet=True)
    state = cluster.up(name)
    os.environ["KUBECONFIG"] = state.kubeconfig
    try:
        yield Kubectl(state.kubectl, state.kubeconfig, cache)
    finally:
        cluster.down(name)


@pytest.fixture(scope="session")
def kubectl(control_plane: Kubectl) -> Kubectl:
    from album_operator.adapters.crdinstall import install_crds
    from album_operator.adapters.kube import load_api_client

    os.environ["KUBECONFIG"] = control_plane.kubeconfig
    install_crds(load_api_client())
    return control_plane


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary, built from Go modules into the cache on first use (about 4 minutes)."""
    from album_operator.adapters.localcluster import build

    return build.build(build.HELM)


@pytest.fixture
def namespace(kubectl: Kubectl) -> str:
    name = f"{TEST_NAMESPACE_PREFIX}{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    return name


@pytest.fixture(scope="session")
def qdrant_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantPool]:
    url = os.environ.get("QDRANT_URL")
    settings = (ConnectionSettings(url=url, api_key=os.environ.get("QDRANT_API_KEY"))
                if url else ConnectionSettings(
                    embedded_path=str(tmp_path_factory.mktemp("qdrant"))))
    pool = QdrantPool(settings)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def operator(kubectl: Kubectl, qdrant_pool: QdrantPool,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorThread]:
    """One operator for the session, watching every test namespace, sharing the Qdrant pool."""
    from album_operator.config import OperatorConfig

    config = OperatorConfig(namespaces=(f"{TEST_NAMESPACE_PREFIX}*",), resync_seconds=2.0,
                            retry_backoff_seconds=1.0, deletion_grace_seconds=5.0,
                            health_port=None, snapshot_port=0, edge_step_seconds=1.0,
                            snapshot_dir=str(tmp_path_factory.mktemp("edge-snapshots")))
    with OperatorThread(config, qdrant_pool) as running:
        yield running


@pytest.fixture
def qdrant(qdrant_pool: QdrantPool, operator: OperatorThread) -> Callable[..., Any]:
    """Runs a function with the operator's own Qdrant client (one engine, one lock)."""
    def call(fn: Callable[[Any], T]) -> T:
        return qdrant_pool.engine().call(fn)
    return call


@pytest.fixture
def edge_url(operator: OperatorThread) -> str:
    """Base URL of the operator's snapshot endpoint."""
    assert operator.services is not None
    assert operator.services.edge_port is not None
    return f"http://127.0.0.1:{operator.services.edge_port}"
