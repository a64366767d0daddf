"""The Build source's publishing shard on real engines (qdrant-client's in-memory mode and
qdrant-edge-py): small changes stay unindexed in a small segment, enough of them get indexed,
and a device brought forward by a partial snapshot across that indexing holds the same points.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.edge import shardbuild
from album_operator.adapters.edge.store import PolicyStore
from album_operator.adapters.qdrant.connection import ConnectionSettings, QdrantEngine
from album_operator.core.edge import UNINDEXED_FLOOR, partial_files
from album_operator.core.engine import EMBEDDED
from tests.conftest import ENGINES, engine_under_test

DIM = 128
POINTS = 3_000
LAYOUT = {"": shardbuild.VectorLayout(DIM, "Cosine")}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[QdrantEngine]:
    """album_2025 with 3,000 points, in memory or on the test server."""
    with engine_under_test(request, "album_2025".__eq__) as engine:
        engine.call(lambda client: client.create_collection(
            "album_2025", vectors_config=qm.VectorParams(size=DIM,
                                                         distance=qm.Distance.COSINE)))
        upsert(engine, range(POINTS), seed=1)
        yield engine


def upsert(engine: QdrantEngine, ids: range, seed: int) -> None:
    vectors = np.random.default_rng(seed).normal(size=(len(ids), DIM))
    points = [qm.PointStruct(id=i, vector=v.tolist(), payload={"seed": seed})
              for i, v in zip(ids, vectors, strict=True)]
    engine.call(lambda client: client.upsert("album_2025", points))


def sync(engine: QdrantEngine, store: PolicyStore) -> shardbuild.SyncResult:
    return shardbuild.sync_shard(engine, "album_2025", store.work, LAYOUT, None, None)


def publish(store: PolicyStore, name: str) -> dict[str, Any]:
    manifest = shardbuild.manifest(store.work)
    store.publish(0, name, "album_2025", manifest, name, None)
    return manifest


Contents = dict[Any, tuple[Any, np.ndarray]]


def as_array(vector: Any) -> np.ndarray:
    return np.asarray(vector, dtype=np.float32)


def assert_same(device: Contents, collection: Contents) -> None:
    assert device.keys() == collection.keys()
    for point_id, (payload, vector) in collection.items():
        assert device[point_id][0] == payload, point_id
        assert np.allclose(device[point_id][1], vector, atol=1e-5), point_id


def contents(shard: qe.EdgeShard) -> Contents:
    found: Contents = {}
    offset: Any = None
    while True:
        records, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=1_000,
                                                        with_payload=True, with_vector=True))
        for record in records:
            found[record.id] = (record.payload, as_array(record.vector))
        if offset is None:
            return found


def in_collection(engine: QdrantEngine) -> Contents:
    records, _ = engine.call(lambda client: client.scroll(
        "album_2025", limit=10 * POINTS, with_payload=True, with_vectors=True))
    # The shard holds cosine vectors normalised, as the collection does.
    return {r.id: (r.payload, as_array(r.vector)) for r in records}


def test_changes_are_indexed_once_enough_pile_up_and_partials_carry_them(
        engine: QdrantEngine, tmp_path: Path) -> None:
    store = PolicyStore(tmp_path / "policy")
    first = sync(engine, store)
    assert (first.rebuilt, first.indexed, first.points) == (True, True, POINTS)
    device_manifest = publish(store, "first.tar")
    device_dir = tmp_path / "device"
    qe.EdgeShard.unpack_snapshot(str(store.path("first.tar")), str(device_dir))

    upsert(engine, range(POINTS, POINTS + 900), seed=2)  # below the floor
    small = sync(engine, store)
    assert (small.upserted, small.indexed) == (900, False)

    upsert(engine, range(0, 200), seed=3)  # edits pass the floor
    piled = sync(engine, store)
    total = POINTS + 900
    assert (piled.upserted, piled.indexed, piled.points) == (200, True, total)
    shard = qe.EdgeShard.load(str(store.work))
    info = shard.info()
    shard.close()
    assert info.indexed_vectors_count >= info.points_count == total

    unchanged = sync(engine, store)
    assert (unchanged.upserted, unchanged.indexed) == (0, False)

    manifest = publish(store, "second.tar")
    files = partial_files(manifest, device_manifest)
    assert files is not None
    assert set(manifest) & set(device_manifest), "the first build's indexed segment is kept"
    partial = store.partial(files, manifest)
    full_size = store.path("second.tar").stat().st_size
    assert partial.stat().st_size < full_size / 2, (partial.stat().st_size, full_size)
    device = qe.EdgeShard.load(str(device_dir))
    try:
        device.update_from_snapshot(str(partial))
        assert device.snapshot_manifest() == manifest
        assert_same(contents(device), in_collection(engine))
    finally:
        device.close()


def test_a_rebuilt_shard_forgets_what_was_pending(engine: QdrantEngine, tmp_path: Path
                                                  ) -> None:
    store = PolicyStore(tmp_path / "policy")
    sync(engine, store)
    upsert(engine, range(0, UNINDEXED_FLOOR - 1), seed=2)
    assert not sync(engine, store).indexed
    store.remove_all()
    assert sync(engine, store).rebuilt
    upsert(engine, range(0, 2), seed=3)
    assert not sync(engine, store).indexed, "the count started afresh with the new shard"


@pytest.mark.parametrize(("distance", "republished"), [
    (qm.Distance.DOT, 1),     # twice the vector scores twice as high: devices must get it
    (qm.Distance.COSINE, 0),  # the same direction: nothing to publish
])
def test_a_vector_scaled_in_place_is_republished_only_where_its_scale_counts(
        tmp_path: Path, distance: qm.Distance, republished: int) -> None:
    client = QdrantClient(location=":memory:")
    client.create_collection("album_2025", vectors_config=qm.VectorParams(
        size=4, distance=distance))
    engine = QdrantEngine(client, EMBEDDED, "memory", ConnectionSettings())
    layout = {"": shardbuild.VectorLayout(4, distance.value)}
    work = tmp_path / "shard"

    def write(scale: float) -> shardbuild.SyncResult:
        client.upsert("album_2025", [qm.PointStruct(id=7, vector=[scale * 0.5] * 4)])
        return shardbuild.sync_shard(engine, "album_2025", work, layout, None, None)

    assert write(1.0).upserted == 1
    assert write(2.0).upserted == republished
    shard = qe.EdgeShard.load(str(work))
    try:
        [stored] = shard.retrieve([7], False, True)
    finally:
        shard.close()
    expected = [1.0] * 4 if distance == qm.Distance.DOT else [0.5] * 4
    assert np.allclose(as_array(stored.vector), expected)
