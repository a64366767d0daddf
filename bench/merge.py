"""Merge copy throughput: the merge guide's naive loop vs MasterMerge's copy, same data.

Baseline: the loop from the album team's merge guide (scroll 1024, upsert the page), with
one fix without which it cannot be measured: it stops when the scroll cursor runs out (as
written it starts over from the first page forever). MasterMerge: the operator's own copy
path (``ContinuousCopy``: read-only source view, checkpointed ``copy_step`` chunks).

Throughput is timed without tracing (tracemalloc slows allocation-heavy code by a third or
more): each copier runs onto a fresh master and then over the complete one, in the order
naive, MasterMerge, MasterMerge, naive, so that a disk slowing down as its files grow favours
neither; points/s are over both passes.

Memory: the embedded engine keeps every point in RAM and grows its arrays by reallocation,
so any copy into a fresh master shows memory that grows with the data whatever the copier
does. To isolate the copier, a third, traced pass copies onto the complete master (upserts
overwrite in place, the engine's storage no longer grows) and the tracemalloc peak above
the memory held before and after is reported as the copier's in-flight memory.

On a Qdrant server (when one is available: ``bench/server.py``) the same run adds a third
copier, the server's raw upsert ceiling: the same points, held in memory as float32 arrays,
upserted in MasterMerge's batch size from ``parallelism`` client threads, no scrolling. The
targets are made as their writers make them: the naive loop's with the collection defaults
(its HNSW graphs are built in the background while it copies, as the guide's would be);
MasterMerge's with HNSW ``m=0``, as the reconciler creates a master for the copy
(``bulk_load_collection``); the ceiling's the same as MasterMerge's, so the two differ only in
the reading. Before every pass the run waits until all collections are green, so no pass
pays for a previous pass's background indexing. The order is naive, MasterMerge, ceiling,
ceiling, MasterMerge, naive.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, grpc
from qdrant_client import models as qm
from qdrant_client.conversions.conversion import RestToGrpc

from album_operator.adapters.qdrant.connection import (
    ConnectionSettings,
    QdrantEngine,
    QdrantError,
    open_engine,
)
from album_operator.adapters.qdrant.copier import (
    PAGES_PER_CHUNK,
    ContinuousCopy,
    CopyPlan,
    whole_parts,
)
from album_operator.adapters.qdrant.grpccopy import GrpcTransport
from album_operator.adapters.qdrant.merge import SourceReader, scan_sources
from album_operator.core.merge import copy_range_points
from album_operator.reconcilers.master_merge import UPSERTS_PER_STREAM
from bench import merge_operator
from bench import server as bench_server

DIM = 512
YEARS = range(2017, 2026)
SEED_BATCH = 500


@dataclass(frozen=True)
class Run:
    points: int
    seconds: float


@dataclass(frozen=True)
class YearData:
    year: int
    ids: list[int]
    vectors: np.ndarray
    payloads: list[dict[str, object]]

    def points(self, start: int, stop: int) -> list[qm.PointStruct]:
        return [qm.PointStruct(id=self.ids[i], vector=self.vectors[i].tolist(),
                               payload=self.payloads[i]) for i in range(start, stop)]

    def grpc_points(self, start: int, stop: int) -> list[Any]:
        return [grpc.PointStruct(
            id=grpc.PointId(num=self.ids[i]),
            vectors=grpc.Vectors(vector=grpc.Vector(data=self.vectors[i].tolist())),
            payload=RestToGrpc.convert_payload(self.payloads[i])) for i in range(start, stop)]


def _generate(per_year: int) -> list[YearData]:
    """The sources' points, the same in every run: ``per_year`` random 512-d points a year."""
    rng = np.random.default_rng(11)
    data = []
    for year in YEARS:
        ids: list[int] = []
        chunks, payloads = [], []
        for start in range(0, per_year, SEED_BATCH):
            count = min(SEED_BATCH, per_year - start)
            chunks.append(rng.normal(size=(count, DIM)).astype(np.float32))
            ids += [year * 1_000_000 + start + i for i in range(count)]
            payloads += [{"year": year, "album_id": f"family-{i % 7}"} for i in range(count)]
        data.append(YearData(year, ids, np.concatenate(chunks), payloads))
    return data


