"""Fixtures: the real local control plane, the CRDs, a namespace per test, the operator.

Integration tests run against a real kube-apiserver + etcd (started here, or the cluster in
KUBECONFIG when ALBUMOPS_USE_EXISTING_CLUSTER=true) and real Qdrant engines. Every test that
uses ``qdrant_pool`` runs once per engine (one suite, like qdrant-client's congruence tests):
the embedded engine, and a Qdrant server, started here from ``QDRANT_BIN`` (or ``qdrant`` on the
PATH) or reached at ``QDRANT_URL``. ``qdrant_server`` tests run on the server only,
``embedded_only`` ones on the embedded engine only; ``qdrant_cluster`` starts three peers.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.qdrant.connection import (
    ConnectionSettings,
    QdrantEngine,
    QdrantPool,
    open_engine,
)
from album_operator.core.engine import EMBEDDED
from album_operator.runner import OperatorThread
from album_operator_dev.localcluster import qdrant_server as local_qdrant
from album_operator_dev.localcluster.qdrant_server import LocalQdrant
from tests.helpers import Kubectl

TEST_NAMESPACE_PREFIX = "albumops-it-"
T = TypeVar("T")
SERVER_TESTS_LEFT_OUT = pytest.StashKey[int]()
SERVER_TEST_IDS = pytest.StashKey[set[str]]()


ENGINES = ("embedded", "server")
SESSION_RESYNC_S = 1.0
"""How often the session operator compares each resource with Qdrant: what tests of drift
made by hand wait for."""


def server_available() -> bool:
    return bool(os.environ.get("QDRANT_URL")) or local_qdrant.find_binary() is not None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "qdrant_pool" not in metafunc.fixturenames:
        return
    engines = [engine for engine in ENGINES
               if not (engine == "embedded" and metafunc.definition.get_closest_marker(
                   "qdrant_server"))
               and not (engine == "server" and metafunc.definition.get_closest_marker(
                   "embedded_only"))]
    metafunc.parametrize("qdrant_pool", engines, indirect=True, scope="session")


def _needs_server(item: pytest.Item) -> bool:
    """Parametrised on the ``server`` engine (``qdrant_pool`` or a test's own engine fixture
    over ``ENGINES``), marked ``qdrant_server``, or asking for a server fixture."""
    callspec = getattr(item, "callspec", None)
    engines = list(callspec.params.values()) if callspec else []
    fixtures = getattr(item, "fixturenames", ())
    return ("server" in engines or item.get_closest_marker("qdrant_server") is not None
            or "qdrant_server_target" in fixtures or "qdrant_cluster" in fixtures)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a server, its tests are deselected and said so in one line, not 300."""
    if server_available():
        config.stash[SERVER_TEST_IDS] = {item.nodeid for item in items if _needs_server(item)}
        return
    needing = [item for item in items if _needs_server(item)]
    if needing:
        config.hook.pytest_deselected(items=needing)
        items[:] = [item for item in items if not _needs_server(item)]
        config.stash[SERVER_TESTS_LEFT_OUT] = len(needing)


