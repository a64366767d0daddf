"""Draining the upload queue to a fake endpoint: outages, 413, dead letters, and a push
process killed with SIGKILL mid-drain, again and again."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from album_operator.edge.client import EndpointClient
from album_operator.edge.device import EdgeDevice
from album_operator.edge.errors import EndpointError
from album_operator.edge.points import EdgePoint
from album_operator.edge.pushing import PushResult
from album_operator.edge.queue import UploadQueue
from tests.edge_fake_endpoint import FakeEndpoint, SourceShard

DIM = 16
ALBUM_EDGE = str(Path(sys.executable).parent / "album-edge")


def _no_sleep(_seconds: float) -> None:
    return


def _points(count: int, start: int = 0) -> list[EdgePoint]:
    rng = random.Random(start)
    return [EdgePoint(i, [rng.uniform(-1, 1) for _ in range(DIM)], {"n": i})
            for i in range(start, start + count)]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeEndpoint]:
    endpoint = FakeEndpoint(tmp_path, None, vectors={"": DIM}).start()
    yield endpoint
    endpoint.stop()


def _client(fake: FakeEndpoint) -> EndpointClient:
    return EndpointClient(fake.url, fake.namespace, fake.policy, fake.token,
                          timeout=(2.0, 10.0))


def test_points_written_while_the_endpoint_is_down_all_arrive_once_it_is_up(
        tmp_path: Path) -> None:
    rng = random.Random(3)
    source = SourceShard(tmp_path, dim=DIM)
    source.change(source.random_points(range(100), rng))
    fake = FakeEndpoint(tmp_path, source).start()
    fake.publish()
    device = EdgeDevice(tmp_path / "device", _client(fake))
    try:
        device.init()
        fake.stop()  # connection refused
        points = _points(1000, start=10_000)
        for chunk in range(0, 1000, 100):
            assert device.upsert(points[chunk:chunk + 100]) == 100
        result = device.push(128, max_retries=3, sleep=_no_sleep)
        assert result.error is not None
        assert "ConnectionError" in result.error
        assert (result.remaining, result.retries, result.accepted) == (1000, 3, 0)
        fake.start()  # listening again, but Qdrant is unreachable: 503
        fake.available = False
        result = device.push(128, max_retries=2, sleep=_no_sleep)
        assert result.error is not None
        assert "503" in result.error
        assert result.remaining == 1000
        status = device.status()
        assert status.queue_depth == 1000
        assert status.max_attempts == 4 + 3
        assert status.oldest_queued_age_seconds is not None
        fake.available = True
        result = device.push(128, sleep=_no_sleep)
        assert result.error is None
        assert result.accepted == 1000
        assert result.remaining == 0
        assert set(fake.points) == {str(p.id) for p in points}
        assert all(count == 1 for count in fake.upserts.values())
        assert fake.points["10007"] == points[7].to_json()
        assert device.status().queue_depth == 0
        # they were searchable on the device all along, from the local shard
        hit = device.query(points[5].vector, 1)[0]  # type: ignore[arg-type]
        assert (hit.id, hit.source) == (10_005, "local")
    finally:
        device.close()
        fake.stop()


def test_a_413_halves_the_batch_and_still_delivers_everything(tmp_path: Path,
                                                             fake: FakeEndpoint) -> None:
    fake.max_batch = 7
    with UploadQueue(tmp_path / "q.sqlite") as queue:
        queue.enqueue(_points(100))
        result = device_push(queue, fake, batch_size=64)
        assert result.batch_size == 4
        assert result.accepted == 100
        assert result.remaining == 0
        assert len(fake.points) == 100
        fake.max_batch = 0
        queue.enqueue(_points(1))
        with pytest.raises(EndpointError, match="even one point"):
            device_push(queue, fake, batch_size=8)
        assert queue.depth() == 1


def device_push(queue: UploadQueue, fake: FakeEndpoint, batch_size: int) -> PushResult:
    from album_operator.edge.pushing import drain
    return drain(queue, _client(fake), batch_size=batch_size, sleep=_no_sleep)


def test_a_rejected_point_goes_to_the_dead_letters_with_its_reason(tmp_path: Path,
                                                                  fake: FakeEndpoint) -> None:
    fake.reject["7"] = "vector name 'img' is not in the upload target"
    uid = "0a0b0c0d-0000-4000-8000-000000000001"
    fake.reject[uid] = "routing field album_id is missing"
    with UploadQueue(tmp_path / "q.sqlite") as queue:
        queue.enqueue([*_points(20), EdgePoint(uid, [0.0] * DIM, {})])
        result = device_push(queue, fake, batch_size=8)
        assert (result.accepted, result.rejected, result.remaining) == (19, 2, 0)
        dead = {d.id: d for d in queue.dead_letters()}
        assert set(dead) == {"7", uid}
        assert dead["7"].reason == "vector name 'img' is not in the upload target"
        assert json.loads(dead[uid].body)["id"] == uid
        assert "7" not in fake.points
        assert queue.stats().dead_letters == 2


def test_permanent_errors_stop_the_push_and_keep_the_points(tmp_path: Path,
                                                           fake: FakeEndpoint) -> None:
    with UploadQueue(tmp_path / "q.sqlite") as queue:
        queue.enqueue(_points(5))
        client = EndpointClient(fake.url, fake.namespace, fake.policy, "wrong-token-value")
        from album_operator.edge.pushing import drain
        with pytest.raises(EndpointError) as caught:
            drain(queue, client, sleep=_no_sleep)
        assert caught.value.status == 401
        assert "wrong-token-value" not in str(caught.value)
        assert queue.depth() == 5


def test_watch_polls_an_empty_queue_until_stopped(tmp_path: Path, fake: FakeEndpoint) -> None:
    from album_operator.edge.pushing import drain
    naps: list[float] = []
    with UploadQueue(tmp_path / "q.sqlite") as queue:
        queue.enqueue(_points(3))

        def sleep(seconds: float) -> None:
            naps.append(seconds)
            if len(naps) == 2:
                queue.enqueue(_points(2, start=100))

        result = drain(queue, _client(fake), batch_size=10, watch=True, poll_interval=0.5,
                       sleep=sleep, stop=lambda: len(naps) >= 4)
        assert naps == [0.5, 0.5, 0.5, 0.5]
        assert result.accepted == 5
        assert set(fake.points) == {"0", "1", "2", "100", "101"}


def test_sigkilled_push_processes_deliver_every_point_exactly_once_by_id(
        tmp_path: Path, fake: FakeEndpoint) -> None:
    fake.delay = 0.01  # ~10 ms per request: kills land while requests are in flight
    directory = tmp_path / "device"
    points = _points(1000)
    with UploadQueue(directory / "queue.sqlite") as queue:
        queue.enqueue(points)
    command = [ALBUM_EDGE, "push", "--watch", "--dir", str(directory), "--endpoint", fake.url,
               "--namespace", fake.namespace, "--policy", fake.policy, "--batch-size", "10",
               "--poll-interval", "0.1"]
    env = {**os.environ, "ALBUM_EDGE_TOKEN": fake.token}
    rng = random.Random(5)
    depths = []
    for _ in range(4):
        received_before = sum(fake.upserts.values())
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        target = received_before + rng.randint(60, 160)
        while sum(fake.upserts.values()) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        with UploadQueue(directory / "queue.sqlite") as queue:
            depths.append(queue.depth())
    assert all(0 < depth < 1000 for depth in depths), depths
    assert depths == sorted(depths, reverse=True), "every run made progress"
    final = subprocess.run([*command[:2], *command[3:]], env=env, capture_output=True,
                           text=True, timeout=120, check=False)
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["remaining"] == 0
    assert set(fake.points) == {str(p.id) for p in points}
    assert all(fake.points[str(p.id)] == p.to_json() for p in points)
    assert min(fake.upserts.values()) >= 1
    with UploadQueue(directory / "queue.sqlite") as queue:
        assert queue.depth() == 0
        assert queue.stats().dead_letters == 0