def _seed(client: QdrantClient, data: list[YearData], prefix: str, shards: int | None
          ) -> list[str]:
    names = []
    for year in data:
        name = f"{prefix}album_{year.year}"
        _create(client, name, shards=shards)
        for start in range(0, len(year.ids), SEED_BATCH):
            client.upsert(name, year.points(start, min(start + SEED_BATCH, len(year.ids))))
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


def _create(client: QdrantClient, name: str, bulk_load: bool = False,
            shards: int | None = None) -> None:
    client.create_collection(name, vectors_config=qm.VectorParams(
        size=DIM, distance=qm.Distance.COSINE),
        hnsw_config=qm.HnswConfigDiff(m=0) if bulk_load else None, shard_number=shards)


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


def operator_copy(engine: QdrantEngine, sources: list[str], target: str, batch_size: int,
                  parallelism: int) -> None:
    """The reconciler's copy: a ``ContinuousCopy`` planned as ``_copy_plan`` plans it, the
    sources cut into ranges by the planning scan (timed with the copy here; the operator
    scans in its Planning phase)."""
    parallel = engine.capabilities.parallel_writes
    streams = parallelism if parallel else 1
    reader = SourceReader(engine)
    every = copy_range_points(sum(reader.count(s) for s in sources), streams,
                              batch_size * PAGES_PER_CHUNK)
    _, ranges = scan_sources(reader, sources, every)
    plan = CopyPlan(target=target, batch_size=batch_size, streams=streams,
                    upserts_per_stream=UPSERTS_PER_STREAM if parallel else 1,
                    deferred_writes=parallel, parts=whole_parts(ranges))
    copy = ContinuousCopy(engine, plan).start()
    while copy.running:
        time.sleep(0.01)
    if copy.error is not None:
        raise copy.error


def ceiling_upsert(engine: QdrantEngine, data: list[YearData], target: str, batch_size: int,
                   parallelism: int) -> None:
    """The same points straight from memory, ``batch_size`` a request, ``parallelism``
    requests in flight: what the server takes when nothing has to be read first."""
    def upsert(year: YearData, start: int) -> None:
        points = year.points(start, min(start + batch_size, len(year.ids)))
        engine.call(lambda c: c.upsert(target, points, wait=True))

    batches = [(year, start) for year in data for start in range(0, len(year.ids), batch_size)]
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        list(pool.map(lambda batch: upsert(*batch), batches))


def grpc_ceiling_upsert(engine: QdrantEngine, data: list[YearData], target: str,
                        batch_size: int, parallelism: int) -> None:
    """``ceiling_upsert`` over gRPC: the points built as protobuf messages from memory and
    upserted raw, ``parallelism`` requests in flight, each waited for."""
    transport = GrpcTransport(engine)

    def upsert(year: YearData, start: int) -> None:
        transport.write(target, year.grpc_points(start, min(start + batch_size,
                                                            len(year.ids))), True)

    batches = [(year, start) for year in data for start in range(0, len(year.ids), batch_size)]
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        list(pool.map(lambda batch: upsert(*batch), batches))


DROP_TIMEOUT_S = 600.0


def _drop(engine: QdrantEngine, name: str) -> None:
    """Deletes a target; a server still optimising a large one can take longer than one
    request's timeout to let it go, so a timed-out delete is repeated until it is gone."""
    deadline = time.monotonic() + DROP_TIMEOUT_S
    while True:
        try:
            engine.call(lambda client: client.delete_collection(name))
            return
        except QdrantError:
            if time.monotonic() > deadline:
                raise
            print(f"deleting {name} timed out; trying again", flush=True)
        with contextlib.suppress(QdrantError):
            if not engine.call(lambda client: client.collection_exists(name)):
                return


def _count(engine: QdrantEngine, name: str) -> int:
    return engine.call(lambda c: c.count(name, exact=True).count)


