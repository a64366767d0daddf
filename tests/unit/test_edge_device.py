"""The device against a fake endpoint serving REAL snapshots of a real qdrant-edge-py shard:
init, pull (partial, 304, corrupt, broken), the two-shard query, state and recovery."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from qdrant_edge import Point

from album_operator.edge import shards
from album_operator.edge.client import EndpointClient
from album_operator.edge.device import EdgeDevice
from album_operator.edge.errors import ChecksumMismatch, DeviceError, EndpointError
from album_operator.edge.points import EdgePoint, Hit
from tests.edge_fake_endpoint import FakeEndpoint, SourceShard, scroll_all

DIM = 32
POINTS = 2000


@dataclass
class World:
    source: SourceShard
    fake: FakeEndpoint
    device: EdgeDevice
    rng: random.Random

    def vector(self) -> list[float]:
        return [self.rng.uniform(-1, 1) for _ in range(DIM)]

    def client(self, token: str | None = None) -> EndpointClient:
        return EndpointClient(self.fake.url, self.fake.namespace, self.fake.policy,
                              token or self.fake.token)


def make_world(root: Path, vector_name: str = "", distance: str = "Cosine") -> World:
    rng = random.Random(20261101)
    source = SourceShard(root, dim=DIM, vector_name=vector_name, distance=distance)
    source.change(source.random_points(range(POINTS), rng))
    fake = FakeEndpoint(root, source).start()
    fake.publish()
    client = EndpointClient(fake.url, fake.namespace, fake.policy, fake.token)
    return World(source, fake, EdgeDevice(root / "device", client), rng)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = make_world(tmp_path)
    yield built
    built.device.close()
    built.fake.stop()


def _ids_scores(hits: Sequence[Hit]) -> list[tuple[object, float]]:
    return [(hit.id, round(hit.score, 5)) for hit in hits]


def _one_percent_change(world: World) -> None:
    ids = world.rng.sample(range(POINTS), 40)
    updated = world.source.random_points(ids[:10], world.rng, tag="v2")
    added = world.source.random_points(range(POINTS, POINTS + 10), world.rng, tag="new")
    world.source.change(upserts=updated + added, deletes=ids[10:30])
    world.fake.publish()


def test_init_gives_the_source_shards_answers(world: World) -> None:
    result = world.device.init()
    assert result.points == POINTS
    assert result.snapshot == world.fake.snapshot_name
    for _ in range(5):
        query = world.vector()
        assert _ids_scores(world.device.query(query, 10)) == world.source.search(query, 10)
    state = world.device.state()
    assert state.snapshot == result.snapshot
    assert state.policy == "phones"
    assert (world.device.dir / "local").is_dir()
    assert os.listdir(world.device.tmp_dir) == []
    world.device.close()
    assert scroll_all(world.device.mirror_dir) == world.source.everything()


def test_pull_after_a_one_percent_change_brings_the_mirror_to_equality(world: World) -> None:
    world.device.init()
    _one_percent_change(world)
    result = world.device.pull()
    assert result.changed
    assert result.snapshot == world.fake.snapshot_name
    assert result.points == POINTS - 20 + 10
    assert result.full_size_bytes is not None
    assert result.size_bytes > 0
    for _ in range(5):
        query = world.vector()
        assert _ids_scores(world.device.query(query, 10)) == world.source.search(query, 10)
    assert world.device.status().shard_version == world.fake.snapshot_name
    world.device.close()
    assert scroll_all(world.device.mirror_dir) == world.source.everything()
    # a second round of changes applies on top of the first
    _one_percent_change(world)
    assert world.device.pull().changed
    world.device.close()
    assert scroll_all(world.device.mirror_dir) == world.source.everything()
    du = sum(f.stat().st_blocks * 512 for f in world.device.mirror_dir.rglob("*") if f.is_file())
    assert du < 16 * 2**20, "the mirror's preallocated files stay sparse after a partial"


def test_a_304_changes_nothing(world: World) -> None:
    world.device.init()
    inode = world.device.mirror_dir.stat().st_ino
    before = world.device.state()
    result = world.device.pull()
    assert not result.changed
    assert result.snapshot == before.snapshot
    assert world.device.mirror_dir.stat().st_ino == inode
    assert world.fake.requests["POST /shards/0/partial"] == 1
    assert world.device.state().last_pull == "unchanged"


def test_a_corrupt_partial_is_refused_and_the_old_mirror_still_answers(world: World) -> None:
    world.device.init()
    queries = [world.vector() for _ in range(3)]
    answers = [_ids_scores(world.device.query(q, 10)) for q in queries]
    old_name = world.device.state().snapshot
    _one_percent_change(world)
    world.fake.corrupt_downloads = True
    with pytest.raises(ChecksumMismatch):
        world.device.pull()
    assert [_ids_scores(world.device.query(q, 10)) for q in queries] == answers
    assert world.device.state().snapshot == old_name
    assert world.device.status().last_pull_error is not None
    assert os.listdir(world.device.tmp_dir) == []
    world.fake.corrupt_downloads = False
    assert world.device.pull().changed
    assert world.device.status().last_pull_error is None
    assert _ids_scores(world.device.query(queries[0], 10)) == world.source.search(queries[0], 10)


def test_a_partial_that_does_not_apply_keeps_the_old_mirror(world: World) -> None:
    world.device.init()
    query = world.vector()
    answer = _ids_scores(world.device.query(query, 10))
    _one_percent_change(world)
    world.fake.garbage_partials = True
    with pytest.raises(DeviceError, match="does not apply"):
        world.device.pull()
    assert _ids_scores(world.device.query(query, 10)) == answer
    assert os.listdir(world.device.tmp_dir) == []


def test_a_corrupt_full_snapshot_leaves_no_half_made_shard(world: World) -> None:
    world.fake.corrupt_downloads = True
    with pytest.raises(ChecksumMismatch):
        world.device.init()
    assert not world.device.mirror_dir.exists()
    assert not world.device.local_dir.exists()
    assert not world.device.state_path.exists()
    assert os.listdir(world.device.tmp_dir) == []
    with pytest.raises(DeviceError, match="not initialised"):
        world.device.query(world.vector(), 3)
    # an existing mirror survives a corrupt re-init
    world.fake.corrupt_downloads = False
    world.device.init()
    query = world.vector()
    answer = _ids_scores(world.device.query(query, 5))
    world.fake.corrupt_downloads = True
    with pytest.raises(ChecksumMismatch):
        world.device.init()
    assert _ids_scores(world.device.query(query, 5)) == answer


def test_a_local_point_shadows_the_mirrors_point_with_the_same_id(world: World) -> None:
    world.device.init()
    query = world.vector()
    top = world.device.query(query, 5)
    winner = top[0].id
    # the local version of the mirror's best hit points the other way: it must vanish
    world.device.upsert([{"id": winner, "vector": [-v for v in query],
                          "payload": {"mine": True}}])
    hits = world.device.query(query, 5)
    assert winner not in [hit.id for hit in hits]
    assert [hit.id for hit in hits] == [hit.id for hit in top[1:]] + [hits[-1].id]
    # a new local point close to the query comes first, marked local
    world.device.upsert([{"id": 10**9, "vector": query, "payload": {"mine": True}}])
    first = world.device.query(query, 5)[0]
    assert (first.id, first.source, first.payload) == (10**9, "local", {"mine": True})
    assert first.score == pytest.approx(1.0, abs=1e-5)
    # both writes wait in the queue
    assert world.device.status().queue_depth == 2


def _source_point(point: EdgePoint, payload: dict[str, Any] | None = None) -> Point:
    vector: Any = point.vector
    return Point(point.id, vector, point.payload if payload is None else payload)


def test_a_pull_retires_local_points_the_server_took_and_the_mirror_now_holds(
        world: World) -> None:
    world.device.init()
    query = world.vector()
    winner = world.device.query(query, 1)[0].id
    mine = {"mine": True}
    returned = EdgePoint(10**9, query, mine)
    edited = EdgePoint(winner, [-v for v in query], mine)
    overtaken = EdgePoint(10**9 + 1, world.vector(), mine)
    refused = EdgePoint(10**9 + 2, world.vector(), mine)
    unsent = EdgePoint(10**9 + 3, world.vector(), mine)
    world.fake.reject = {str(refused.id): "no"}
    world.device.upsert([returned, edited, overtaken, refused])
    assert world.device.push(sleep=lambda _s: None).accepted == 3
    world.device.upsert([unsent])
    # The server applied what it accepted, except that someone else has since changed one.
    # The refused and the unsent points reach the mirror too (written there by others):
    # only the queue keeps those local copies.
    world.source.change(upserts=[
        *(_source_point(p) for p in (returned, edited, refused, unsent)),
        _source_point(overtaken, {"someone": "else"})])
    world.fake.publish()

    result = world.device.pull()

    assert result.retired_local_points == 2
    assert result.to_json()["retiredLocalPoints"] == 2
    everything = [returned, edited, overtaken, refused, unsent]
    assert shards.present_ids(world.device._open_local(), [p.id for p in everything]) == {
        overtaken.key, refused.key, unsent.key}
    hits = world.device.query(query, 2)
    assert (hits[0].id, hits[0].source, hits[0].payload) == (returned.id, "mirror", mine), \
        "answered the same, now from the mirror"
    assert winner not in [hit.id for hit in hits], "the edit still stands"
    assert world.device.pull().retired_local_points == 0  # 304: nothing retried


def test_upsert_refuses_points_that_do_not_fit_before_writing_anything(world: World) -> None:
    world.device.init()
    with pytest.raises(DeviceError, match="dimensions"):
        world.device.upsert([{"id": 1, "vector": world.vector()},
                             {"id": 2, "vector": [1.0, 2.0]}])
    assert world.device.status().queue_depth == 0
    with pytest.raises(DeviceError, match="dimensions"):
        world.device.query([1.0], 3)


def test_named_vectors_and_distances_lower_is_better(tmp_path: Path) -> None:
    world = make_world(tmp_path, vector_name="image", distance="Euclid")
    try:
        world.device.init()
        query = world.vector()
        assert _ids_scores(world.device.query(query, 5)) == world.source.search(query, 5)
        world.device.upsert([{"id": "00000000-0000-0000-0000-00000000000A",
                              "vector": {"image": query}}])
        hits = world.device.query(query, 3, using="image")
        assert hits[0].id == "00000000-0000-0000-0000-00000000000a"
        assert hits[0].source == "local"
        assert hits[0].score == pytest.approx(0.0, abs=1e-5)
        assert hits[1].score <= hits[2].score
        with pytest.raises(DeviceError, match="unnamed"):
            world.device.upsert([{"id": 1, "vector": query}])
    finally:
        world.device.close()
        world.fake.stop()


def test_an_interrupted_swap_is_recovered(world: World) -> None:
    world.device.init()
    query = world.vector()
    answer = _ids_scores(world.device.query(query, 5))
    world.device.close()
    mirror = world.device.mirror_dir
    os.rename(mirror, mirror.with_name("mirror.old"))  # crash between the two renames
    device = EdgeDevice(world.device.dir, world.client())
    assert _ids_scores(device.query(query, 5)) == answer
    assert not mirror.with_name("mirror.old").exists()
    device.close()


def test_a_directory_of_another_policy_or_shard_is_refused(world: World) -> None:
    world.device.init()
    other = EndpointClient(world.fake.url, world.fake.namespace, "tablets", world.fake.token)
    with pytest.raises(DeviceError, match="another --dir"):
        EdgeDevice(world.device.dir, other)
    with pytest.raises(DeviceError, match="shard 0, not shard 1"):
        EdgeDevice(world.device.dir, world.client(), shard=1)


def test_auth_errors_are_permanent_and_never_show_the_token(world: World) -> None:
    secret = "s3cret-token-of-the-device"
    device = EdgeDevice(world.device.dir, world.client(secret))
    with pytest.raises(EndpointError) as caught:
        device.init()
    assert caught.value.status == 401
    assert secret not in str(caught.value)
    world.fake.other_tokens.add(secret)
    with pytest.raises(EndpointError) as caught:
        device.init()
    assert caught.value.status == 403
    assert secret not in str(caught.value)