def pytest_report_header(config: pytest.Config) -> str:
    if os.environ.get("QDRANT_URL"):
        return "qdrant server: QDRANT_URL (external)"
    binary = local_qdrant.find_binary()
    return f"qdrant server: {binary}" if binary else "qdrant server: none"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    server_ids = config.stash.get(SERVER_TEST_IDS, set())
    if server_ids:
        durations: dict[bool, float] = {True: 0.0, False: 0.0}
        ran: set[str] = set()
        for reports in terminalreporter.stats.values():
            for report in reports:
                if isinstance(report, pytest.TestReport):
                    on_server = report.nodeid in server_ids
                    durations[on_server] += report.duration
                    if on_server:
                        ran.add(report.nodeid)
        total = sum(durations.values()) or 1.0
        terminalreporter.write_line(
            f"Qdrant server tests: {len(ran)} tests, {durations[True]:.0f}s of "
            f"{total:.0f}s in tests ({100 * durations[True] / total:.0f}%)")
    left_out = config.stash.get(SERVER_TESTS_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(
            f"{left_out} Qdrant server tests not run: {local_qdrant.ENABLE_HINT}",
            yellow=True)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    from album_operator_dev.localcluster import cluster

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
    from album_operator_dev.localcluster import build

    return build.build(build.HELM)


def engine_namespace_prefix(engine: str) -> str:
    """Each engine's session operator watches only its own tests' namespaces, so the second
    one started in a session does not first work through the objects the first one's tests
    left (a bare API server has no namespace controller to delete them)."""
    return f"{TEST_NAMESPACE_PREFIX}{engine[:3]}-"


def pool_engine(pool: QdrantPool) -> str:
    return "embedded" if pool.default.is_embedded else "server"


def create_namespace(kubectl: Kubectl, prefix: str) -> str:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    return name


SIBLINGS: list[str] = []
"""Namespaces the running test made beside its own, cleared with it."""
OPERATOR_KINDS = "albumcollections,mastermerges,edgesnapshotpolicies"


def sibling_namespace(kubectl: Kubectl, namespace: str) -> str:
    """Another namespace watched by the same session operator as ``namespace``."""
    name = create_namespace(kubectl, namespace.rsplit("-", 1)[0] + "-")
    SIBLINGS.append(name)
    return name


def clear_namespace(kubectl: Kubectl, name: str) -> None:
    """Deletes a finished test's resources without waiting: left in place, each would be
    resynced by the session operator for the rest of the session (a bare API server has no
    namespace controller to remove them), taking time from every later test."""
    kubectl.run("delete", OPERATOR_KINDS, "--all", "--wait=false", namespace=name,
                check=False)


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    callspec = getattr(request.node, "callspec", None)
    engine = callspec.params.get("qdrant_pool", "embedded") if callspec else "embedded"
    name = create_namespace(kubectl, engine_namespace_prefix(engine))
    yield name
    for made in [name, *SIBLINGS]:
        clear_namespace(kubectl, made)
    SIBLINGS.clear()


@dataclass(frozen=True)
class ServerTarget:
    """A Qdrant server the tests may use: started here, or external (QDRANT_URL)."""

    url: str
    api_key: str | None
    local: LocalQdrant | None = None
    grpc_port: int | None = None

    def settings(self) -> ConnectionSettings:
        return ConnectionSettings(url=self.url, api_key=self.api_key, grpc_port=self.grpc_port)

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        """Qdrant's own REST answer (its ``result``), not qdrant-client's reading of it."""
        headers = {"api-key": self.api_key} if self.api_key else {}
        response = requests.request(method, f"{self.url}{path}", headers=headers, timeout=60,
                                    **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.text[:500]}"
        return response.json()["result"]


def start_local_qdrant(tmp_path_factory: pytest.TempPathFactory, cluster: bool) -> LocalQdrant:
    binary = local_qdrant.find_binary()
    if binary is None:
        pytest.skip(f"needs a Qdrant server binary: {local_qdrant.ENABLE_HINT}")
    home = tmp_path_factory.mktemp("qdrant-cluster" if cluster else "qdrant-server")
    api_key = f"test-key-{uuid.uuid4().hex}"
    return (local_qdrant.start_cluster(binary, home, api_key) if cluster
            else local_qdrant.start_single(binary, home, api_key))


@pytest.fixture(scope="session")
def qdrant_server_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerTarget]:
    """One Qdrant server for the session, with an API key, on free loopback ports."""
    url = os.environ.get("QDRANT_URL")
    if url:
        grpc_port = os.environ.get("QDRANT_GRPC_PORT")
        yield ServerTarget(url.rstrip("/"), os.environ.get("QDRANT_API_KEY"),
                           grpc_port=int(grpc_port) if grpc_port else None)
        return
    local = start_local_qdrant(tmp_path_factory, cluster=False)
    try:
        yield ServerTarget(local.url, local.api_key, local, grpc_port=local.grpc_port)
    finally:
        local.stop()


@pytest.fixture
def qdrant_server(qdrant_server_target: ServerTarget) -> ServerTarget:
    return qdrant_server_target


@contextmanager
def engine_under_test(request: pytest.FixtureRequest, owned: Callable[[str], bool],
                      aliases: tuple[str, ...] = ()) -> Iterator[QdrantEngine]:
    """A real engine for a test parametrised over ``ENGINES``: a fresh in-memory one, or the
    session's server, from which the collections ``owned`` names and ``aliases`` are removed
    before and after the test."""
    if request.param != "server":
        engine = QdrantEngine(QdrantClient(location=":memory:"), EMBEDDED, "memory",
                              ConnectionSettings())
        yield engine
        engine.close()
        return
    engine = open_engine(request.getfixturevalue("qdrant_server_target").settings())

    def clear(client: QdrantClient) -> None:
        client.update_collection_aliases(change_aliases_operations=[
            qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias))
            for alias in aliases])
        for collection in client.get_collections().collections:
            if owned(collection.name):
                client.delete_collection(collection.name)
    engine.call(clear)
    try:
        yield engine
    finally:
        engine.call(clear)
        engine.close()


@pytest.fixture(scope="session")
def qdrant_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalQdrant]:
    """Three Qdrant peers in cluster mode on loopback, one process each."""
    local = start_local_qdrant(tmp_path_factory, cluster=True)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def qdrant_pool(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantPool]:
    """The engine under test: ``embedded`` or ``server`` (see ``pytest_generate_tests``)."""
    engine = getattr(request, "param", "embedded")
    if engine == "server":
        target: ServerTarget = request.getfixturevalue("qdrant_server_target")
        settings = target.settings()
    else:
        settings = ConnectionSettings(embedded_path=str(tmp_path_factory.mktemp("qdrant")))
    pool = QdrantPool(settings)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def operator(kubectl: Kubectl, qdrant_pool: QdrantPool,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorThread]:
    """One operator per engine for the session, watching that engine's test namespaces,
    sharing the Qdrant pool."""
    from album_operator.config import OperatorConfig

    watched = f"{engine_namespace_prefix(pool_engine(qdrant_pool))}*"
    # A MasterMerge build moves one phase per step, and a policy sees a snapshot-now request
    # at its next step: short steps make a test's build or run take seconds, not tens.
    config = OperatorConfig(namespaces=(watched,), resync_seconds=SESSION_RESYNC_S,
                            merge_step_seconds=0.25,
                            retry_backoff_seconds=1.0, retry_cap_seconds=8.0,
                            merge_retry_seconds=2.0, merge_checkpoint_seconds=1.0,
                            deletion_grace_seconds=5.0,
                            health_port=None, snapshot_port=0, edge_step_seconds=0.5,
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
