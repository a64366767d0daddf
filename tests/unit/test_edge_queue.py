"""The durable upload queue: enqueue, reopen, batches, and the settle transactions."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from album_operator.edge.points import EdgePoint
from album_operator.edge.queue import UploadQueue


def _point(i: int, tag: str = "v1") -> EdgePoint:
    return EdgePoint(i, [float(i), 1.0], {"tag": tag})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_database_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    queue = UploadQueue(tmp_path / "q.sqlite")
    assert queue._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert queue._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    queue.close()
    fast = UploadQueue(tmp_path / "q.sqlite", durable=False)
    assert fast._db.execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF
    fast.close()


def test_points_survive_a_reopen_in_order(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with UploadQueue(path) as queue:
        assert queue.enqueue(_point(i) for i in range(10)) == 10
    with UploadQueue(path) as queue:
        rows = queue.peek(100)
        assert [row.id for row in rows] == [str(i) for i in range(10)]
        assert json.loads(rows[3].body) == {"id": 3, "vector": [3.0, 1.0],
                                            "payload": {"tag": "v1"}}
        assert queue.depth() == 10


def test_peek_gives_batches_and_leaves_them_in_place(tmp_path: Path) -> None:
    with UploadQueue(tmp_path / "q.sqlite") as queue:
        queue.enqueue(_point(i) for i in range(25))
        assert [row.id for row in queue.peek(10)] == [str(i) for i in range(10)]
        assert len(queue.peek(10)) == 10
        queue.settle(queue.peek(10), accepted=range(10), rejected=[])
        assert [row.id for row in queue.peek(10)] == [str(i) for i in range(10, 20)]
        with pytest.raises(ValueError, match="limit"):
            queue.peek(0)


def test_settle_deletes_accepted_dead_letters_rejected_and_counts_the_rest(
        tmp_path: Path) -> None:
    clock = Clock()
    with UploadQueue(tmp_path / "q.sqlite", clock=clock) as queue:
        queue.enqueue(_point(i) for i in range(5))
        batch = queue.peek(5)
        clock.now = 1005.0
        # IDs answered in another spelling or not in the batch are matched or ignored
        settled = queue.settle(batch, accepted=[0, 1, 99, "junk"],
                               rejected=[(2, "vector size must be 512"), (3, "no upload")])
        assert (settled.accepted, settled.rejected, settled.unanswered) == (2, 2, 1)
        rest = queue.peek(10)
        assert [(row.id, row.attempts) for row in rest] == [("4", 1)]
        dead = queue.dead_letters()
        assert [(d.id, d.reason, d.failed_at, d.enqueued_at) for d in dead] == [
            ("2", "vector size must be 512", 1005.0, 1000.0), ("3", "no upload", 1005.0, 1000.0)]
        assert json.loads(dead[0].body)["id"] == 2
        stats = queue.stats()
        assert (stats.depth, stats.dead_letters, stats.max_attempts,
                stats.oldest_enqueued_at) == (1, 2, 1, 1000.0)
        assert queue.held_keys() == {"2", "3", "4"}, "all but what the server accepted"


def test_settle_is_one_transaction(tmp_path: Path) -> None:
    with UploadQueue(tmp_path / "q.sqlite") as queue:
        queue.enqueue(_point(i) for i in range(4))
        batch = queue.peek(4)
        queue._db.execute("CREATE TRIGGER fail BEFORE INSERT ON dead_letters "
                          "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with pytest.raises(sqlite3.IntegrityError, match="disk full"):
            queue.settle(batch, accepted=[0, 1], rejected=[(2, "bad")])
        assert queue.depth() == 4  # the accepted deletions were rolled back with it
        assert queue.dead_letters() == []


def test_a_rejection_whose_id_cannot_be_read_is_matched_by_its_position(
        tmp_path: Path) -> None:
    """A row queued by an older client with laxer rules: the endpoint cannot repeat its ID,
    so the rejection names it by index; the row still lands in the dead letters."""
    with UploadQueue(tmp_path / "q.sqlite") as queue:
        queue.enqueue([_point(1), EdgePoint(2**64, [0.0]), _point(3)])
        batch = queue.peek(3)
        assert batch[1].id == str(2**64)
        settled = queue.settle(batch, accepted=[1, 3],
                               rejected=[(None, "ID outside 0..2^64-1", 1),
                                         ("junk", "no such row", 7)])
        assert (settled.accepted, settled.rejected, settled.unanswered) == (2, 1, 0)
        assert [(d.id, d.reason) for d in queue.dead_letters()] == [
            (str(2**64), "ID outside 0..2^64-1")]
        assert queue.depth() == 0


def test_a_newer_version_enqueued_during_a_push_is_not_lost(tmp_path: Path) -> None:
    clock = Clock()
    with UploadQueue(tmp_path / "q.sqlite", clock=clock) as queue:
        queue.enqueue([_point(1, "old"), _point(2)])
        in_flight = queue.peek(10)
        clock.now = 2000.0
        queue.enqueue([_point(1, "new")])  # replaces the queued version of point 1
        assert queue.depth() == 2
        queue.settle(in_flight, accepted=[1, 2], rejected=[])
        rows = queue.peek(10)
        assert [(row.id, json.loads(row.body)["payload"]["tag"]) for row in rows] == [
            ("1", "new")]
        assert rows[0].enqueued_at == 1000.0  # the oldest waiting change keeps its age


def test_the_same_id_twice_in_one_enqueue_keeps_the_last(tmp_path: Path) -> None:
    with UploadQueue(tmp_path / "q.sqlite") as queue:
        queue.enqueue([_point(1, "a"), _point(1, "b")])
        assert [json.loads(r.body)["payload"]["tag"] for r in queue.peek(5)] == ["b"]


def test_record_failure_counts_attempts(tmp_path: Path) -> None:
    with UploadQueue(tmp_path / "q.sqlite") as queue:
        queue.enqueue(_point(i) for i in range(3))
        queue.record_failure(queue.peek(2))
        queue.record_failure(queue.peek(2))
        assert [row.attempts for row in queue.peek(3)] == [2, 2, 0]


def test_two_connections_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with UploadQueue(path) as writer, UploadQueue(path) as reader:
        writer.enqueue([_point(1)])
        assert reader.depth() == 1
        reader.settle(reader.peek(1), accepted=[1], rejected=[])
        assert writer.depth() == 0


ENQUEUE_AND_HANG = textwrap.dedent("""
    import sys, time
    from album_operator.edge.points import EdgePoint
    from album_operator.edge.queue import UploadQueue
    queue = UploadQueue(sys.argv[1])
    start = int(sys.argv[2])
    queue.enqueue([EdgePoint(start + i, [0.5] * 512, {"n": start + i}) for i in range(3)])
    print("enqueued", flush=True)
    time.sleep(120)
""")


def test_a_point_enqueued_right_before_sigkill_is_still_there(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    for round_ in range(3):
        process = subprocess.Popen([sys.executable, "-c", ENQUEUE_AND_HANG, str(path),
                                    str(round_ * 10)], stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "enqueued"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
    with UploadQueue(path) as queue:
        ids = [row.id for row in queue.peek(100)]
    assert ids == ["0", "1", "2", "10", "11", "12", "20", "21", "22"]
