"""One album-edge client suite, run against the tests' fake endpoint AND the real operator
endpoint (embedded engine and Qdrant server): init, 304, pull, push of good and bad points,
dead letters with the endpoint's reasons. Both sides judge points with the protocol's one
rule set, so the suite holds for both; if they drift, one side fails it.

Then, on the operator only: points that used to poison the collection (an ID of 2^64, an
infinite coordinate, a lone surrogate, a payload nested too deep) are rejected, and the
policy keeps publishing. And the endpoint's upsert: a batch Qdrant refuses is split down to
the refused points; an unreachable server is an outage, not a rejection."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from qdrant_client import models as qm

from album_operator.adapters.edge.endpoint import _upsert_routed
from album_operator.adapters.qdrant.connection import (
    ConnectionSettings,
    QdrantError,
    QdrantPool,
    open_engine,
)
from album_operator.core.edge import RoutedPoint
from album_operator.edge.client import EndpointClient
from album_operator.edge.device import EdgeDevice
from album_operator.edge.errors import DeviceError
from album_operator.edge.points import EdgePoint
from album_operator.edge.protocol import MAX_PAYLOAD_DEPTH
from album_operator.edge.queue import UploadQueue
from album_operator.models.edge_snapshot_policy import UploadSpec
from tests.edge_fake_endpoint import FakeEndpoint, SourceShard
from tests.helpers import Kubectl
from tests.integration.test_edge_snapshot_policy import (
    DIM,
    policy,
    post,
    prefix,
    seed_collection,
    token_secret,
    wait_snapshots,
)

pytestmark = pytest.mark.cluster
GOOD_YEAR, OTHER_LAYOUT_YEAR, REFUSED_YEAR = 2025, 2026, 1990
OTHER_DIM = 8  # the 2026 collection's vectors: a device's 2025-shaped point does not fit


@dataclass
class Side:
    """One endpoint the suite runs against, and how to look behind it."""

    name: str
    url: str
    namespace: str
    policy: str
    token: str
    dim: int
    stored: Callable[[list[Any]], dict[Any, dict[str, Any]]]
    """ID -> payload of the given IDs the endpoint has stored (the GOOD_YEAR collection)."""
    change_and_publish: Callable[[], None]

    def client(self) -> EndpointClient:
        return EndpointClient(self.url, self.namespace, self.policy, self.token,
                              timeout=(2.0, 60.0))


def _fake_side(tmp_path: Path) -> Iterator[Side]:
    dim = 16
    rng = random.Random(7)
    source = SourceShard(tmp_path, dim=dim)
    source.change(source.random_points(range(200), rng))
    fake = FakeEndpoint(tmp_path, source).start()
    fake.upload = UploadSpec.model_validate(
        {"routeBy": {"field": "year", "template": "album_{year}"}})
    fake.collections = {f"album_{GOOD_YEAR}": {"": dim},
                        f"album_{OTHER_LAYOUT_YEAR}": {"": OTHER_DIM}}
    fake.publish()

    def stored(ids: list[Any]) -> dict[Any, dict[str, Any]]:
        return {i: fake.points[str(i)].get("payload") or {} for i in ids
                if str(i) in fake.points}

    def change_and_publish() -> None:
        source.change(source.random_points(range(200, 210), rng, tag="v2"), deletes=[3])
        fake.publish()

    try:
        yield Side("fake", fake.url, fake.namespace, fake.policy, fake.token, dim, stored,
                   change_and_publish)
    finally:
        fake.stop()


def _operator_side(kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
                   edge_url: str) -> Side:
    collection = seed_collection(kubectl, namespace, qdrant)
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                   "metadata": {"name": "album-2026"},
                   "spec": {"year": OTHER_LAYOUT_YEAR,
                            "collectionName": f"{prefix(namespace)}_{OTHER_LAYOUT_YEAR}",
                            "vectors": {"size": OTHER_DIM, "distance": "Cosine"}}}, namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollection/album-2026",
                "--timeout=60s", namespace=namespace)
    token = f"device-{namespace}"
    kubectl.apply(token_secret("kiosk-token", token), namespace)
    kubectl.apply(policy("edge", collection, "kiosk-token", upload={
        "routeBy": {"field": "year", "template": f"{prefix(namespace)}_{{year}}"}}),
        namespace)
    newest = wait_snapshots(kubectl, namespace, "edge", 1)["status"]["snapshots"][0]["name"]
    runs = iter(range(1, 100))

    def stored(ids: list[Any]) -> dict[Any, dict[str, Any]]:
        records = qdrant(lambda c: c.retrieve(collection, ids, with_payload=True))
        return {r.id: r.payload or {} for r in records}

    def change_and_publish() -> None:
        nonlocal newest
        rng = random.Random(8)
        qdrant(lambda c: c.upsert(collection, [qm.PointStruct(
            id=i, vector=[rng.uniform(-1, 1) for _ in range(DIM)], payload={"year": 2025})
            for i in range(5_000, 5_010)], wait=True))
        kubectl.run("annotate", "--overwrite", "edgesnapshotpolicy/edge",
                    f"albumops.io/snapshot-now={next(runs)}", namespace=namespace)
        obj = wait_snapshots(kubectl, namespace, "edge", 2, newer_than=newest)
        newest = obj["status"]["snapshots"][0]["name"]

    return Side("operator", edge_url, namespace, "edge", token, DIM, stored,
                change_and_publish)


@pytest.fixture(params=["fake", "operator"])
def side(request: pytest.FixtureRequest, qdrant_pool: Any, tmp_path: Path) -> Iterator[Side]:
    """The fake endpoint, or the operator's endpoint on the engine under test (the fake has
    no engine: it runs once, beside the embedded engine)."""
    engine = request.node.callspec.params.get("qdrant_pool")
    if request.param == "fake":
        if engine == "server":
            pytest.skip("the fake endpoint has no engine: run once")
        yield from _fake_side(tmp_path)
    else:
        yield _operator_side(*(request.getfixturevalue(name) for name in (
            "kubectl", "namespace", "qdrant", "edge_url")))


def _vector(rng: random.Random, dim: int) -> list[float]:
    return [rng.uniform(-1, 1) for _ in range(dim)]


def _good(rng: random.Random, side: Side, ids: range) -> list[EdgePoint]:
    return [EdgePoint(i, _vector(rng, side.dim), {"year": GOOD_YEAR, "n": i}) for i in ids]


def _inject(queue: UploadQueue, key: str, body: str) -> None:
    """A row as an older album-edge with laxer rules (or a hand-edited queue) left it."""
    queue._db.execute("INSERT INTO queued (id, body, enqueued_at) VALUES (?, ?, 0)",
                      (key, body))


def test_init_304_and_pull(side: Side, tmp_path: Path) -> None:
    with EdgeDevice(tmp_path / "device", side.client()) as device:
        init = device.init()
        assert init.points > 0
        assert not device.pull().changed  # 304: the device is current
        side.change_and_publish()
        pulled = device.pull()
        assert pulled.changed
        assert pulled.full_size_bytes is not None
        assert pulled.points is not None
        assert not device.pull().changed


def _bad_points(rng: random.Random, side: Side) -> list[tuple[str, dict[str, Any], str]]:
    """(what, point, a phrase of the reason both the device and the endpoint give)."""
    vector = _vector(rng, side.dim)
    year = {"year": GOOD_YEAR}
    return [
        ("id 2^64", {"id": 2**64, "vector": vector, "payload": year}, "outside 0..2^64-1"),
        ("negative id", {"id": -1, "vector": vector, "payload": year}, "outside 0..2^64-1"),
        ("braced UUID", {"id": "{" + str(uuid.UUID(int=5)) + "}", "vector": vector,
                         "payload": year}, "or a UUID"),
        ("NaN", {"id": 900_001, "vector": [float("nan"), *vector[1:]], "payload": year},
         "not a finite number"),
        ("Infinity", {"id": 900_002, "vector": [float("inf"), *vector[1:]], "payload": year},
         "not a finite number"),
        ("1e39", {"id": 900_003, "vector": [1e39, *vector[1:]], "payload": year},
         "overflows a float32"),
        ("wrong size", {"id": 900_004, "vector": vector[1:], "payload": year},
         "dimensions"),
        ("named", {"id": 900_005, "vector": {"img": vector}, "payload": year},
         "send a list"),
        ("deep payload", {"id": 900_006, "vector": vector,
                          "payload": {"year": GOOD_YEAR, "x": _nested(MAX_PAYLOAD_DEPTH)}},
         "nested deeper"),
        ("lone surrogate", {"id": 900_007, "vector": vector,
                            "payload": {"year": GOOD_YEAR, "s": "\ud800"}}, "not valid JSON"),
    ]


def _nested(depth: int) -> dict[str, Any]:
    payload: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        payload = {"a": payload}
    return payload


def test_album_edge_refuses_a_bad_point_at_upsert_with_the_endpoints_reason(
        side: Side, tmp_path: Path) -> None:
    rng = random.Random(1)
    client = side.client()
    with EdgeDevice(tmp_path / "device", client) as device:
        device.init()
        for what, point, phrase in _bad_points(rng, side):
            with pytest.raises((DeviceError, ValueError)) as refused:
                device.upsert([point])
            assert phrase in str(refused.value), what
            answer = client.push_points([json.dumps(point)])  # straight to the endpoint
            assert answer.accepted == [], what
            [(_, reason, index)] = answer.rejected
            assert index == 0
            assert reason in str(refused.value), what  # the very same check, both sides
        assert device.status().queue_depth == 0


def test_a_queue_with_bad_points_between_good_ones_drains(side: Side, tmp_path: Path
                                                          ) -> None:
    rng = random.Random(2)
    with EdgeDevice(tmp_path / "device", side.client()) as device:
        device.init()
        good = _good(rng, side, range(100_000, 100_012))
        # the endpoint refuses these for good, though the device's own layout takes them
        elsewhere = EdgePoint(200_001, _vector(rng, side.dim), {"year": OTHER_LAYOUT_YEAR})
        nowhere = EdgePoint(200_002, _vector(rng, side.dim), {"year": REFUSED_YEAR})
        device.upsert(good[:3])
        device.upsert([elsewhere])
        vector = json.dumps(_vector(rng, side.dim))
        _inject(device.queue, str(2**64), f'{{"id":{2**64},"vector":{vector},'
                f'"payload":{{"year":{GOOD_YEAR}}}}}')
        device.upsert(good[3:6])
        _inject(device.queue, "900001", '{"id":900001,"vector":[1e400' + vector[
            vector.index(","):] + ',"payload":{"year":2025}}')
        _inject(device.queue, "900002", '{"id":900002,"vector":[NaN' + vector[
            vector.index(","):] + ',"payload":{"year":2025}}')
        braced = "{" + str(uuid.UUID(int=9)) + "}"
        _inject(device.queue, braced, json.dumps(
            {"id": braced, "vector": json.loads(vector), "payload": {"year": 2025}}))
        device.upsert(good[6:9])
        device.upsert([nowhere])
        device.upsert(good[9:])
        assert device.status().queue_depth == 12 + 2 + 4

        result = device.push(batch_size=4, max_retries=2, sleep=lambda _s: None)
        assert result.error is None
        assert (result.accepted, result.rejected, result.remaining) == (12, 6, 0)
        letters = {d.id: d.reason for d in device.queue.dead_letters()}
        assert set(letters) == {"200001", "200002", str(2**64), "900001", "900002", braced}
        assert f"the collection's has {OTHER_DIM}" in letters["200001"]
        assert "not an allowed upload target" in letters["200002"]
        assert "outside 0..2^64-1" in letters[str(2**64)]
        assert "not a finite number" in letters["900001"]
        assert "not a finite number" in letters["900002"]
        assert "or a UUID" in letters[braced]
        stored = side.stored([p.id for p in good])
        assert stored == {p.id: p.payload for p in good}
        assert device.status().dead_letters == 6


def test_a_malformed_request_is_refused_whole(side: Side) -> None:
    url = f"{side.client().root}/points"
    assert post(url, {"point": []}, token=side.token).status_code == 400
    assert post(url, [1, 2], token=side.token).status_code == 400
    answer = post(url, {"points": []}, token=side.token)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": [], "rejected": []}


def test_points_that_poisoned_the_collection_are_rejected_and_publishing_goes_on(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], edge_url: str,
        tmp_path: Path) -> None:
    """Before: the embedded engine stored an ID of 2^64 (or a lone surrogate, a payload
    deeper than qdrant-edge reads, an infinite coordinate) and every later run failed."""
    side = _operator_side(kubectl, namespace, qdrant, edge_url)
    rng = random.Random(3)
    probe = _vector(rng, DIM)
    good = {"id": 777_777, "vector": probe, "payload": {"year": GOOD_YEAR}}
    poison = [point for _, point, _ in _bad_points(rng, side)]
    body = json.dumps({"points": [*poison, good]})  # NaN and Infinity as JSON tokens
    response = post_raw(f"{side.client().root}/points", body, side.token)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == [777_777]
    assert [r["index"] for r in answer["rejected"]] == list(range(len(poison)))
    collection = f"{prefix(namespace)}_{GOOD_YEAR}"
    assert qdrant(lambda c: c.retrieve(collection, [777_777]))[0].id == 777_777
    for attempt in (1, 2):
        before = kubectl.get("edgesnapshotpolicy", "edge", namespace)["status"]["snapshots"]
        kubectl.run("annotate", "--overwrite", "edgesnapshotpolicy/edge",
                    f"albumops.io/snapshot-now=poison-{attempt}", namespace=namespace)
        obj = wait_snapshots(kubectl, namespace, "edge", min(len(before) + 1, 2),
                             newer_than=before[0]["name"])
        assert obj["status"]["lastRun"]["result"] == "Succeeded", obj["status"]["lastRun"]
    with EdgeDevice(tmp_path / "device", side.client()) as device:
        device.init()
        assert [h.id for h in device.query(probe, 1)] == [777_777]


def post_raw(url: str, body: str, token: str) -> requests.Response:
    return requests.post(url, data=body.encode(), timeout=60, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})


# The endpoint's last line of defence, on both engines: a batch Qdrant itself refuses is
# split until the refused points are found; the rest are written. An unreachable server is
# an outage (the device retries), never a rejection.

def _routed(collection: str, sizes: list[int]) -> list[RoutedPoint]:
    return [RoutedPoint(index, 1000 + index, collection, [0.5] * size, {"n": index})
            for index, size in enumerate(sizes)]


def test_a_refused_batch_is_split_down_to_the_refused_points(qdrant_pool: QdrantPool
                                                             ) -> None:
    engine = qdrant_pool.engine()
    collection = f"split_{uuid.uuid4().hex[:8]}"
    engine.call(lambda c: c.create_collection(collection, vectors_config=qm.VectorParams(
        size=4, distance=qm.Distance.COSINE)))
    try:
        # points 3 and 7 slipped past validation (a layout changed under the endpoint)
        sizes = [4, 4, 4, 5, 4, 4, 4, 3, 4, 4, 4]
        refused = _upsert_routed(engine, _routed(collection, sizes))
        assert [r.index for r in refused] == [3, 7]
        assert all("Qdrant refused the point" in r.reason for r in refused)
        stored = engine.call(lambda c: c.retrieve(collection, [1000 + i for i in range(11)]))
        assert sorted(r.id for r in stored) == [1000 + i for i, s in enumerate(sizes) if s == 4]
        # a collection that vanished: its points are refused at once
        gone = _upsert_routed(engine, _routed(f"{collection}_gone", [4, 4]))
        assert [r.index for r in gone] == [0, 1]
    finally:
        engine.call(lambda c: c.delete_collection(collection))


@pytest.mark.qdrant_server
def test_an_unreachable_server_is_an_outage_not_a_rejection() -> None:
    engine = open_engine(ConnectionSettings(url="http://127.0.0.1:9"))
    try:
        with pytest.raises(QdrantError):
            _upsert_routed(engine, _routed("anything", [4, 4]))
    finally:
        engine.close()