def run_size(engine: QdrantEngine, per_year: int, batch_size: int, parallelism: int,
             prefix: str, server: bench_server.Server | None = None) -> dict[str, object]:
    """One size on one engine. With ``server`` (the engine is that server) the ceiling runs
    too, every pass starts on green collections, and the server's memory is reported."""
    data = _generate(per_year)
    shards = server.shard_number if server is not None else None
    sources = engine.call(lambda c: _seed(c, data, prefix, shards))
    if server is None:
        del data  # the embedded half holds no copy of the points while it is measured
    total = per_year * len(YEARS)
    targets = {"naive": f"{prefix}naive_master", "mastermerge": f"{prefix}album_master_v1",
               "ceiling": f"{prefix}ceiling_master",
               "grpc_ceiling": f"{prefix}grpc_ceiling_master"}
    bulk_load = engine.capabilities.applies_hnsw  # as MasterMerge creates its master
    engine.call(lambda c: _create(c, targets["naive"], shards=shards))
    engine.call(lambda c: _create(c, targets["mastermerge"], bulk_load, shards))

    copiers: dict[str, Callable[[], None]] = {
        "naive": lambda: engine.call(lambda c: naive_loop(c, targets["naive"], sources)),
        "mastermerge": lambda: operator_copy(engine, sources, targets["mastermerge"],
                                             batch_size, parallelism),
    }
    if server is not None:
        engine.call(lambda c: _create(c, targets["ceiling"], bulk_load, shards))
        copiers["ceiling"] = lambda: ceiling_upsert(engine, data, targets["ceiling"],
                                                    batch_size, parallelism)
    if server is not None and engine.points_stub() is not None:
        engine.call(lambda c: _create(c, targets["grpc_ceiling"], bulk_load, shards))
        copiers["grpc_ceiling"] = lambda: grpc_ceiling_upsert(
            engine, data, targets["grpc_ceiling"], batch_size, parallelism)
    else:
        del targets["grpc_ceiling"]
    order = [*copiers, *reversed(copiers)]
    print(f"copying {total} points: {len(order)} timed passes "
          f"({'-'.join('ABCD'[list(copiers).index(c)] for c in order)}), then 2 traced ...",
          flush=True)
    runs: dict[str, list[Run]] = {name: [] for name in copiers}
    waited = 0.0
    for name in order:
        if server is not None:
            waited += engine.call(lambda c: bench_server.wait_green(c, list(targets.values())))
        runs[name].append(_timed(copiers[name], partial(_count, engine, targets[name])))
    if server is not None:
        engine.call(lambda c: bench_server.wait_green(c, list(targets.values())))
    naive_inflight = _inflight_mb(copiers["naive"])
    merged_inflight = _inflight_mb(copiers["mastermerge"])
    for name in (targets[c] for c in copiers):
        _drop(engine, name)
    operator = None if server is None else merge_operator.measure(
        server, sources, total, DIM, batch_size, parallelism)
    for name in sources:
        _drop(engine, name)
    counts = {name: [run.points for run in got] for name, got in runs.items()}
    assert all(c == [total, total] for c in counts.values()), (counts, total)
    rates = {name: _rate(*got) for name, got in runs.items()}
    result: dict[str, object] = {
        "points": total,
        "naive_points_per_s": round(rates["naive"]),
        "mastermerge_points_per_s": round(rates["mastermerge"]),
        "ratio": round(rates["mastermerge"] / rates["naive"], 2),
    }
    if operator is not None:
        result |= operator.fields | {
            "operator_over_naive": round(operator.points_per_s / rates["naive"], 2),
            "operator_over_ceiling": round(operator.points_per_s / rates["ceiling"], 2)}
    if server is not None:
        result |= _ceiling_fields(rates, operator) | {
            "seconds_waiting_for_green": round(waited, 1)}
    result |= {"naive_inflight_mb": round(naive_inflight, 1),
               "mastermerge_inflight_mb": round(merged_inflight, 1)}
    if server is not None:
        result |= server.memory_mb()
    return result


