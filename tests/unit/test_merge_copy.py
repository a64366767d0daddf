"""The merge's Qdrant side on a real engine (in memory, or the test server): copy, the
continuous copy, resume, read-only sources, alias."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.qdrant import copier
from album_operator.adapters.qdrant.connection import QdrantEngine, QdrantError
from album_operator.adapters.qdrant.copier import (
    ContinuousCopy,
    CopyPart,
    CopyPlan,
    CopyRegistry,
    SourceCheckpoint,
    whole_parts,
)
from album_operator.adapters.qdrant.merge import (
    SourceReader,
    alias_target,
    copy_step,
    decode_offset,
    encode_offset,
    scan_sources,
    swap_alias,
)
from album_operator.core.vectors import vectors_match
from tests.conftest import ENGINES, engine_under_test

DIM = 16
SOURCES = {"album_2017": range(0, 250), "album_2018": range(1000, 1130)}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[QdrantEngine]:
    """A real engine (in memory, or the test server) holding two sources and two empty
    masters."""
    made = {*SOURCES, "master_v1", "master_v2"}
    with engine_under_test(request, made.__contains__, aliases=("album_master",)) as engine:
        rng = np.random.default_rng(1)

        def seed(client: QdrantClient) -> None:
            for name, ids in SOURCES.items():
                client.create_collection(name, vectors_config=qm.VectorParams(
                    size=DIM, distance=qm.Distance.COSINE))
                client.upsert(name, [qm.PointStruct(id=i, vector=rng.normal(size=DIM).tolist(),
                                                    payload={"year": name[-4:], "n": i})
                                     for i in ids])
            for master in ("master_v1", "master_v2"):
                client.create_collection(master, vectors_config=qm.VectorParams(
                    size=DIM, distance=qm.Distance.COSINE))

        engine.call(seed)
        yield engine


def checksum(engine: QdrantEngine, collection: str) -> str:
    records = engine.call(lambda c: c.scroll(collection, limit=10_000, with_payload=True,
                                             with_vectors=True)[0])
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: str(r.id)):
        vector = np.asarray(record.vector, dtype=np.float64)
        vector /= np.linalg.norm(vector)
        digest.update(json.dumps([record.id, record.payload,
                                  np.round(vector, 5).tolist()], sort_keys=True).encode())
    return digest.hexdigest()


def copy_all(reader: SourceReader, engine: QdrantEngine, target: str,
             crash_after_steps: int | None = None, parallelism: int = 1, by_id: bool = False
             ) -> dict[str, str | None]:
    """Copies every source in steps of 3 pages; returns the checkpoints of an early stop."""
    checkpoints: dict[str, str | None] = {}
    steps = 0
    for source in SOURCES:
        offset = None
        while True:
            progress = copy_step(reader, engine, source, target, offset, batch_size=32,
                                 max_batches=3, parallelism=parallelism, by_id=by_id)
            offset = progress.next_offset
            checkpoints[source] = encode_offset(offset)
            steps += 1
            if progress.done:
                break
            if crash_after_steps is not None and steps >= crash_after_steps:
                return checkpoints
    return checkpoints


@pytest.mark.parametrize(("parallelism", "by_id"), [(1, False), (4, False), (4, True)])
def test_copy_preserves_ids_payloads_and_vectors_and_leaves_sources_unchanged(
        engine: QdrantEngine, parallelism: int, by_id: bool) -> None:
    before = {name: checksum(engine, name) for name in SOURCES}
    reader = SourceReader(engine)
    copy_all(reader, engine, "master_v1", parallelism=parallelism, by_id=by_id)
    assert {name: checksum(engine, name) for name in SOURCES} == before
    master_ids = set(reader.ids("master_v1"))
    assert master_ids == {i for ids in SOURCES.values() for i in ids}
    sample = reader.retrieve("album_2018", [1000, 1077, 1129])
    copied = {r.id: r for r in reader.retrieve("master_v1", [1000, 1077, 1129])}
    for record in sample:
        assert copied[record.id].payload == record.payload
        assert vectors_match(copied[record.id].vector, record.vector,  # type: ignore[arg-type]
                             normalise=True)


@pytest.mark.parametrize(("parallelism", "by_id"), [(1, False), (3, False), (3, True)])
def test_a_copy_resumed_from_its_checkpoint_ends_with_exactly_the_union(
        engine: QdrantEngine, parallelism: int, by_id: bool) -> None:
    reader = SourceReader(engine)
    checkpoints = copy_all(reader, engine, "master_v1", crash_after_steps=2,
                           parallelism=parallelism, by_id=by_id)
    partial = reader.count("master_v1")
    assert 0 < partial < sum(len(ids) for ids in SOURCES.values())
    # Resume: the interrupted source continues from its checkpoint, the rest from the start.
    source = next(iter(SOURCES))
    offset = decode_offset(checkpoints[source])
    while True:
        progress = copy_step(reader, engine, source, "master_v1", offset, 32, 3)
        offset = progress.next_offset
        if progress.done:
            break
    for other in list(SOURCES)[1:]:
        offset = None
        while not (progress := copy_step(reader, engine, other, "master_v1", offset, 32,
                                         3)).done:
            offset = progress.next_offset
    assert reader.count("master_v1") == sum(len(ids) for ids in SOURCES.values())
    assert set(reader.ids("master_v1")) == {i for ids in SOURCES.values() for i in ids}


def test_a_failed_upsert_fails_the_step_so_its_checkpoint_is_never_recorded(
        engine: QdrantEngine) -> None:
    with pytest.raises(QdrantError):
        copy_step(SourceReader(engine), engine, "album_2017", "no_such_master", None, 32, 3,
                  parallelism=2)


def test_the_source_reader_cannot_write() -> None:
    writes = {"upsert", "delete", "create_collection", "delete_collection", "update_collection",
              "set_payload", "overwrite_payload", "update_vectors"}
    assert not writes & set(dir(SourceReader))
    assert not [name for name in vars(SourceReader) if "client" in name]


def test_the_alias_moves_in_one_request_and_can_move_back(engine: QdrantEngine) -> None:
    assert alias_target(engine, "album_master") is None
    swap_alias(engine, "album_master", "master_v1")
    assert alias_target(engine, "album_master") == "master_v1"
    swap_alias(engine, "album_master", "master_v2")
    assert alias_target(engine, "album_master") == "master_v2"
    aliases = engine.call(lambda c: c.get_aliases().aliases)
    # one alias of that name, pointing at the new master (a shared server has others' too)
    assert [a.collection_name for a in aliases if a.alias_name == "album_master"] == [
        "master_v2"]
    swap_alias(engine, "album_master", "master_v1")
    assert alias_target(engine, "album_master") == "master_v1"


def test_a_swap_to_a_missing_collection_leaves_the_alias_where_it_was(
        engine: QdrantEngine) -> None:
    swap_alias(engine, "album_master", "master_v1")
    with pytest.raises(Exception):  # noqa: B017, PT011 - the engine's own error type
        swap_alias(engine, "album_master", "master_v9")
    assert alias_target(engine, "album_master") == "master_v1"


def test_offsets_round_trip_through_status() -> None:
    for offset in (None, 0, 123456789, "6f1c2f8e-3b1a-4f0e-9a57-0c3c9a3b2f11"):
        assert decode_offset(encode_offset(offset)) == offset


# The continuous copy: the background threads a MasterMerge build copies with.

TOTAL = sum(len(ids) for ids in SOURCES.values())


def plan(target: str, parts: dict[CopyPart, SourceCheckpoint] | None = None,
         streams: int = 2) -> CopyPlan:
    return CopyPlan(target=target, batch_size=16, streams=streams, upserts_per_stream=2,
                    parts=parts or {CopyPart(s): SourceCheckpoint(0, None, False)
                                    for s in SOURCES})


def ranged(engine: QdrantEngine, every: int) -> dict[CopyPart, SourceCheckpoint]:
    """Every source cut into ranges of ``every`` points, as a build plans its copy."""
    _, ranges = scan_sources(SourceReader(engine), list(SOURCES), every)
    return whole_parts(ranges)


def finish(copy: ContinuousCopy, timeout: float = 60.0) -> ContinuousCopy:
    deadline = time.monotonic() + timeout
    while copy.running:
        assert time.monotonic() < deadline, "the copy did not end"
        time.sleep(0.01)
    return copy


def count(engine: QdrantEngine, name: str) -> int:
    return engine.call(lambda c: c.count(name, exact=True).count)


def parallel(engine: QdrantEngine) -> int:
    return 2 if engine.capabilities.parallel_writes else 1


def test_a_copy_writes_every_point_of_every_source(engine: QdrantEngine) -> None:
    copy = finish(ContinuousCopy(engine, plan("master_v1", streams=parallel(engine))).start())
    assert copy.error is None
    assert copy.done
    assert copy.checkpoint() == {CopyPart(name): SourceCheckpoint(len(ids), None, True)
                                 for name, ids in SOURCES.items()}
    assert count(engine, "master_v1") == TOTAL


def test_ranges_are_copied_side_by_side_each_point_by_exactly_one_range(
        engine: QdrantEngine) -> None:
    parts = ranged(engine, every=60)
    assert [(p.source, p.number) for p in parts][:5] == [
        ("album_2017", 0), ("album_2017", 1), ("album_2017", 2), ("album_2017", 3),
        ("album_2017", 4)]
    assert [(c.next_offset, c.until, c.expected) for c in parts.values()] == [
        (None, 60, 60), (60, 120, 60), (120, 180, 60), (180, 240, 60), (240, None, 10),
        (None, 1060, 60), (1060, 1120, 60), (1120, None, 10)]
    copy = finish(ContinuousCopy(engine, plan("master_v1", parts, parallel(engine))).start())
    assert copy.error is None
    assert [point.copied for point in copy.checkpoint().values()] == [
        c.expected for c in parts.values()], "no range copies a point of another"
    assert count(engine, "master_v1") == TOTAL
    finish(ContinuousCopy(engine, plan("master_v2")).start())
    assert checksum(engine, "master_v1") == checksum(engine, "master_v2")


@pytest.mark.parametrize("by_id", [False, True])
def test_a_copy_step_stops_before_the_end_of_its_range(engine: QdrantEngine, by_id: bool
                                                       ) -> None:
    reader = SourceReader(engine)
    progress = copy_step(reader, engine, "album_2018", "master_v1", 1010, batch_size=16,
                         max_batches=100, parallelism=parallel(engine), until=1050,
                         by_id=by_id)
    assert (progress.copied, progress.next_offset, progress.done) == (40, None, True)
    assert set(reader.ids("master_v1")) == set(range(1010, 1050))
    progress = copy_step(reader, engine, "album_2018", "master_v1", 1050, batch_size=16,
                         max_batches=1, parallelism=parallel(engine), until=1055, by_id=by_id)
    assert (progress.copied, progress.done) == (5, True), "a page cut at the range's end"
    progress = copy_step(reader, engine, "album_2018", "master_v1", 1060, batch_size=16,
                         max_batches=2, parallelism=parallel(engine), until=1100, by_id=by_id)
    assert (progress.copied, progress.next_offset, progress.done) == (32, 1092, False), (
        "a step of two pages ends at the first ID of the next")


@pytest.mark.parametrize("every", [None, 45])
def test_a_stopped_copy_resumes_from_its_checkpoint_to_exactly_the_union(
        engine: QdrantEngine, monkeypatch: pytest.MonkeyPatch, every: int | None) -> None:
    monkeypatch.setattr(copier, "PAGES_PER_CHUNK", 1)
    first = ContinuousCopy(engine, plan("master_v1", ranged(engine, every) if every else None,
                                        streams=1))
    real_step = copy_step

    def step_then_stop(*args: Any, **kwargs: Any) -> Any:
        progress = real_step(*args, **kwargs)
        first.stop()  # asked mid-chunk: the chunk is checkpointed, then the thread ends
        return progress

    monkeypatch.setattr(f"{copier.__name__}.copy_step", step_then_stop)
    finish(first.start())
    monkeypatch.undo()
    stopped_at = first.checkpoint()
    assert not first.done
    assert 0 < sum(point.copied for point in stopped_at.values()) < TOTAL
    resumed = finish(ContinuousCopy(engine, plan("master_v1", stopped_at)).start())
    assert resumed.done
    assert resumed.error is None
    assert count(engine, "master_v1") == TOTAL
    finish(ContinuousCopy(engine, plan("master_v2")).start())
    assert checksum(engine, "master_v1") == checksum(engine, "master_v2")


def test_a_failure_is_kept_for_the_step_to_report(engine: QdrantEngine) -> None:
    copy = finish(ContinuousCopy(engine, plan("no_such_master")).start())
    assert copy.error is not None
    assert not copy.done
    assert not copy.running


def test_the_registry_replaces_and_stops_copies_by_build(engine: QdrantEngine) -> None:
    registry = CopyRegistry()
    first = registry.start("uid-1/master_v1", engine, plan("master_v1"))
    second = registry.start("uid-1/master_v1", engine, plan("master_v1"))
    assert registry.get("uid-1/master_v1") is second
    other = registry.start("uid-2/master_v2", engine, plan("master_v2"))
    registry.forget_prefix("uid-1/")
    assert registry.get("uid-1/master_v1") is None
    assert registry.get("uid-2/master_v2") is other
    registry.stop_all()
    assert registry.get("uid-2/master_v2") is None
    for copy in (first, second, other):
        finish(copy)


def test_a_deferred_copy_step_is_applied_when_it_returns(engine: QdrantEngine) -> None:
    """All but a step's last upsert are not waited for; the last one is the barrier."""
    reader, offset, copied = SourceReader(engine), None, 0
    while True:
        progress = copy_step(reader, engine, "album_2017", "master_v1", offset, batch_size=16,
                             max_batches=4, parallelism=3, deferred=True)
        copied += progress.copied
        assert count(engine, "master_v1") == copied
        offset = progress.next_offset
        if progress.done:
            break
    assert copied == len(SOURCES["album_2017"])


