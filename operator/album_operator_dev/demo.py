"""``album-operator demo``: the whole system, step by step, on the embedded default or a server.

Brings up the local control plane, installs the CRDs, runs the operator, applies
``examples/``, writes synthetic photo embeddings the way the album service would, and shows
the result in Kubernetes and in Qdrant. The embedded engine allows one process per data path,
so the operator runs in this process and the demo looks into Qdrant through the same pool.
With ``--qdrant-bin`` (a server binary it starts) or ``--qdrant-url``, the same story runs on
a Qdrant server, which also shows the collection settings the server applied.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import qdrant_edge as qe
import requests
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.crdinstall import install_crds
from album_operator.adapters.kube import load_api_client
from album_operator.adapters.logs import configure_logging
from album_operator.adapters.qdrant.connection import ConnectionSettings, QdrantPool
from album_operator.config import OperatorConfig
from album_operator.runner import OperatorThread
from album_operator_dev.localcluster import cluster
from album_operator_dev.localcluster.build import cache_root
from album_operator_dev.localcluster.qdrant_server import start_single

NAMESPACE = "album-demo"
CLUSTER = "demo"
POINTS_PER_YEAR = 200
DIMENSIONS = 512
YEARS = range(2017, 2026)


def _step(number: int, total: int, text: str) -> None:
    print(f"\n[{number}/{total}] {text}", flush=True)


def _repo_examples() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "examples").is_dir() and (parent / "pyproject.toml").is_file():
            return parent / "examples"
    return Path.cwd() / "examples"


class Kubectl:
    def __init__(self, binary: str, kubeconfig: str) -> None:
        self.base = [binary, f"--kubeconfig={kubeconfig}", f"--namespace={NAMESPACE}"]

    def __call__(self, *args: str, show: bool = True, check: bool = True) -> str:
        result = subprocess.run([*self.base, *args], capture_output=True, text=True,
                                check=False, timeout=300)
        if show:
            print("$ kubectl " + " ".join(args))
            print((result.stdout + result.stderr).rstrip())
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout


def _start_cluster(total: int) -> tuple[Kubectl, bool]:
    _step(1, total, "Kubernetes control plane (kube-apiserver + etcd, built from Go modules once)")
    if cluster.use_existing_cluster():
        kubeconfig = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
        print(f"using the existing cluster in {kubeconfig}")
        return Kubectl(shutil.which("kubectl") or "kubectl", kubeconfig), False
    fresh = cluster.read_state(CLUSTER) is None
    state = cluster.up(CLUSTER)
    os.environ["KUBECONFIG"] = state.kubeconfig
    print(f"API server {state.server_url}; kubeconfig {state.kubeconfig}")
    return Kubectl(state.kubectl, state.kubeconfig), fresh


def _synthetic_points(year: int, rng: np.random.Generator) -> list[qm.PointStruct]:
    centre = rng.normal(size=DIMENSIONS)
    vectors = centre + 0.6 * rng.normal(size=(POINTS_PER_YEAR, DIMENSIONS))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        qm.PointStruct(id=year * 100_000 + i, vector=vectors[i].tolist(), payload={
            "album_id": f"family-{i % 7}", "year": year,
            "taken_at": f"{year}-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z",
            "tags": ["beach"] if i % 3 == 0 else ["city"],
        })
        for i in range(POINTS_PER_YEAR)
    ]


def _wait_ready(kubectl: Kubectl, kind: str, operator_log: Path, timeout_s: int = 120) -> None:
    """Waits for every ``kind`` to be Ready; on a timeout shows why before failing."""
    try:
        kubectl("wait", "--for=condition=Ready", kind, "--all", f"--timeout={timeout_s}s")
    except RuntimeError:
        kubectl("get", kind, "-o", "custom-columns=NAME:.metadata.name,"
                "READY:.status.conditions[?(@.type=='Ready')].status,"
                "REASON:.status.conditions[?(@.type=='Ready')].reason,"
                "MESSAGE:.status.conditions[?(@.type=='Ready')].message", check=False)
        tail = operator_log.read_text(errors="replace").splitlines()[-40:]
        print(f"the last {len(tail)} lines of the operator log ({operator_log}):")
        print("\n".join(tail))
        raise


def _wait_for_counts(kubectl: Kubectl, timeout_s: float = 30.0) -> None:
    """The operator's resync reports the new point counts in status."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = kubectl("get", "albumcollections", "-o",
                         "jsonpath={.items[*].status.pointsCount}", show=False).split()
        if counts and all(c == str(POINTS_PER_YEAR) for c in counts):
            return
        time.sleep(1)


def _show_qdrant(client: QdrantClient) -> None:
    print(f"{'collection':<14} {'points':>7}  owner (Qdrant metadata)")
    for item in sorted(client.get_collections().collections, key=lambda c: c.name):
        info = client.get_collection(item.name)
        owner = (info.config.metadata or {}).get("albumops.io/owner", "-")
        print(f"{item.name:<14} {info.points_count or 0:>7}  {owner}")
    aliases = client.get_aliases().aliases
    print("aliases: " + (", ".join(f"{a.alias_name} -> {a.collection_name}" for a in aliases)
                         or "none yet"))


