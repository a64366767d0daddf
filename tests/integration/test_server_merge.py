"""MasterMerge on a real Qdrant server at a size where indexes are built, with a real operator
process killed mid-copy, and on a cluster of three peers with one of them killed mid-merge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator_dev.localcluster.cluster import free_port
from album_operator_dev.localcluster.qdrant_server import LocalQdrant, wait_joined
from tests.conftest import ServerTarget, start_local_qdrant
from tests.helpers import Kubectl, condition, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.qdrant_server]
DIM = 512
INDEXED_SOURCE = {
    "vectors": {"size": DIM, "distance": "Cosine"},
    "hnsw": {"m": 16, "efConstruct": 64},
    "quantization": {"scalar": {"type": "int8", "quantile": 0.99, "alwaysRam": True}},
    # In KB: a 2,000-point 512-d source (4 MB) gets its HNSW graph and quantized vectors.
    "optimizers": {"indexingThreshold": 1000},
    "payloadIndexes": [{"field": "year", "type": "integer"}],
}


class OperatorProcess:
    """``album-operator run`` as users run it, on a Qdrant server, in one namespace."""

    def __init__(self, kubectl: Kubectl, namespace: str, server_url: str, api_key: str,
                 log: Path, grpc_port: int | None = None) -> None:
        env = {**os.environ, "KUBECONFIG": kubectl.kubeconfig, "QDRANT_URL": server_url,
               "QDRANT_API_KEY": api_key,
               **({"QDRANT_GRPC_PORT": str(grpc_port)} if grpc_port else {})}
        with log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "album_operator.cli", "run", "-n", namespace,
                 "--resync-seconds", "2", "--health-port", str(free_port())],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def end(self, how: signal.Signals = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(how)
            self.process.wait(timeout=60)


@contextmanager
def alias_watch(client: QdrantClient, alias: str) -> Iterator[list[str | None]]:
    """Every 20 ms, where ``alias`` points, for as long as the block runs."""
    seen: list[str | None] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            aliases = client.get_aliases().aliases
            seen.append(next((a.collection_name for a in aliases if a.alias_name == alias),
                             None))
            stop.wait(0.02)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield seen
    finally:
        stop.set()
        poller.join()


def sources(kubectl: Kubectl, namespace: str, client: QdrantClient, count: int,
            per_source: int, extra: dict[str, Any] | None = None) -> list[str]:
    """``count`` AlbumCollections Ready, each holding ``per_source`` random 512-d points."""
    prefix = namespace.replace("-", "_")
    names = [f"{prefix}_{2017 + i}" for i in range(count)]
    for i, name in enumerate(names):
        kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                       "metadata": {"name": f"album-{2017 + i}", "labels": {"album": "photos"}},
                       "spec": {"year": 2017 + i, "collectionName": name, **INDEXED_SOURCE,
                                **(extra or {})}}, namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollections", "--all",
                "--timeout=120s", namespace=namespace)
    rng = np.random.default_rng(17)
    for i, name in enumerate(names):
        year = 2017 + i
        vectors = rng.normal(size=(per_source, DIM)).astype(np.float32)
        for start in range(0, per_source, 500):
            client.upsert(name, [qm.PointStruct(id=year * 100_000 + j, vector=vectors[j].tolist(),
                                                payload={"year": year, "j": j})
                                 for j in range(start, min(per_source, start + 500))],
                          wait=True)
    return names


def merge(alias: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "albumops.io/v1alpha1", "kind": "MasterMerge",
            "metadata": {"name": "master"},
            "spec": {"alias": alias, "sourceSelector": {"matchLabels": {"album": "photos"}},
                     "retention": {"keepPrevious": 1}, **spec}}


def status_of(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.get("mastermerge", "master", namespace).get("status", {})
    return found


def wait_build(kubectl: Kubectl, namespace: str, phases: set[str], build: str,
               timeout: float) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = status_of(kubectl, namespace)
        current = status.get("currentBuild") or {}
        return status if current.get("name") == build and current.get("phase") in phases \
            else None
    return wait_for(check, timeout, interval=0.5, what=f"{build} to reach {sorted(phases)}")


def collection_rest(target: ServerTarget, name: str) -> dict[str, Any]:
    found: dict[str, Any] = target.rest("GET", f"/collections/{name}")
    return found


def client_of(url: str, api_key: str | None) -> Iterator[QdrantClient]:
    """A test's own client to a server or a cluster's first peer, closed afterwards."""
    client = QdrantClient(url=url, api_key=api_key, check_compatibility=False, timeout=60)
    yield client
    client.close()


@pytest.fixture
def server_client(qdrant_server: ServerTarget) -> Iterator[QdrantClient]:
    yield from client_of(qdrant_server.url, qdrant_server.api_key)


def test_a_master_of_indexed_sources_is_loaded_unindexed_indexed_verified_then_swapped(
        kubectl: Kubectl, namespace: str, operator: Any, qdrant_server: ServerTarget,
        server_client: QdrantClient) -> None:
    per_source = 2_000
    names = sources(kubectl, namespace, server_client, 9, per_source)
    wait_for(lambda: all(collection_rest(qdrant_server, n)["indexed_vectors_count"] > 0
                         for n in names), 180, interval=1,
             what="the sources' HNSW graphs to be built (approximate search)")
    alias = f"{namespace.replace('-', '_')}_master"
    target = f"{alias}_v1"
    with alias_watch(server_client, alias) as seen:
        kubectl.apply(merge(alias, copy={"batchSize": 256, "parallelism": 4},
                            targetOverrides={"hnsw": {"m": 24, "efConstruct": 64}}), namespace)
        wait_build(kubectl, namespace, {"Copying"}, target, 60)
        loading = collection_rest(qdrant_server, target)["config"]["hnsw_config"]
        assert loading["m"] == 0, "the master loads with HNSW graph building deferred"
        status = wait_build(kubectl, namespace, {"Succeeded", "Failed"}, target, 480)
    assert status["currentBuild"]["phase"] == "Succeeded", status["currentBuild"]
    info = collection_rest(qdrant_server, target)
    assert info["status"] == "green"
    assert info["config"]["hnsw_config"]["m"] == 24
    assert info["config"]["quantization_config"]["scalar"]["type"] == "int8"
    assert info["points_count"] == 9 * per_source
    assert info["indexed_vectors_count"] >= info["points_count"] // 2
    assert "year" in info["payload_schema"]
    verification = status["verification"]
    assert verification["passed"], verification["message"]
    assert verification["configMatches"]
    assert verification["expectedCount"] == verification["actualCount"] == 9 * per_source
    assert verification["sampledQueries"] == 16
    assert verification["minOverlap"] == 1.0
    assert set(seen) <= {None, target}
    assert seen[-1] == target
    merged = status_of(kubectl, namespace)
    ready = condition({"status": merged}, "Ready")
    assert ready is not None
    assert ready["status"] == "True"


def test_an_operator_killed_mid_build_resumes_and_the_alias_never_shows_an_unverified_master(
        kubectl: Kubectl, qdrant_server: ServerTarget, server_client: QdrantClient,
        tmp_path: Path) -> None:
    """Killed while Copying, and its successor killed while CatchingUp: each new operator
    resumes the build from its status, and the alias only ever shows the verified master."""
    namespace = f"killmerge-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", namespace)
    assert qdrant_server.api_key is not None
    log = tmp_path / "operator.log"

    def start() -> OperatorProcess:
        return OperatorProcess(kubectl, namespace, qdrant_server.url, qdrant_server.api_key
                               or "", log, qdrant_server.grpc_port)
    operators = [start()]
    try:
        per_source = 600
        sources(kubectl, namespace, server_client, 9, per_source)
        alias = f"{namespace.replace('-', '_')}_master"
        target = f"{alias}_v1"
        with alias_watch(server_client, alias) as seen:
            kubectl.apply(merge(alias, copy={"batchSize": 16, "parallelism": 2,
                                             "maxPointsPerSecond": 600}), namespace)
            for killed_in in ("Copying", "CatchingUp"):
                def under_way(phase: str = killed_in) -> bool:
                    build = status_of(kubectl, namespace).get("currentBuild") or {}
                    return build.get("phase") == phase and build.get("copiedPoints", 0) > 0
                wait_for(under_way, 120, interval=0.05, what=f"the build to be {killed_in}")
                operators[-1].end(signal.SIGKILL)
                killed = status_of(kubectl, namespace)["currentBuild"]
                assert killed["phase"] == killed_in
                if killed_in == "Copying":
                    assert killed["copiedPoints"] < 9 * per_source
                operators.append(start())
            status = wait_build(kubectl, namespace, {"Succeeded", "Failed"}, target, 300)
        assert status["currentBuild"]["phase"] == "Succeeded", status["currentBuild"]
        assert status["verification"]["passed"]
        assert set(seen) <= {None, target}
        assert seen[-1] == target
        assert server_client.count(alias, exact=True).count == 9 * per_source
    finally:
        for running in operators:
            running.end()
        kubectl.run("delete", "namespace", namespace, "--wait=false")


@pytest.fixture
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalQdrant]:
    """A server of this test's own, which it may stop and start."""
    if os.environ.get("QDRANT_URL"):
        pytest.skip("stops its Qdrant server: needs QDRANT_BIN, not an external QDRANT_URL")
    local = start_local_qdrant(tmp_path_factory, cluster=False)
    try:
        yield local
    finally:
        local.stop()