def test_a_throttled_copy_keeps_to_its_rate(engine: QdrantEngine) -> None:
    """A lower bound only: however fast the machine, the copy may not go faster."""
    throttled = CopyPlan(target="master_v1", batch_size=16, streams=2, upserts_per_stream=2,
                         parts={CopyPart(s): SourceCheckpoint(0, None, False)
                                for s in SOURCES},
                         max_points_per_second=1000)
    started = time.monotonic()
    copy = finish(ContinuousCopy(engine, throttled).start())
    assert copy.done
    assert count(engine, "master_v1") == TOTAL
    # the last page may go out as soon as the points before it have had their time
    assert time.monotonic() - started >= (TOTAL - 16) / 1000


@pytest.mark.parametrize("engine", ["server"], indirect=True)
def test_grpc_and_rest_copies_write_the_same_points(
        qdrant_server_target: Any, engine: QdrantEngine) -> None:
    """A server with a gRPC port copies over gRPC (protobuf end to end), one without over
    REST; both masters hold exactly the sources' points, named vectors and payloads."""
    from album_operator.adapters.qdrant.connection import ConnectionSettings, open_engine
    from album_operator.adapters.qdrant.grpccopy import GrpcTransport
    from album_operator.adapters.qdrant.merge import RestTransport, copy_transport

    if qdrant_server_target.grpc_port is None:
        pytest.skip("the test server has no gRPC port (set QDRANT_GRPC_PORT)")
    rest = open_engine(ConnectionSettings(url=qdrant_server_target.url,
                                          api_key=qdrant_server_target.api_key))
    try:
        assert isinstance(copy_transport(SourceReader(engine), engine), GrpcTransport)
        assert isinstance(copy_transport(SourceReader(rest), rest), RestTransport)
        for via, master in ((engine, "master_v1"), (rest, "master_v2")):
            copy_all(SourceReader(via), via, master, parallelism=3)
        expected = {i for ids in SOURCES.values() for i in ids}
        reader = SourceReader(engine)
        assert set(reader.ids("master_v1")) == set(reader.ids("master_v2")) == expected
        assert checksum(engine, "master_v1") == checksum(engine, "master_v2")
        union = [r for name in SOURCES for r in reader.retrieve(name, [0, 249, 1000, 1129])]
        copied = {r.id: r for r in reader.retrieve("master_v1", [0, 249, 1000, 1129])}
        for record in union:
            assert copied[record.id].payload == record.payload
            assert vectors_match(copied[record.id].vector, record.vector,  # type: ignore[arg-type]
                                 normalise=True)
    finally:
        rest.close()