def _applied(info: Any) -> list[tuple[str, object]]:
    config = info.config
    vectors = config.params.vectors
    scalar = config.quantization_config.scalar if config.quantization_config else None
    return [
        ("vectors", f"{vectors.size}-d {vectors.distance.value}, on_disk={vectors.on_disk}"),
        ("hnsw", f"m={config.hnsw_config.m} ef_construct={config.hnsw_config.ef_construct}"),
        ("quantization", f"scalar {scalar.type.value} quantile={scalar.quantile} "
                         f"always_ram={scalar.always_ram}" if scalar else "none"),
        ("optimizers", f"indexing_threshold={config.optimizer_config.indexing_threshold}"),
        ("on_disk_payload", config.params.on_disk_payload),
        ("payload indexes", ", ".join(f"{name} ({schema.data_type.value})" for name, schema
                                      in sorted(info.payload_schema.items()))),
    ]


def _show_applied_settings(client: QdrantClient) -> None:
    """What the server applied of examples/album-collections.yaml (embedded mode ignores
    all of it)."""
    info = client.get_collection("album_2017")
    print("settings the server applied to album_2017 (declared in "
          "examples/album-collections.yaml):")
    for name, value in _applied(info):
        print(f"  {name:<16} {value}")


def _search(client: QdrantClient, rng: np.random.Generator) -> None:
    probe = client.retrieve("album_2021", [2021 * 100_000 + 5], with_vectors=True)[0]
    vector = np.asarray(probe.vector) + 0.01 * rng.normal(size=DIMENSIONS)
    hits = client.query_points("album_master", query=vector.tolist(), limit=3,
                               query_filter=qm.Filter(must=[qm.FieldCondition(
                                   key="tags", match=qm.MatchValue(value="city"))])).points
    print("search all years through the alias album_master for a photo like "
          "#2021-00005, tagged 'city':")
    for hit in hits:
        payload = hit.payload or {}
        print(f"  id={hit.id} score={hit.score:.3f} year={payload.get('year')} "
              f"album={payload.get('album_id')} taken_at={payload.get('taken_at')}")


@dataclass(frozen=True)
class DemoQdrant:
    """Where the demo's Qdrant is: a server binary to start, a server URL, or neither
    (the embedded default)."""

    binary: Path | None = None
    url: str | None = None
    api_key: str | None = None

    def describe(self) -> str:
        if self.binary:
            return f"Qdrant server started from {self.binary}"
        return f"Qdrant server at {self.url}" if self.url else "embedded Qdrant engine"


@contextlib.contextmanager
def _qdrant_settings(choice: DemoQdrant, demo_dir: Path, fresh: bool
                     ) -> Iterator[ConnectionSettings]:
    data = demo_dir / "qdrant"
    if choice.binary is None and choice.url is None:
        if fresh:
            shutil.rmtree(data, ignore_errors=True)
        yield ConnectionSettings(embedded_path=str(data))
        return
    if choice.url:
        yield ConnectionSettings(url=choice.url, api_key=choice.api_key)
        return
    assert choice.binary is not None
    home = demo_dir / "qdrant-server"
    shutil.rmtree(home, ignore_errors=True)  # the server's data lives as long as the run
    server = start_single(choice.binary, home, secrets.token_urlsafe(24))
    print(f"Qdrant {server.version()} at {server.url} (data in {home})")
    try:
        yield ConnectionSettings(url=server.url, api_key=server.api_key)
    finally:
        server.stop()


