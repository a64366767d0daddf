"""Edge publishing: publish time, full vs partial bytes for a 1% change, request latency.

Runs the operator's own Build path (``sync_shard`` + ``PolicyStore``) and its HTTP endpoint
in-process on the embedded engine. Baselines from the same run: for publishing, building the
same edge shard straight from points already in memory (qdrant-edge alone, no scroll, no
packaging); for a partial request, downloading the full snapshot from the same endpoint.

On a Qdrant server (when one is available: ``bench/server.py``) the same run measures the
``Server`` source: Qdrant makes the shard snapshots and the partials, the operator's own
``ServerSnapshots`` behind its ``EdgeEndpoint`` streams them, and the device code
(``EdgeDevice``) pulls them. Two collection layouts (``layouts``): Qdrant's defaults (HNSW,
as many segments as the server has CPUs) and ``segmented`` (sealed, indexed segments of about
1/8 of the vectors each); the run waits for green before each snapshot. Two
1% changes in turn: ``spread`` (the change of the embedded half: every 300th point edited,
every 300th deleted, as many added) and ``additions`` (1% new points, how an album grows).
For each: the new full snapshot's bytes against the partial's, and the device's pull of the
partial against a full pull (``init`` into an empty directory) of the same snapshot. A partial
is only smaller than the full snapshot when the change leaves whole segments untouched.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe
import requests
from qdrant_client import models as qm

from album_operator.adapters.edge import shardbuild
from album_operator.adapters.edge.endpoint import (
    EdgeRegistry,
    PolicyAccess,
    token_digest,
)
from album_operator.adapters.edge.http import EdgeEndpoint
from album_operator.adapters.edge.server_source import ServerSnapshots
from album_operator.adapters.edge.store import PolicyStore
from album_operator.adapters.qdrant.connection import ConnectionSettings, QdrantEngine, open_engine
from album_operator.edge import EdgeDevice, EndpointClient, EndpointError
from album_operator.edge import shards as device_shards
from album_operator.edge.fsutil import swap_in
from bench import server as bench_server

DIM = 512
TOKEN = "bench-token"
REQUESTS = 20


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _seed(engine: QdrantEngine, points: int, collection: str = "album_2025",
          optimizers: qm.OptimizersConfigDiff | None = None) -> np.ndarray:
    rng = np.random.default_rng(21)
    vectors = rng.normal(size=(points, DIM)).astype(np.float32)
    engine.call(lambda c: c.create_collection(collection, vectors_config=qm.VectorParams(
        size=DIM, distance=qm.Distance.COSINE), optimizers_config=optimizers))
    for start in range(0, points, 1000):
        batch = [qm.PointStruct(id=i, vector=vectors[i].tolist(), payload={"year": 2025, "i": i})
                 for i in range(start, min(points, start + 1000))]
        _upsert(engine, batch, collection)
    return vectors


def _upsert(engine: QdrantEngine, points: list[qm.PointStruct],
            collection: str = "album_2025") -> None:
    engine.call(lambda client: client.upsert(collection, points))


def _baseline_build(vectors: np.ndarray, path: Path) -> None:
    layout = {"": shardbuild.VectorLayout(DIM, "Cosine")}
    shard = qe.EdgeShard.create(str(path), shardbuild.edge_config(layout, None))
    for start in range(0, len(vectors), 512):
        shard.update(qe.UpdateOperation.upsert_points([
            qe.Point(i, vectors[i].tolist(), {"year": 2025, "i": i})
            for i in range(start, min(len(vectors), start + 512))]))
    shard.optimize()
    shard.close()


def _publish(engine: QdrantEngine, store: PolicyStore, name: str) -> int:
    layout = {"": shardbuild.VectorLayout(DIM, "Cosine")}
    shardbuild.sync_shard(engine, "album_2025", store.work, layout, None, None)
    manifest = shardbuild.manifest(store.work)
    return store.publish(0, name, "album_2025", manifest, name, None).size_bytes


def _change_one_percent(engine: QdrantEngine, points: int, collection: str = "album_2025"
                        ) -> None:
    rng = np.random.default_rng(3)
    step = 300  # a third each of edits, additions and deletions: 1% in all
    edited = [qm.PointStruct(id=i, vector=rng.normal(size=DIM).tolist(),
                             payload={"year": 2025, "edited": True})
              for i in range(0, points, step)]
    added = [qm.PointStruct(id=points + i, vector=rng.normal(size=DIM).tolist(),
                            payload={"year": 2025}) for i in range(points // step)]
    engine.call(lambda c: c.upsert(collection, edited + added))
    engine.call(lambda c: c.delete(collection, qm.PointIdsList(
        points=list(range(7, points, step)))))


def _latencies(request: Callable[[], requests.Response]) -> tuple[float, float, int]:
    timings, size = [], 0
    for _ in range(REQUESTS):
        elapsed, response = _timed(request)
        response.raise_for_status()
        size = len(response.content)
        timings.append(elapsed * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1], size


def run_size(points: int, workdir: Path) -> dict[str, object]:
    engine = open_engine(ConnectionSettings(embedded_path=str(workdir / f"engine-{points}")))
    vectors = _seed(engine, points)
    baseline_s, _ = _timed(lambda: _baseline_build(vectors, workdir / f"baseline-{points}"))
    store = PolicyStore(workdir / f"policy-{points}")
    publish_s, _ = _timed(lambda: _publish(engine, store, "first.tar"))
    device = workdir / f"device-{points}"
    qe.EdgeShard.unpack_snapshot(str(store.path("first.tar")), str(device))
    shard = qe.EdgeShard.load(str(device))
    device_manifest = shard.snapshot_manifest()
    shard.close()
    _change_one_percent(engine, points)
    republish_s, _ = _timed(lambda: _publish(engine, store, "second.tar"))

    registry = EdgeRegistry()
    registry.put(PolicyAccess(
        namespace="bench", name="edge", token_digests=frozenset({token_digest(TOKEN)}),
        store=store, engine=engine, collection="album_2025",
        vectors={"": {"size": DIM, "distance": "Cosine"}}, upload=None,
        allowed_targets=frozenset()))
    endpoint = EdgeEndpoint(registry, 0, host="127.0.0.1").start()
    base = f"http://127.0.0.1:{endpoint.port}/v1/namespaces/bench/policies/edge/shards/0"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        full_ms, full_p95, second_full = _latencies(lambda: requests.get(
            f"{base}/snapshot", headers=headers, timeout=60))
        partial_ms, partial_p95, partial_bytes = _latencies(lambda: requests.post(
            f"{base}/partial", json=device_manifest, headers=headers, timeout=60))
    finally:
        endpoint.stop()
        engine.close()
    return {
        "points": points,
        "baseline_edge_build_s": round(baseline_s, 2),
        "publish_s": round(publish_s, 2),
        "publish_vs_baseline": round(publish_s / baseline_s, 2),
        "republish_after_1pct_s": round(republish_s, 2),
        "full_bytes": second_full,
        "partial_bytes": partial_bytes,
        "full_over_partial": round(second_full / partial_bytes, 1),
        "full_download_ms_median": round(full_ms, 1),
        "partial_request_ms_median": round(partial_ms, 1),
        "partial_request_ms_p95": round(partial_p95, 1),
        "full_download_ms_p95": round(full_p95, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


@dataclass
class ServerRig:
    """A collection on the server, its ``Server`` source behind the operator's endpoint."""

    engine: QdrantEngine
    collection: str
    snapshots: ServerSnapshots
    endpoint: EdgeEndpoint
    workdir: Path
    last_created: float = 0.0

    def client(self) -> EndpointClient:
        return EndpointClient(f"http://127.0.0.1:{self.endpoint.port}", "bench", "edge", TOKEN)

    def publish(self) -> tuple[float, int]:
        """A new shard snapshot once the collection is green: (seconds to create, bytes).
        Qdrant names snapshots to the second, so two in one second would be one."""
        self.engine.call(lambda c: bench_server.wait_green(c, [self.collection]))
        time.sleep(max(0.0, self.last_created + 1.1 - time.monotonic()))
        for old in self.snapshots.snapshots(0):
            self.snapshots.delete(0, old["name"])
        seconds, made = _timed(lambda: self.snapshots.create(0))
        self.last_created = time.monotonic()
        return seconds, int(made["size"])

    def full_pull(self, name: str) -> tuple[float, EdgeDevice, int]:
        """``init`` of a new device directory: the full snapshot, restored."""
        device = EdgeDevice(self.workdir / name, self.client())
        seconds, result = _timed(device.init)
        return seconds, device, result.size_bytes

    def server_points(self) -> int:
        return self.engine.call(lambda c: c.count(self.collection, exact=True).count)