def test_a_server_down_mid_copy_is_reported_retried_and_the_build_succeeds_when_it_returns(
        kubectl: Kubectl, private_server: LocalQdrant, tmp_path: Path) -> None:
    namespace = f"outage-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", namespace)
    operator = OperatorProcess(kubectl, namespace, private_server.url, private_server.api_key,
                               tmp_path / "operator.log", private_server.grpc_port)
    client = QdrantClient(url=private_server.url, api_key=private_server.api_key,
                          check_compatibility=False, timeout=10)
    try:
        per_source = 1_000
        sources(kubectl, namespace, client, 3, per_source)
        alias = f"{namespace.replace('-', '_')}_master"
        kubectl.apply(merge(alias, copy={"batchSize": 32, "maxPointsPerSecond": 300}),
                      namespace)

        def copying() -> bool:
            build = status_of(kubectl, namespace).get("currentBuild") or {}
            return build.get("phase") == "Copying" and build.get("copiedPoints", 0) > 0
        wait_for(copying, 120, interval=0.1, what="the copy to be under way")
        server = private_server.peers[0]
        server.kill()

        def reported() -> dict[str, Any] | None:
            status = status_of(kubectl, namespace)
            reasons = {c["type"]: c["reason"] for c in status.get("conditions", [])}
            return status if reasons.get("Ready") == "QdrantUnavailable" else None
        down = wait_for(reported, 120, interval=0.25, what="Ready=False QdrantUnavailable")
        assert down["currentBuild"]["phase"] == "Copying", "an outage does not fail the build"
        assert private_server.api_key not in str(down)
        server.start()
        server.wait_ready()
        status = wait_build(kubectl, namespace, {"Succeeded", "Failed"}, f"{alias}_v1", 300)
        assert status["currentBuild"]["phase"] == "Succeeded", status["currentBuild"]
        assert status["verification"]["passed"]
        assert client.count(alias, exact=True).count == 3 * per_source
        reasons = [e["reason"] for e in kubectl.events("master", namespace)]
        assert "QdrantUnavailable" in reasons, reasons
    finally:
        operator.end()
        client.close()
        kubectl.run("delete", "namespace", namespace, "--wait=false")


