"""Merge copy throughput: the merge guide's naive loop vs MasterMerge's copy, same data.

Baseline: the loop from the album team's merge guide (scroll 1024, upsert the page), with
one fix without which it cannot be measured: it stops when the scroll cursor runs out (as
written it starts over from the first page forever). MasterMerge: the operator's own copy
path (read-only source view, ``copy_step`` pages with checkpoints, the engine's lock).

Memory: the embedded engine keeps every point in RAM, so the process grows with the data
whatever the copier does. What the copier controls is its in-flight memory, reported as
the tracemalloc peak during the copy minus what stays allocated afterwards.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.qdrant.connection import ConnectionSettings, open_engine
from album_operator.adapters.qdrant.merge import SourceReader, copy_step
from album_operator.reconcilers.master_merge import PAGES_PER_STEP

DIM = 512
YEARS = range(2017, 2026)


@dataclass(frozen=True)
class Run:
    points: int
    seconds: float
    transient_mb: float

    @property
    def rate(self) -> float:
        return self.points / self.seconds


def _seed(client: QdrantClient, per_year: int) -> list[str]:
    rng = np.random.default_rng(11)
    names = []
    for year in YEARS:
        name = f"album_{year}"
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


def _measure(copy: Callable[[], None], count: Callable[[], int]) -> Run:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    copy()
    elapsed = time.perf_counter() - started
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    transient = max(peak - max(current, before), 0)
    return Run(count(), elapsed, transient / 2**20)


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


def run_size(per_year: int, batch_size: int, workdir: Path) -> dict[str, object]:
    path = workdir / f"engine-{per_year}"
    engine = open_engine(ConnectionSettings(embedded_path=str(path)))
    sources = engine.call(lambda c: _seed(c, per_year))
    total = per_year * len(YEARS)
    engine.call(lambda c: _create(c, "naive_master"))
    naive = _measure(lambda: engine.call(lambda c: naive_loop(c, "naive_master", sources)),
                     lambda: engine.call(lambda c: c.count("naive_master").count))

    engine.call(lambda c: _create(c, "album_master_v1"))
    reader = SourceReader(engine)

    def operator_copy() -> None:
        for source in sources:
            offset = None
            while True:
                progress = copy_step(reader, engine, source, "album_master_v1", offset,
                                     batch_size, PAGES_PER_STEP)
                offset = progress.next_offset
                if progress.done:
                    break

    merged = _measure(operator_copy,
                      lambda: engine.call(lambda c: c.count("album_master_v1").count))
    engine.close()
    shutil.rmtree(path, ignore_errors=True)
    assert naive.points == merged.points == total, (naive.points, merged.points, total)
    return {
        "points": total,
        "naive_points_per_s": round(naive.rate),
        "mastermerge_points_per_s": round(merged.rate),
        "ratio": round(merged.rate / naive.rate, 2),
        "naive_transient_mb": round(naive.transient_mb, 1),
        "mastermerge_transient_mb": round(merged.transient_mb, 1),
    }


def run(sizes: list[int], batch_size: int) -> list[dict[str, object]]:
    print(f"== merge: naive loop vs MasterMerge copy on the embedded engine (on disk), "
          f"{len(YEARS)} sources of 512-d points, MasterMerge batch {batch_size}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    results = []
    for per_year in sizes:
        print(f"seeding {per_year * len(YEARS)} points ...", flush=True)
        result = run_size(per_year, batch_size, workdir)
        print(json.dumps(result), flush=True)
        results.append(result)
    shutil.rmtree(workdir, ignore_errors=True)
    return results
