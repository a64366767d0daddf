"""Merge copy throughput: the merge guide's naive loop vs MasterMerge's copy, same data.

Baseline: the loop from the album team's merge guide (scroll 1024, upsert the page), with
one fix without which it cannot be measured: it stops when the scroll cursor runs out (as
written it starts over from the first page forever). MasterMerge: the operator's own copy
path (read-only source view, ``copy_step`` pages with checkpoints, the engine's lock).

Throughput is timed without tracing (tracemalloc slows allocation-heavy code by a third or
more): each copier runs onto a fresh master and then over the complete one, in the order
naive, MasterMerge, MasterMerge, naive, so that a disk slowing down as its files grow favours
neither; points/s are over both passes.

Memory: the embedded engine keeps every point in RAM and grows its arrays by reallocation,
so any copy into a fresh master shows memory that grows with the data whatever the copier
does. To isolate the copier, a third, traced pass copies onto the complete master (upserts
overwrite in place, the engine's storage no longer grows) and the tracemalloc peak above
the memory held before and after is reported as the copier's in-flight memory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.qdrant.connection import (
    ConnectionSettings,
    QdrantEngine,
    open_engine,
)
from album_operator.adapters.qdrant.merge import SourceReader, copy_step
from album_operator.reconcilers.master_merge import PAGES_PER_STEP

DIM = 512
YEARS = range(2017, 2026)


@dataclass(frozen=True)
class Run:
    points: int
    seconds: float


def _seed(client: QdrantClient, per_year: int, prefix: str) -> list[str]:
    rng = np.random.default_rng(11)
    names = []
    for year in YEARS:
        name = f"{prefix}album_{year}"
        client.create_collection(name, vectors_config=qm.VectorParams(
            size=DIM, distance=qm.Distance.COSINE))
        for start in range(0, per_year, 500):
            count = min(500, per_year - start)
            vectors = rng.normal(size=(count, DIM)).astype(np.float32)
            client.upsert(name, [qm.PointStruct(
                id=year * 1_000_000 + start + i, vector=vectors[i].tolist(),
                payload={"year": year, "album_id": f"family-{i % 7}"}) for i in range(count)])
        names.append(name)
    return names


def _timed(copy: Callable[[], None], count: Callable[[], int]) -> Run:
    started = time.perf_counter()
    copy()
    elapsed = time.perf_counter() - started
    return Run(count(), elapsed)


def _inflight_mb(copy: Callable[[], None]) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    copy()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return max(peak - max(current, before), 0) / 2**20


def _rate(*runs: Run) -> float:
    return sum(run.points for run in runs) / sum(run.seconds for run in runs)


def _create(client: QdrantClient, name: str) -> None:
    client.create_collection(name, vectors_config=qm.VectorParams(
        size=DIM, distance=qm.Distance.COSINE))


def naive_loop(client: QdrantClient, dest: str, sources: list[str]) -> None:
    batch = 1024
    for src in sources:
        scroll_cursor = None
        while True:
            points, scroll_cursor = client.scroll(collection_name=src, with_vectors=True,
                                                  with_payload=True, limit=batch,
                                                  offset=scroll_cursor)
            if not points:
                break
            client.upsert(collection_name=dest, points=[
                qm.PointStruct(id=p.id, vector=p.vector or [], payload=p.payload)
                for p in points])
            if scroll_cursor is None:  # the guide's loop lacks this and never ends
                break


def _copy_source(reader: SourceReader, engine: QdrantEngine, source: str, target: str,
                 batch_size: int, parallelism: int) -> None:
    offset = None
    while True:
        progress = copy_step(reader, engine, source, target, offset, batch_size,
                             PAGES_PER_STEP, parallelism)
        offset = progress.next_offset
        if progress.done:
            return


def operator_copy(engine: QdrantEngine, sources: list[str], target: str, batch_size: int,
                  parallelism: int) -> None:
    """The reconciler's copy rule: on a server up to ``parallelism`` sources at once, each
    with its share of in-flight upserts; on the embedded engine one source at a time."""
    reader = SourceReader(engine)
    if not engine.capabilities.parallel_writes:
        for source in sources:
            _copy_source(reader, engine, source, target, batch_size, 1)
        return
    active = min(parallelism, len(sources))
    per_source = max(1, parallelism // active)
    with ThreadPoolExecutor(max_workers=active) as pool:
        list(pool.map(lambda s: _copy_source(reader, engine, s, target, batch_size,
                                             per_source), sources))


def _drop(engine: QdrantEngine, name: str) -> None:
    engine.call(lambda client: client.delete_collection(name))


def _count(engine: QdrantEngine, name: str) -> int:
    return engine.call(lambda c: c.count(name, exact=True).count)


def run_size(engine: QdrantEngine, per_year: int, batch_size: int, parallelism: int,
             prefix: str) -> dict[str, object]:
    sources = engine.call(lambda c: _seed(c, per_year, prefix))
    total = per_year * len(YEARS)
    naive_target, merge_target = f"{prefix}naive_master", f"{prefix}album_master_v1"
    engine.call(lambda c: _create(c, naive_target))
    engine.call(lambda c: _create(c, merge_target))

    def naive() -> None:
        engine.call(lambda c: naive_loop(c, naive_target, sources))

    def merged() -> None:
        operator_copy(engine, sources, merge_target, batch_size, parallelism)

    print(f"copying {total} points: 4 timed passes (A-B-B-A), then 2 traced ...", flush=True)
    naive_run = _timed(naive, lambda: _count(engine, naive_target))
    merged_run = _timed(merged, lambda: _count(engine, merge_target))
    merged_again = _timed(merged, lambda: _count(engine, merge_target))
    naive_again = _timed(naive, lambda: _count(engine, naive_target))
    naive_inflight, merged_inflight = _inflight_mb(naive), _inflight_mb(merged)
    for name in [*sources, naive_target, merge_target]:
        _drop(engine, name)
    assert naive_run.points == merged_run.points == total, (naive_run.points,
                                                            merged_run.points, total)
    return {
        "points": total,
        "naive_points_per_s": round(_rate(naive_run, naive_again)),
        "mastermerge_points_per_s": round(_rate(merged_run, merged_again)),
        "ratio": round(_rate(merged_run, merged_again) / _rate(naive_run, naive_again), 2),
        "naive_inflight_mb": round(naive_inflight, 1),
        "mastermerge_inflight_mb": round(merged_inflight, 1),
    }


def _run_on(engine: QdrantEngine, label: str, sizes: list[int], batch_size: int,
            parallelism: int, prefix: str) -> list[dict[str, object]]:
    print(f"== merge on {label}: naive loop vs MasterMerge copy, {len(YEARS)} sources of "
          f"512-d points, MasterMerge batch {batch_size}, parallelism {parallelism}",
          flush=True)
    results = []
    for per_year in sizes:
        print(f"seeding {per_year * len(YEARS)} points ...", flush=True)
        result = {"engine": label, **run_size(engine, per_year, batch_size, parallelism,
                                              prefix)}
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def run(sizes: list[int], batch_size: int, parallelism: int = 4
        ) -> list[dict[str, object]]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    engine = open_engine(ConnectionSettings(embedded_path=str(workdir / "engine")))
    try:
        results = _run_on(engine, "embedded engine (on disk)", sizes, batch_size, 1, "")
    finally:
        engine.close()
        shutil.rmtree(workdir, ignore_errors=True)
    url = os.environ.get("QDRANT_URL")
    if url:
        server = open_engine(ConnectionSettings(url=url,
                                                api_key=os.environ.get("QDRANT_API_KEY")))
        try:
            results += _run_on(server, "Qdrant server", sizes, batch_size, parallelism,
                               "bench_")
        finally:
            server.close()
    else:
        print("(set QDRANT_URL to also measure on a Qdrant server)", flush=True)
    return results