@pytest.fixture
def cluster_client(qdrant_cluster: LocalQdrant) -> Iterator[QdrantClient]:
    yield from client_of(qdrant_cluster.url, qdrant_cluster.api_key)


def shard_placement(cluster: LocalQdrant, collection: str) -> dict[int, list[int]]:
    """Shard id -> the peers (by index) holding an active replica of it."""
    placement: dict[int, list[int]] = {}
    for index, peer in enumerate(cluster.peers):
        response = peer.get(f"/collections/{collection}/cluster")
        for shard in response.json()["result"]["local_shards"]:
            if shard["state"] == "Active":
                placement.setdefault(shard["shard_id"], []).append(index)
    return placement


def cluster_operator(kubectl: Kubectl, cluster: LocalQdrant, tmp_path: Path
                     ) -> Callable[[str], OperatorProcess]:
    def start(namespace: str) -> OperatorProcess:
        return OperatorProcess(kubectl, namespace, cluster.url, cluster.api_key,
                               tmp_path / "operator.log", cluster.grpc_port)
    return start


def test_on_a_cluster_a_sharded_master_is_built_and_a_peer_killed_mid_merge_never_moves_the_alias(
        kubectl: Kubectl, qdrant_cluster: LocalQdrant, cluster_client: QdrantClient,
        tmp_path: Path) -> None:
    namespace = f"clustermerge-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", namespace)
    operator = cluster_operator(kubectl, qdrant_cluster, tmp_path)(namespace)
    try:
        per_source = 1_500
        names = sources(kubectl, namespace, cluster_client, 3, per_source,
                        extra={"shardNumber": 6, "replicationFactor": 2})
        alias = f"{namespace.replace('-', '_')}_master"
        # throttled, so that a build is still copying when the peer is killed (about 4 s
        # of copying a build)
        kubectl.apply(merge(alias, copy={"batchSize": 64, "parallelism": 4,
                                         "maxPointsPerSecond": 1000}), namespace)
        status = wait_build(kubectl, namespace, {"Succeeded", "Failed"}, f"{alias}_v1", 300)
        assert status["currentBuild"]["phase"] == "Succeeded", status["currentBuild"]
        placement = shard_placement(qdrant_cluster, f"{alias}_v1")
        assert sorted(placement) == list(range(6)), "the master has the sources' six shards"
        assert all(len(peers) == 2 for peers in placement.values()), placement
        assert {p for peers in placement.values() for p in peers} == {0, 1, 2}
        assert shard_placement(qdrant_cluster, names[0]).keys() == placement.keys()

        # A peer dies while the next build copies: the build either completes verified or
        # fails, and the alias moves only to a verified master.
        victim = qdrant_cluster.peers[2]
        with alias_watch(cluster_client, alias) as seen:
            kubectl.run("annotate", "mastermerge/master", "albumops.io/rebuild=2",
                        namespace=namespace)

            def copying() -> bool:
                build = status_of(kubectl, namespace).get("currentBuild") or {}
                return build.get("name") == f"{alias}_v2" and build.get("phase") == "Copying" \
                    and build.get("copiedPoints", 0) > 0
            wait_for(copying, 120, interval=0.05, what="the second build to be copying")
            victim.kill()
            second = wait_build(kubectl, namespace, {"Succeeded", "Failed"}, f"{alias}_v2",
                                300)
            verified = {f"{alias}_v1"} | ({f"{alias}_v2"} if second["currentBuild"]["phase"]
                                          == "Succeeded" else set())
            assert set(seen) <= verified, (set(seen), second["currentBuild"])
            if second["currentBuild"]["phase"] == "Failed":
                assert seen[-1] == f"{alias}_v1"

            victim.start()
            wait_joined(qdrant_cluster)
            kubectl.run("annotate", "--overwrite", "mastermerge/master",
                        "albumops.io/rebuild=3", namespace=namespace)
            third = wait_build(kubectl, namespace, {"Succeeded", "Failed"}, f"{alias}_v3", 300)
        assert third["currentBuild"]["phase"] == "Succeeded", third["currentBuild"]
        assert third["verification"]["passed"]
        assert seen[-1] == f"{alias}_v3"
        assert cluster_client.count(alias, exact=True).count == 3 * per_source
    finally:
        operator.end()
        kubectl.run("delete", "namespace", namespace, "--wait=false")