@pytest.mark.parametrize("engine", ["server"], indirect=True)
def test_a_grpc_copy_keeps_named_sparse_vectors_and_uuid_ids(engine: QdrantEngine) -> None:
    from album_operator.adapters.qdrant.grpccopy import GrpcTransport

    if engine.points_stub() is None:
        pytest.skip("the test server has no gRPC port (set QDRANT_GRPC_PORT)")
    ids = ["0b5c0e6e-3f3c-4a59-9d0f-6c1f6f0d8a01", "ff000000-0000-4000-8000-000000000001"]

    def seed(client: QdrantClient) -> None:
        for name in ("master_v1", "master_v2"):
            client.delete_collection(name)
            client.create_collection(
                name, vectors_config={"image": qm.VectorParams(size=4,
                                                               distance=qm.Distance.DOT)},
                sparse_vectors_config={"tags": qm.SparseVectorParams()})
        client.upsert("master_v1", [qm.PointStruct(
            id=pid, vector={"image": [0.5, 1.0, 2.0, -1.0],
                            "tags": qm.SparseVector(indices=[3, 9], values=[0.25, 2.0])},
            payload={"nested": {"a": [1, "x", None]}, "n": 1.5}) for pid in ids])
    engine.call(seed)
    transport = GrpcTransport(engine)
    points, following = transport.page("master_v1", None, 10)
    assert following is None
    transport.write("master_v2", points, True)
    got = engine.call(lambda c: c.retrieve("master_v2", ids, with_vectors=True,
                                           with_payload=True))
    assert sorted(str(r.id) for r in got) == sorted(ids)
    for record in got:
        assert record.payload == {"nested": {"a": [1, "x", None]}, "n": 1.5}
        vectors = record.vector
        assert isinstance(vectors, dict)
        assert vectors["image"] == [0.5, 1.0, 2.0, -1.0]
        assert vectors["tags"] == qm.SparseVector(indices=[3, 9], values=[0.25, 2.0])
    first, following = transport.page("master_v1", None, 1)
    assert len(first) == 1
    assert following == max(ids)