def _partial_pull(rig: ServerRig, device: EdgeDevice) -> tuple[float, int, int, str | None]:
    """The device's pull of a partial: (seconds, bytes, points after, why the fallback ran).

    ``EdgeDevice.pull`` first; if it refuses the endpoint's answer, the same steps it takes
    (the mirror's manifest, ``POST /partial`` through the endpoint, ``apply_partial`` on a
    staged copy, the swap) are timed on their own, and the refusal is reported."""
    try:
        seconds, result = _timed(device.pull)
        return seconds, result.size_bytes, result.points or 0, None
    except EndpointError as error:
        refusal = str(error)
    device.close()
    work = Path(tempfile.mkdtemp(dir=device.dir))
    url = (f"http://127.0.0.1:{rig.endpoint.port}/v1/namespaces/bench/policies/edge/"
           "shards/0/partial")

    def steps() -> tuple[int, int]:
        mirror = device_shards.load(device.mirror_dir)
        manifest = mirror.snapshot_manifest()
        device_shards.close_quietly(mirror)
        size = 0
        with requests.post(url, json=manifest, headers={"Authorization": f"Bearer {TOKEN}"},
                           stream=True, timeout=600) as response, \
                (work / "partial.tar").open("wb") as out:
            response.raise_for_status()
            for chunk in response.iter_content(1 << 20):
                out.write(chunk)
                size += len(chunk)
        staging, points = device_shards.apply_partial(device.mirror_dir, work / "partial.tar",
                                                      work)
        swap_in(staging, device.mirror_dir)
        return size, points

    try:
        seconds, (size, points) = _timed(steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return seconds, size, points, refusal


def _quiet(endpoint: EdgeEndpoint) -> EdgeEndpoint:
    """A device hangs up on an answer it refuses; the aiohttp endpoint logs that quietly (the
    stdlib server it replaced printed a traceback), so nothing is left to silence."""
    return endpoint


def _route_all_shards(snapshots: ServerSnapshots) -> None:
    """What the reconciler does before serving: every shard of the collection. (The Server
    source is being reworked for clusters: ``locate`` replaces ``shard_ids``; both work.)"""
    source: Any = snapshots
    if hasattr(source, "locate"):
        source.locate(None, None)
    else:
        source.shards = source.shard_ids(None)


def _add_one_percent(engine: QdrantEngine, points: int, collection: str) -> None:
    rng = np.random.default_rng(5)
    added = [qm.PointStruct(id=2 * points + i, vector=rng.normal(size=DIM).tolist(),
                            payload={"year": 2025, "added": True})
             for i in range(points // 100)]
    for start in range(0, len(added), 1000):
        _upsert(engine, added[start:start + 1000], collection)


SEGMENTS = 8
_NOTED: set[str] = set()


def layouts(points: int) -> dict[str, qm.OptimizersConfigDiff | None]:
    """``default``: Qdrant's optimizer defaults (as many segments as the server has CPUs).
    ``segmented``: sealed segments of about 1/8 of the vectors each, HNSW-indexed, and an
    appendable one for new points; what a Server-source collection needs for small partials.
    """
    segment_kb = max(500, points * DIM * 4 // 1024 // SEGMENTS)
    return {"default": None,
            "segmented": qm.OptimizersConfigDiff(max_segment_size=segment_kb,
                                                 indexing_threshold=segment_kb // 2)}


def run_server_size(server: bench_server.Server, points: int, workdir: Path, layout: str
                    ) -> list[dict[str, object]]:
    engine = open_engine(server.settings())
    collection = f"bench_edge_{layout}_{points}"
    optimizers = layouts(points)[layout]
    _seed(engine, points, collection, optimizers)
    indexing_s = engine.call(lambda c: bench_server.wait_green(c, [collection]))
    segments = engine.call(lambda c: c.get_collection(collection).segments_count)
    print(f"{layout} layout: seeded {points} points; green (indexed) after {indexing_s:.1f}s "
          f"more, {segments} segments", flush=True)
    snapshots = ServerSnapshots(server.settings(), collection)
    _route_all_shards(snapshots)
    registry = EdgeRegistry()
    registry.put(PolicyAccess(
        namespace="bench", name="edge", token_digests=frozenset({token_digest(TOKEN)}),
        store=PolicyStore(workdir / f"server-policy-{collection}"), engine=engine,
        collection=collection, vectors={"": {"size": DIM, "distance": "Cosine"}},
        upload=None, allowed_targets=frozenset(), server=snapshots))
    endpoint = _quiet(EdgeEndpoint(registry, 0, host="127.0.0.1")).start()
    rig = ServerRig(engine, collection, snapshots, endpoint, workdir / collection)
    rows = []
    try:
        create_s, _ = rig.publish()
        _, device, _ = rig.full_pull("device")
        changes: list[tuple[str, Callable[[], None]]] = [
            ("spread", lambda: _change_one_percent(engine, points, collection)),
            ("additions", lambda: _add_one_percent(engine, points, collection)),
        ]
        for change, apply in changes:
            apply()
            republish_s, full_bytes = rig.publish()
            partial_s, partial_bytes, device_points, refusal = _partial_pull(rig, device)
            full_s, fresh, full_pulled = rig.full_pull(f"device-full-{change}")
            fresh.close()
            shutil.rmtree(fresh.dir, ignore_errors=True)
            expected = rig.server_points()
            assert device_points == expected, (change, device_points, expected)
            assert full_pulled == full_bytes, (full_pulled, full_bytes)
            row: dict[str, object] = {
                "engine": "Qdrant server (source: Server)", "points": points,
                "layout": layout, "segments": segments, "change": change, "points_after": expected,
                "snapshot_create_s": round(create_s, 2),
                "snapshot_create_after_change_s": round(republish_s, 2),
                "full_bytes": full_bytes, "partial_bytes": partial_bytes,
                "full_over_partial": round(full_bytes / max(partial_bytes, 1), 1),
                "device_full_pull_s": round(full_s, 2),
                "device_partial_pull_s": round(partial_s, 2),
                "full_pull_over_partial_pull": round(full_s / partial_s, 1),
                "partial_pull_by": "EdgeDevice.pull" if refusal is None
                else "the device's pull steps (EdgeDevice.pull refused the answer)",
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                **server.memory_mb(),
            }
            if refusal is not None:
                row["edgedevice_pull_error"] = refusal
                if refusal not in _NOTED:
                    _NOTED.add(refusal)
                    print(f"note: EdgeDevice.pull() refused the Server source's partial "
                          f"({refusal}); partial pulls are timed with the same steps taken "
                          "one by one", flush=True)
            print(f"server, {points:,} points, {layout} layout ({segments} segments), 1% "
                  f"{change}: full {full_bytes / 1e6:.2f} MB, partial "
                  f"{partial_bytes / 1e6:.2f} MB (full/partial {row['full_over_partial']}x); "
                  f"device pull full {full_s:.2f}s, partial {partial_s:.2f}s (full/partial "
                  f"{row['full_pull_over_partial_pull']}x); snapshot create "
                  f"{republish_s:.2f}s; peak RSS bench {row['peak_rss_mb']} MB, server "
                  f"{row.get('server_peak_rss_mb', '?')} MB", flush=True)
            print(json.dumps(row), flush=True)
            rows.append(row)
        device.close()
    finally:
        endpoint.stop()
        for old in snapshots.snapshots(0):  # an external server keeps nothing of the run
            snapshots.delete(0, old["name"])
        snapshots.close()
        engine.call(lambda c: c.delete_collection(collection))
        engine.close()
    return rows


def run(sizes: list[int], engines: tuple[str, ...] = bench_server.ENGINES
        ) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    try:
        if "embedded" in engines:
            results += _run_embedded(sizes, workdir)
        if "server" in engines:
            with bench_server.qdrant("edge") as server:
                if server is None:
                    bench_server.skipped("edge")
                    return results
                print(f"== edge on {server.describe()}: source Server, a 1% change "
                      f"(spread, then additions), device pulls through the operator's "
                      "endpoint", flush=True)
                for points in sizes:
                    for layout in layouts(points):
                        results += run_server_size(server, points, workdir, layout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def _run_embedded(sizes: list[int], workdir: Path) -> list[dict[str, object]]:
    print(f"== edge: Build publishing and partial snapshots, 512-d points, {REQUESTS} requests "
          "each", flush=True)
    results = []
    for points in sizes:
        print(f"seeding {points} points ...", flush=True)
        result = run_size(points, workdir)
        print(json.dumps(result), flush=True)
        results.append(result)
    return results
