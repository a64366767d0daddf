"""Edge upload queue throughput: durable enqueue, its non-durable baseline, and the drain.

Enqueue: ``points`` 512-d points into a fresh :class:`UploadQueue`, one transaction per
point (what a device acknowledging each write pays) and ``batch_size`` points per
transaction. Durable is the queue as shipped (WAL, ``synchronous=FULL``: an fsync per
commit); the baseline is the same code with ``synchronous=OFF`` in the same run, and
``durable_cost_ratio`` is baseline rate / durable rate.

Drain: the queued points pushed with ``drain(batch_size=...)`` to the operator's own
snapshot endpoint (``EdgeEndpoint``, in-process on loopback), which validates each batch and
upserts it into a collection of the embedded engine (in memory), as it does for devices.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from qdrant_client import models as qm

from album_operator.adapters.edge.endpoint import (
    EdgeRegistry,
    PolicyAccess,
    token_digest,
)
from album_operator.adapters.edge.http import EdgeEndpoint
from album_operator.adapters.edge.store import PolicyStore
from album_operator.adapters.qdrant.connection import ConnectionSettings, open_engine
from album_operator.edge.client import EndpointClient
from album_operator.edge.points import EdgePoint
from album_operator.edge.pushing import drain
from album_operator.edge.queue import UploadQueue
from album_operator.models.edge_snapshot_policy import UploadSpec

TOKEN = "bench-device-token"


def _points(count: int, dim: int) -> list[EdgePoint]:
    rng = random.Random(11)
    return [EdgePoint(i, [round(rng.uniform(-1, 1), 6) for _ in range(dim)],
                      {"album_id": f"family-{i % 7}", "n": i}) for i in range(count)]


def _rate(count: int, work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def _enqueue_rate(path: Path, points: list[EdgePoint], per_commit: int, durable: bool) -> float:
    with UploadQueue(path, durable=durable) as queue:
        def work() -> None:
            for start in range(0, len(points), per_commit):
                queue.enqueue(points[start:start + per_commit])
        rate = _rate(len(points), work)
        assert queue.depth() == len(points)
    return rate


def run(points: int = 2000, batch_size: int = 256, dim: int = 512) -> dict[str, object]:
    """Prints and returns the figures; ``batch_size`` is both the points per enqueue
    transaction of the batched figures and the points per ``POST /points`` of the drain."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-edge-queue-"))
    data = _points(points, dim)
    engine = open_engine(ConnectionSettings())
    engine.call(lambda c: c.create_collection("uploads", vectors_config=qm.VectorParams(
        size=dim, distance=qm.Distance.COSINE)))
    registry = EdgeRegistry()
    registry.put(PolicyAccess(
        namespace="bench", name="edge", token_digests=frozenset({token_digest(TOKEN)}),
        store=PolicyStore(workdir / "policy"), engine=engine, collection="uploads",
        vectors={"": {"size": dim, "distance": "Cosine"}},
        upload=UploadSpec(collection="uploads", max_batch_size=max(batch_size, 1000)),
        allowed_targets=frozenset({"uploads"})))
    endpoint = EdgeEndpoint(registry, 0, host="127.0.0.1").start()
    try:
        rates = {}
        for durable in (True, False):
            for per_commit in (1, batch_size):
                name = f"{'durable' if durable else 'sync_off'}_enqueue_{per_commit}_per_commit"
                path = workdir / f"{name}.sqlite"
                rates[name] = _enqueue_rate(path, data, per_commit, durable)
        client = EndpointClient(f"http://127.0.0.1:{endpoint.port}", "bench", "edge", TOKEN)
        queue = UploadQueue(workdir / f"durable_enqueue_{batch_size}_per_commit.sqlite")
        started = time.perf_counter()
        result = drain(queue, client, batch_size=batch_size)
        drain_seconds = time.perf_counter() - started
        queue.close()
        assert result.accepted == points, result
        assert result.remaining == 0, result
        assert engine.call(lambda c: c.count("uploads").count) == points
        one, many = "enqueue_1_per_commit", f"enqueue_{batch_size}_per_commit"
        figures: dict[str, object] = {
            "points": points, "dim": dim, "batch_size": batch_size,
            "durable_enqueue_points_per_s_1_per_commit": round(rates[f"durable_{one}"]),
            "sync_off_enqueue_points_per_s_1_per_commit": round(rates[f"sync_off_{one}"]),
            "durable_cost_ratio_1_per_commit": round(
                rates[f"sync_off_{one}"] / rates[f"durable_{one}"], 2),
            "durable_enqueue_points_per_s_batched": round(rates[f"durable_{many}"]),
            "sync_off_enqueue_points_per_s_batched": round(rates[f"sync_off_{many}"]),
            "durable_cost_ratio_batched": round(
                rates[f"sync_off_{many}"] / rates[f"durable_{many}"], 2),
            "drain_points_per_s": round(points / drain_seconds),
            "drain_requests": result.batches,
            "drain_endpoint": "the operator's EdgeEndpoint in-process, embedded engine",
        }
    finally:
        endpoint.stop()
        engine.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"edge_queue": figures}, indent=2))
    return figures


if __name__ == "__main__":
    run()
