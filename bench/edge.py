"""Edge publishing: publish time, full vs partial bytes for a 1% change, request latency.

Runs the operator's own Build path (``sync_shard`` + ``PolicyStore``) and its HTTP endpoint
in-process on the embedded engine. Baselines from the same run: for publishing, building the
same edge shard straight from points already in memory (qdrant-edge alone, no scroll, no
packaging); for a partial request, downloading the full snapshot from the same endpoint.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe
import requests
from qdrant_client import models as qm

from album_operator.adapters.edge import shardbuild
from album_operator.adapters.edge.endpoint import (
    EdgeEndpoint,
    EdgeRegistry,
    PolicyAccess,
    token_digest,
)
from album_operator.adapters.edge.store import PolicyStore
from album_operator.adapters.qdrant.connection import ConnectionSettings, QdrantEngine, open_engine

DIM = 512
TOKEN = "bench-token"
REQUESTS = 20


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _seed(engine: QdrantEngine, points: int) -> np.ndarray:
    rng = np.random.default_rng(21)
    vectors = rng.normal(size=(points, DIM)).astype(np.float32)
    engine.call(lambda c: c.create_collection("album_2025", vectors_config=qm.VectorParams(
        size=DIM, distance=qm.Distance.COSINE)))
    for start in range(0, points, 1000):
        batch = [qm.PointStruct(id=i, vector=vectors[i].tolist(), payload={"year": 2025, "i": i})
                 for i in range(start, min(points, start + 1000))]
        _upsert(engine, batch)
    return vectors


def _upsert(engine: QdrantEngine, points: list[qm.PointStruct]) -> None:
    engine.call(lambda client: client.upsert("album_2025", points))


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


def _change_one_percent(engine: QdrantEngine, points: int) -> None:
    rng = np.random.default_rng(3)
    step = 300  # a third each of edits, additions and deletions: 1% in all
    edited = [qm.PointStruct(id=i, vector=rng.normal(size=DIM).tolist(),
                             payload={"year": 2025, "edited": True})
              for i in range(0, points, step)]
    added = [qm.PointStruct(id=points + i, vector=rng.normal(size=DIM).tolist(),
                            payload={"year": 2025}) for i in range(points // step)]
    engine.call(lambda c: c.upsert("album_2025", edited + added))
    engine.call(lambda c: c.delete("album_2025", qm.PointIdsList(
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


def run(sizes: list[int]) -> list[dict[str, object]]:
    print(f"== edge: Build publishing and partial snapshots, 512-d points, {REQUESTS} requests "
          "each", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    results = []
    try:
        for points in sizes:
            print(f"seeding {points} points ...", flush=True)
            result = run_size(points, workdir)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results