def run_demo(keep: bool = False, qdrant: DemoQdrant | None = None) -> int:
    choice = qdrant or DemoQdrant()
    if choice.binary is not None and not os.access(choice.binary, os.X_OK):
        print(f"album-operator demo: --qdrant-bin {choice.binary} is not an executable file",
              file=sys.stderr)
        return 2
    total = 7
    started = time.monotonic()
    kubectl, fresh = _start_cluster(total)
    demo_dir = cache_root() / "demo"
    snapshots = demo_dir / "edge-snapshots"
    if fresh:  # a new control plane starts with no collections and no published snapshots
        shutil.rmtree(snapshots, ignore_errors=True)
    demo_dir.mkdir(parents=True, exist_ok=True)

    _step(2, total, "CRDs (generated from the pydantic models)")
    for name in install_crds(load_api_client()):
        print(f"established: {name}")

    _step(3, total, f"operator ({choice.describe()})")
    log_path = demo_dir / "operator.log"
    with log_path.open("w") as log_file, _qdrant_settings(choice, demo_dir, fresh) as settings:
        configure_logging(stream=log_file)
        logging.getLogger("kopf").setLevel(logging.INFO)
        pool = QdrantPool(settings)
        # Short intervals: the demo waits for the counts a resync reports and for the
        # policy's first run, which the default edge step (5 s) would delay.
        config = OperatorConfig(namespaces=(NAMESPACE,),
                                embedded_path=settings.embedded_path or str(demo_dir / "qdrant"),
                                resync_seconds=2.0, edge_step_seconds=1.0,
                                merge_step_seconds=0.5, health_port=None,
                                snapshot_port=cluster.free_port(),
                                snapshot_dir=str(snapshots))
        with OperatorThread(config, pool):
            print(f"running on {settings.describe()}; JSON logs in {log_path}; edge snapshot "
                  f"endpoint on port {config.snapshot_port}")
            _apply_and_show(kubectl, pool, total, log_path)
            _edge_device(kubectl, config, demo_dir, pool, total)
        pool.close()
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")
    if keep and not cluster.use_existing_cluster():
        print(f"the control plane keeps running: eval $(album-operator local-cluster env "
              f"--name {CLUSTER}); stop it with: album-operator local-cluster down --name "
              f"{CLUSTER}")
    elif not cluster.use_existing_cluster():
        cluster.down(CLUSTER)
        print("control plane stopped (run with --keep to leave it up)")
    return 0


def _apply_and_show(kubectl: Kubectl, pool: QdrantPool, total: int,
                    operator_log: Path) -> None:
    examples = _repo_examples()
    _step(4, total, f"kubectl apply -f examples/album-collections.yaml (namespace {NAMESPACE})")
    kubectl("create", "namespace", NAMESPACE, show=False, check=False)
    kubectl("apply", "-f", str(examples / "album-collections.yaml"))
    _wait_ready(kubectl, "albumcollections", operator_log)
    engine = pool.engine()
    rng = np.random.default_rng(7)
    for year in YEARS:
        points = _synthetic_points(year, rng)

        def write(client: QdrantClient, year: int = year,
                  points: list[qm.PointStruct] = points) -> None:
            client.upsert(f"album_{year}", points, wait=True)

        engine.call(write)
    print(f"wrote {POINTS_PER_YEAR} synthetic 512-d photo embeddings into each year")
    _wait_for_counts(kubectl)

    _step(5, total, "kubectl apply -f examples/ (adds the MasterMerge and the "
          "EdgeSnapshotPolicy); wait for the master")
    kubectl("apply", "-f", str(examples))
    _wait_ready(kubectl, "mastermerges", operator_log, timeout_s=300)
    _wait_ready(kubectl, "edgesnapshotpolicies", operator_log, timeout_s=120)
    kubectl("get", "albumops")

    _step(6, total, "what Qdrant holds: the year collections, the master, its alias")
    engine.call(_show_qdrant)
    if engine.capabilities.kind == "server":
        engine.call(_show_applied_settings)
    engine.call(lambda c: _search(c, rng))



def _edge_device(kubectl: Kubectl, config: OperatorConfig, demo_dir: Path, pool: QdrantPool,
                 total: int) -> None:
    """A device fetches album_2025's snapshot with its token and searches it offline."""
    _step(7, total, "an edge device restores album_2025 from the operator's snapshot endpoint")
    token = base64.b64decode(kubectl("get", "secret", "kiosk-lobby-token", "-o",
                                     "jsonpath={.data.token}", show=False)).decode()
    base = (f"http://127.0.0.1:{config.snapshot_port}/v1/namespaces/{NAMESPACE}/policies/"
            "album-2025-edge")
    headers = {"Authorization": f"Bearer {token}"}
    device = demo_dir / "device"
    shutil.rmtree(device, ignore_errors=True)
    device.mkdir(parents=True)
    with requests.get(f"{base}/shards/0/snapshot", headers=headers, stream=True,
                      timeout=60) as response:
        response.raise_for_status()
        snapshot = device / "snapshot.tar"
        with snapshot.open("wb") as out:
            for chunk in response.iter_content(1 << 20):
                out.write(chunk)
        print(f"GET {base}/shards/0/snapshot -> {response.headers['X-Snapshot-Name']} "
              f"({snapshot.stat().st_size} bytes, sha256 "
              f"{response.headers['X-Snapshot-Sha256'][:16]}...)")
    qe.EdgeShard.unpack_snapshot(str(snapshot), str(device / "shard"))
    shard = qe.EdgeShard.load(str(device / "shard"))
    probe = pool.engine().call(lambda c: c.retrieve("album_2025", [2025 * 100_000 + 1],
                                                    with_vectors=True))[0]
    vector = cast(list[float], probe.vector)
    hits = shard.query(qe.QueryRequest(limit=3, query=qe.Query.Nearest(vector),
                                       with_payload=True))
    print(f"the device holds {shard.info().points_count} points; offline search for photo "
          f"{probe.id}:")
    for hit in hits:
        print(f"  id={hit.id} score={hit.score:.3f} year={(hit.payload or {}).get('year')}")
    shard.close()