def _ceiling_fields(rates: dict[str, float], operator: merge_operator.OperatorRun | None
                    ) -> dict[str, object]:
    fields: dict[str, object] = {
        "ceiling_points_per_s": round(rates["ceiling"]),
        "mastermerge_over_ceiling": round(rates["mastermerge"] / rates["ceiling"], 2),
        "naive_over_ceiling": round(rates["naive"] / rates["ceiling"], 2),
        "copy_transport": "grpc" if "grpc_ceiling" in rates else "rest"}
    if "grpc_ceiling" in rates:
        fields |= {
            "grpc_ceiling_points_per_s": round(rates["grpc_ceiling"]),
            "mastermerge_over_grpc_ceiling": round(rates["mastermerge"] / rates["grpc_ceiling"],
                                                   2)}
        if operator is not None:
            fields["operator_over_grpc_ceiling"] = round(
                operator.points_per_s / rates["grpc_ceiling"], 2)
    return fields


def _summary(result: dict[str, object]) -> str:
    line = (f"{result['engine']}, {result['points']:,} points: naive "
            f"{result['naive_points_per_s']:,} points/s, MasterMerge "
            f"{result['mastermerge_points_per_s']:,} points/s = {result['ratio']}x naive")
    if "ceiling_points_per_s" in result:
        line += (f"; upsert ceiling {result['ceiling_points_per_s']:,} points/s, MasterMerge "
                 f"at {result['mastermerge_over_ceiling']}x of it (naive "
                 f"{result['naive_over_ceiling']}x)")
    if "grpc_ceiling_points_per_s" in result:
        line += (f"; gRPC upsert ceiling {result['grpc_ceiling_points_per_s']:,} points/s, "
                 f"MasterMerge at {result['mastermerge_over_grpc_ceiling']}x of it")
    line += (f"; in-flight MB naive {result['naive_inflight_mb']}, MasterMerge "
             f"{result['mastermerge_inflight_mb']}")
    if "operator_points_per_s" in result:
        line += (f"; the operator process (Copying to Indexing, from its status): "
                 f"{result['operator_points_per_s']:,} points/s = "
                 f"{result['operator_over_naive']}x naive, {result['operator_over_ceiling']}x "
                 f"the ceiling ({result.get('operator_over_grpc_ceiling', '-')}x the gRPC one), "
                 f"catch-up {result.get('operator_catch_up_seconds', '-')}s, "
                 f"Succeeded after {result['operator_seconds_to_succeeded']}s, "
                 f"operator peak RSS {result['operator_peak_rss_mb']} MB")
    if "server_peak_rss_mb" in result:
        line += f"; server peak RSS {result['server_peak_rss_mb']} MB"
    return line


def _run_on(engine: QdrantEngine, label: str, sizes: list[int], batch_size: int,
            parallelism: int, prefix: str, server: bench_server.Server | None = None
            ) -> list[dict[str, object]]:
    ceiling = " vs the server's upsert ceiling" if server is not None else ""
    print(f"== merge on {label}: naive loop vs MasterMerge copy{ceiling}, {len(YEARS)} "
          f"sources of 512-d points, MasterMerge batch {batch_size}, parallelism "
          f"{parallelism}", flush=True)
    results = []
    for per_year in sizes:
        print(f"seeding {per_year * len(YEARS)} points ...", flush=True)
        result = {"engine": label, **run_size(engine, per_year, batch_size, parallelism,
                                              prefix, server)}
        print(_summary(result), flush=True)
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def run(sizes: list[int], batch_size: int, parallelism: int = 4,
        server_sizes: list[int] | None = None,
        engines: tuple[str, ...] = bench_server.ENGINES, peers: int = 1
        ) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    if "embedded" in engines:
        workdir = Path(tempfile.mkdtemp(prefix="bench-merge-"))
        engine = open_engine(ConnectionSettings(embedded_path=str(workdir / "engine")))
        try:
            results += _run_on(engine, "embedded engine (on disk)", sizes, batch_size, 1, "")
        finally:
            engine.close()
            shutil.rmtree(workdir, ignore_errors=True)
    if "server" not in engines:
        return results
    with bench_server.qdrant("merge", peers=peers) as server:
        if server is None:
            bench_server.skipped("merge")
            return results
        engine = open_engine(server.settings())
        label = (f"Qdrant cluster of {peers} peers, {server.shard_number} shards"
                 if peers > 1 else "Qdrant server")
        try:
            print(server.describe(), flush=True)
            results += _run_on(engine, label, server_sizes or sizes, batch_size,
                               parallelism, "bench_", server)
        finally:
            engine.close()
    return results
