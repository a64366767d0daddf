"""album-edge against the real operator: its snapshot endpoint on the real API server and the
embedded engine, with real qdrant-edge-py shards on the device side."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import models as qm

from album_operator.edge.client import EndpointClient
from album_operator.edge.device import EdgeDevice
from album_operator.edge.errors import EdgeError
from album_operator.edge.points import EdgePoint
from album_operator.edge.queue import UploadQueue
from tests.helpers import Kubectl
from tests.integration.test_edge_snapshot_policy import (
    DIM,
    POINTS,
    assert_same_points,
    collection_points,
    edge_points,
    policy,
    prefix,
    seed_collection,
    token_secret,
    wait_snapshots,
)

pytestmark = pytest.mark.cluster
ALBUM_EDGE = str(Path(sys.executable).parent / "album-edge")


def publish(kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]
            ) -> tuple[str, str]:
    collection = seed_collection(kubectl, namespace, qdrant)
    token = f"device-{namespace}"
    kubectl.apply(token_secret("kiosk-token", token), namespace)
    kubectl.apply(policy("edge", collection, "kiosk-token", upload={
        "routeBy": {"field": "year", "template": f"{prefix(namespace)}_{{year}}"}}),
        namespace)
    wait_snapshots(kubectl, namespace, "edge", 1)
    return collection, token


def client(edge_url: str, namespace: str, token: str) -> EndpointClient:
    return EndpointClient(edge_url, namespace, "edge", token, timeout=(2.0, 60.0))


def top_ids(qdrant: Callable[..., Any], collection: str, vector: Any) -> list[Any]:
    return [h.id for h in qdrant(lambda c: c.query_points(collection, query=vector,
                                                          limit=10).points)]


def device_points(rng: np.random.Generator, ids: range, year: int = 2025) -> list[EdgePoint]:
    vectors = rng.normal(size=(len(ids), DIM))
    return [EdgePoint(pid, vectors[n].tolist(), {"year": year, "from": "device"})
            for n, pid in enumerate(ids)]


def vector_of(point: EdgePoint) -> list[float]:
    assert isinstance(point.vector, list)
    return point.vector


def test_a_device_inits_pulls_and_refuses_a_corrupt_snapshot(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], edge_url: str,
        operator: Any, tmp_path: Path) -> None:
    collection, token = publish(kubectl, namespace, qdrant)
    probes = qdrant(lambda c: c.retrieve(collection, [1, 500, 999], with_vectors=True))
    with EdgeDevice(tmp_path / "device", client(edge_url, namespace, token)) as device:
        result = device.init()
        assert result.points == POINTS
        for probe in probes:
            assert [h.id for h in device.query(probe.vector, 10)] == top_ids(
                qdrant, collection, probe.vector)

        # Server-side changes, a new run, a pull: the device equals the collection again.
        rng = np.random.default_rng(2)
        qdrant(lambda c: c.upsert(collection, [qm.PointStruct(
            id=i, vector=rng.normal(size=DIM).tolist(), payload={"year": 2025, "v": 2})
            for i in (1, 2, POINTS + 5)], wait=True))
        qdrant(lambda c: c.delete(collection, qm.PointIdsList(points=[500])))
        kubectl.run("annotate", "edgesnapshotpolicy/edge", "albumops.io/snapshot-now=1",
                    namespace=namespace)
        wait_snapshots(kubectl, namespace, "edge", 2)
        pulled = device.pull()
        assert pulled.changed
        assert pulled.full_size_bytes is not None
        assert pulled.size_bytes * 4 < pulled.full_size_bytes
        assert pulled.points == POINTS + 1 - 1
        changed = qdrant(lambda c: c.retrieve(collection, [1], with_vectors=True))[0]
        assert device.query(changed.vector, 1)[0].id == 1
        assert 500 not in [h.id for h in device.query(probes[1].vector, 10)]
        assert not device.pull().changed  # 304: current
        device.close()
        mirror = qe.EdgeShard.load(str(tmp_path / "device" / "mirror"))
        assert_same_points(edge_points(mirror), collection_points(qdrant, collection))
        mirror.close()

        # A corrupt published file is refused; the device keeps its working shard.
        published = sorted((Path(operator.config.snapshot_root) / namespace / "edge" /
                            "published").glob("*.tar"))[-1]
        data = bytearray(published.read_bytes())
        data[len(data) // 2] ^= 0xFF
        published.write_bytes(bytes(data))
    fresh = EdgeDevice(tmp_path / "second-device", client(edge_url, namespace, token))
    with fresh, pytest.raises(EdgeError, match=r"(?i)sha256|checksum"):
        fresh.init()
    assert not (tmp_path / "second-device" / "mirror").exists()
    with EdgeDevice(tmp_path / "device") as device:
        assert [h.id for h in device.query(changed.vector, 1)] == [1]


def test_queued_device_writes_survive_an_outage_and_kills_and_arrive_exactly_once(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], edge_url: str,
        tmp_path: Path) -> None:
    collection, token = publish(kubectl, namespace, qdrant)
    directory = tmp_path / "device"
    rng = np.random.default_rng(4)
    written = device_points(rng, range(100_000, 101_000))
    no_such_year = device_points(rng, range(200_000, 200_001), year=1990)[0]
    with EdgeDevice(directory, client(edge_url, namespace, token)) as device:
        device.init()
        device.upsert(written)
        device.upsert([no_such_year])
    # The endpoint is unreachable: everything stays queued.
    down = EdgeDevice(directory, client("http://127.0.0.1:9", namespace, token))
    with down:
        outage = down.push(batch_size=50, max_retries=1, sleep=lambda _s: None)
        assert outage.accepted == 0
        assert down.status().queue_depth == 1001

    # It is back; a pusher is killed with SIGKILL mid-drain, again and again.
    command = [ALBUM_EDGE, "push", "--watch", "--dir", str(directory), "--endpoint",
               edge_url, "--namespace", namespace, "--policy", "edge", "--batch-size", "10",
               "--poll-interval", "0.1"]
    env = {**os.environ, "ALBUM_EDGE_TOKEN": token}
    depths: list[int] = []
    for kill in range(3):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        start_depth = depths[-1] if depths else 1001
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with UploadQueue(directory / "queue.sqlite") as queue:
                if queue.depth() <= start_depth - 120 - 40 * kill:
                    break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        with UploadQueue(directory / "queue.sqlite") as queue:
            depths.append(queue.depth())
    assert depths == sorted(depths, reverse=True)
    assert all(0 < d < 1001 for d in depths), depths
    final = subprocess.run([ALBUM_EDGE, "push", "--dir", str(directory), "--endpoint",
                            edge_url, "--namespace", namespace, "--policy", "edge"],
                           env=env, capture_output=True, text=True, timeout=120, check=False)
    pushed = json.loads(final.stdout)
    assert pushed["remaining"] == 0
    # exit 4 when this push was the one that had the point for 1990 refused
    assert final.returncode == (4 if pushed["rejected"] else 0), final.stderr

    ids = [p.id for p in written]
    stored = qdrant(lambda c: c.retrieve(collection, ids, with_vectors=True))
    assert sorted(r.id for r in stored) == ids  # every queued point, once by ID
    by_id = {p.id: p for p in written}
    for record in stored:
        assert record.payload == by_id[record.id].payload
        want = np.asarray(by_id[record.id].vector)
        assert np.allclose(np.asarray(record.vector), want / np.linalg.norm(want), atol=1e-5)
    with UploadQueue(directory / "queue.sqlite") as queue:
        letters = queue.dead_letters()
    assert [letter.id for letter in letters] == ["200000"]
    assert "album" in letters[0].reason
    assert "not an allowed upload target" in letters[0].reason

    # The next snapshot holds the device's points: a pull retires their local copies.
    kubectl.run("annotate", "edgesnapshotpolicy/edge", "albumops.io/snapshot-now=1",
                namespace=namespace)
    wait_snapshots(kubectl, namespace, "edge", 2)
    with EdgeDevice(directory, client(edge_url, namespace, token)) as device:
        pulled = device.pull()
        assert pulled.retired_local_points == len(written)
        first = device.query(vector_of(written[0]), 1)[0]
        assert (first.id, first.source) == (written[0].id, "mirror")
        refused = device.query(vector_of(no_such_year), 1)[0]
        assert (refused.id, refused.source) == (200_000, "local"), "a dead letter stays local"