@pytest.mark.parametrize("engine", ["server"], indirect=True)
def test_id_scans_over_grpc_and_rest_read_the_same_ids_in_scroll_order_page_after_page(
        qdrant_server_target: Any, engine: QdrantEngine, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    from album_operator.adapters.qdrant import merge
    from album_operator.adapters.qdrant.connection import ConnectionSettings, open_engine

    if engine.points_stub() is None:
        pytest.skip("the test server has no gRPC port (set QDRANT_GRPC_PORT)")
    uuids = ["0b5c0e6e-3f3c-4a59-9d0f-6c1f6f0d8a01", "ff000000-0000-4000-8000-000000000001"]
    engine.call(lambda c: c.upsert("master_v1", [
        qm.PointStruct(id=pid, vector=[1.0] * DIM) for pid in [*uuids, 7, 3, 900]]))
    monkeypatch.setattr(merge, "ID_PAGE_SIZE", 2)  # three pages, read ahead
    rest = open_engine(ConnectionSettings(url=qdrant_server_target.url,
                                          api_key=qdrant_server_target.api_key))
    try:
        scans = []
        for via in (engine, rest):
            with SourceReader(via).id_streams(["master_v1", "album_2018"]) as streams:
                scans.append({name: list(ids) for name, ids in streams})
    finally:
        rest.close()
    assert scans[0] == scans[1] == {"master_v1": [3, 7, 900, *uuids],
                                    "album_2018": list(SOURCES["album_2018"])}


@pytest.mark.parametrize(("batch_size", "step_points"), [(3, 5), (32, 1000), (7, 64)])
def test_catch_up_steps_repair_every_kind_of_difference_and_resume_between_steps(
        engine: QdrantEngine, batch_size: int, step_points: int) -> None:
    """The master lacks points, holds stale versions and holds points no source has (before,
    between and after the sources' IDs); steps of a few points each, resumed from the last
    settled ID, leave exactly the union."""
    from album_operator.adapters.qdrant.catchup import catch_up_step
    from album_operator.core.catchup import IdSet, PassTally

    copy_all(SourceReader(engine), engine, "master_v1", parallelism=2)

    def damage(client: QdrantClient) -> None:
        client.delete("master_v1", qm.PointIdsList(points=[0, 17, 249, 1000, 1129]))
        client.set_payload("master_v1", {"n": -1}, points=[5, 1064])
        client.upsert("master_v1", [qm.PointStruct(id=i, vector=[1.0] * DIM, payload={})
                                    for i in (500, 999, 5000, 9999)])
        client.update_vectors("master_v1", [qm.PointVectors(id=100, vector=[2.0] * DIM)])
    engine.call(damage)
    tally, after, steps = PassTally(), None, 0
    while True:
        progress = catch_up_step(engine, list(SOURCES), "master_v1", after, batch_size,
                                 frozenset({""}), step_points)
        tally, after, steps = tally.add(progress.tally), progress.after, steps + 1
        if progress.finished:
            break
    union = {i for ids in SOURCES.values() for i in ids}
    assert (tally.missing, tally.changed, tally.removed) == (5, 3, 4)
    assert tally.compared == len(union)
    assert tally.ids == IdSet().with_ids(union)
    assert steps >= len(union) // (step_points + batch_size), "resumed between steps"
    reader = SourceReader(engine)
    assert set(reader.ids("master_v1")) == union
    assert_holds_the_union(engine, "master_v1")
    again = catch_up_step(engine, list(SOURCES), "master_v1", None, batch_size,
                          frozenset({""}), 10_000)
    assert again.finished
    assert again.tally.repaired == 0, "a second pass finds nothing left to repair"


def assert_holds_the_union(engine: QdrantEngine, master: str) -> None:
    """Every source point is in ``master`` with its payload and, to float32 precision, its
    vector (the IDs of the sources do not collide)."""
    def everything(name: str) -> dict[Any, Any]:
        return {r.id: r for r in engine.call(lambda c: c.scroll(
            name, limit=10_000, with_payload=True, with_vectors=True)[0])}
    held = everything(master)
    for name in SOURCES:
        for pid, record in everything(name).items():
            assert held[pid].payload == record.payload, pid
            assert vectors_match(held[pid].vector, record.vector,
                                 normalise=True), pid


@pytest.mark.parametrize("engine", ["server"], indirect=True)
def test_sharded_collections_are_read_by_id_and_copied_and_caught_up_whole(
        qdrant_server_target: Any, engine: QdrantEngine, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """On a sharded server collection a page is a page of IDs and then those points (a whole
    scroll would read every shard's page); the pages are the scroll's own, and a continuous
    copy and a catch-up over sharded sources and master end with exactly the union."""
    from album_operator.adapters.qdrant import catchup
    from album_operator.adapters.qdrant.catchup import catch_up_step
    from album_operator.adapters.qdrant.connection import ConnectionSettings, open_engine
    from album_operator.adapters.qdrant.grpccopy import GrpcPoints

    def reshard(client: QdrantClient) -> None:
        for name in (*SOURCES, "master_v1"):
            records = client.scroll(name, limit=10_000, with_payload=True,
                                    with_vectors=True)[0]
            client.delete_collection(name)
            client.create_collection(name, shard_number=3, vectors_config=qm.VectorParams(
                size=DIM, distance=qm.Distance.COSINE))
            if records:
                client.upsert(name, [qm.PointStruct(id=r.id, vector=r.vector or [],
                                                    payload=r.payload) for r in records])
    engine.call(reshard)
    reader = SourceReader(engine)
    assert reader.read_by_id([*SOURCES, "master_v1", "master_v2"]) == {*SOURCES, "master_v1"}
    rest = open_engine(ConnectionSettings(url=qdrant_server_target.url,
                                          api_key=qdrant_server_target.api_key))
    try:
        for offset, limit in ((None, 32), (40, 100), (1100, 64)):
            source = "album_2017" if offset != 1100 else "album_2018"
            whole = reader.page(source, offset, limit)
            by_id = SourceReader(rest).page(source, offset, limit, by_id=True)
            assert [r.id for r in by_id.points] == [r.id for r in whole.points]
            assert by_id.next_offset == whole.next_offset
            assert [r.payload for r in by_id.points] == [r.payload for r in whole.points]
            if engine.points_stub() is not None:
                grpc_pages = [GrpcPoints(engine, read).page(source, offset, limit)
                              for read in (frozenset(), frozenset({source}))]
                assert grpc_pages[0] == grpc_pages[1]
    finally:
        rest.close()
    steps_by_id: list[bool] = []
    real_step, real_points = copy_step, catchup.catch_up_points

    def recording_step(*args: Any, **kwargs: Any) -> Any:
        steps_by_id.append(kwargs["by_id"])
        return real_step(*args, **kwargs)

    read_by_id: list[frozenset[str]] = []

    def recording_points(via: QdrantEngine, read: frozenset[str]) -> Any:
        read_by_id.append(read)
        return real_points(via, read)
    monkeypatch.setattr(copier, "copy_step", recording_step)
    monkeypatch.setattr(catchup, "catch_up_points", recording_points)
    copy = finish(ContinuousCopy(engine, plan("master_v1", ranged(engine, 45), 2)).start())
    assert copy.error is None
    assert steps_by_id, "the copy took steps"
    assert all(steps_by_id), "every copy step read its sharded source by ID"
    assert count(engine, "master_v1") == TOTAL
    assert_holds_the_union(engine, "master_v1")
    engine.call(lambda c: c.delete("master_v1", qm.PointIdsList(points=[0, 17, 1129])))
    engine.call(lambda c: c.set_payload("master_v1", {"n": -1}, points=[5]))
    progress = catch_up_step(engine, list(SOURCES), "master_v1", None, 16, frozenset({""}),
                             10_000)
    assert progress.finished
    assert read_by_id == [{*SOURCES, "master_v1"}], "the catch-up read them by ID"
    assert (progress.tally.missing, progress.tally.changed) == (3, 1)
    assert_holds_the_union(engine, "master_v1")
