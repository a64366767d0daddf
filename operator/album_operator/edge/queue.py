"""The durable upload queue: points waiting for the endpoint, and the dead letters it refused.

``UploadQueue(path)`` opens (or creates) an SQLite database in WAL mode with
``PRAGMA synchronous=FULL``: a commit is on disk (the WAL fsynced) before it returns, so a
point :meth:`UploadQueue.enqueue` acknowledged survives a crash or a power cut.

Tables: ``queued(seq, id, body, enqueued_at, attempts)`` in upload order (``seq``), and
``dead_letters(seq, id, body, reason, failed_at, enqueued_at)``. ``id`` is the point's
:func:`~album_operator.edge.points.id_key`; ``body`` the JSON sent to ``POST /points``.

- ``enqueue(points) -> int``: one transaction for all of them; a point whose ID is already
  queued replaces the queued version (it keeps the older ``enqueued_at``, so the age of the
  oldest waiting change stays honest).
- ``peek(limit) -> list[QueuedPoint]``: the oldest rows, left in place.
- ``settle(batch, accepted, rejected) -> Settlement``: after the endpoint answered
  (``rejected``: ``(id, reason)`` or ``(id, reason, index in batch)``), in one transaction:
  rows of accepted IDs are deleted, rows of rejected IDs move to the dead letters with the
  reason, the rest of the batch gets ``attempts + 1``. Rows are matched by
  ``seq``, so a newer version enqueued while the batch was in flight is never deleted.
- ``record_failure(batch)``: ``attempts + 1`` (the request failed; the rows stay).
- ``depth()``, ``stats() -> QueueStats``, ``dead_letters() -> list[DeadLetter]``, ``close()``.

The queue is safe to share between threads of a process and between processes (an ``upsert``
and a ``push --watch`` at once): SQLite serialises the writers.
``durable=False`` (``synchronous=OFF``) exists only as the benchmark's baseline.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from album_operator.edge.points import EdgePoint, id_key

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS queued (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queued_by_id ON queued (id);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL,
    enqueued_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class QueuedPoint:
    seq: int
    id: str
    body: str
    enqueued_at: float
    attempts: int


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    id: str
    body: str
    reason: str
    failed_at: float
    enqueued_at: float


@dataclass(frozen=True)
class Settlement:
    accepted: int
    rejected: int
    unanswered: int


@dataclass(frozen=True)
class QueueStats:
    depth: int
    oldest_enqueued_at: float | None
    max_attempts: int
    dead_letters: int


class UploadQueue:
    def __init__(self, path: str | Path, *, durable: bool = True, busy_timeout: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            self._db.close()
            raise OSError(f"{self.path}: SQLite refused WAL mode (got {mode})")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        self._db.executescript(_SCHEMA)  # idempotent statements, each its own transaction
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def enqueue(self, points: Iterable[EdgePoint]) -> int:
        """Queues the points in one transaction; returns once it is committed to disk."""
        now = self._clock()
        count = 0
        with self._transaction() as db:
            for point in points:
                key = point.key
                cursor = db.execute(
                    "INSERT INTO queued (id, body, enqueued_at) VALUES (?, ?, COALESCE("
                    "(SELECT MIN(enqueued_at) FROM queued WHERE id = ?), ?))",
                    (key, point.dumps(), key, now))
                db.execute("DELETE FROM queued WHERE id = ? AND seq < ?", (key, cursor.lastrowid))
                count += 1
        return count

    def peek(self, limit: int) -> list[QueuedPoint]:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, body, enqueued_at, attempts FROM queued ORDER BY seq LIMIT ?",
                (limit,)).fetchall()
        return [QueuedPoint(*row) for row in rows]

    def settle(self, batch: Sequence[QueuedPoint], accepted: Iterable[object],
               rejected: Iterable[tuple[object, str] | tuple[object, str, int | None]]
               ) -> Settlement:
        """Applies the endpoint's answer to ``batch`` in one transaction. A rejection names
        its row by ID, or else by its position in ``batch`` (the endpoint cannot always
        repeat an ID it could not read)."""
        accepted_keys = {_key_or_none(raw) for raw in accepted}
        keys = {row.id for row in batch}
        reasons = {}
        for raw, reason, *where in rejected:
            key = _key_or_none(raw)
            if key not in keys and where and isinstance(where[0], int) \
                    and 0 <= where[0] < len(batch):
                key = batch[where[0]].id
            if key is not None and key not in accepted_keys:
                reasons[key] = reason
        now = self._clock()
        counts = {"accepted": 0, "rejected": 0, "unanswered": 0}
        with self._transaction() as db:
            for row in batch:
                if row.id in accepted_keys:
                    db.execute("DELETE FROM queued WHERE seq = ?", (row.seq,))
                    counts["accepted"] += 1
                elif row.id in reasons:
                    db.execute(
                        "INSERT INTO dead_letters (id, body, reason, failed_at, enqueued_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (row.id, row.body, reasons[row.id], now, row.enqueued_at))
                    db.execute("DELETE FROM queued WHERE seq = ?", (row.seq,))
                    counts["rejected"] += 1
                else:
                    db.execute("UPDATE queued SET attempts = attempts + 1 WHERE seq = ?",
                               (row.seq,))
                    counts["unanswered"] += 1
        return Settlement(**counts)

    def record_failure(self, batch: Sequence[QueuedPoint]) -> None:
        with self._transaction() as db:
            db.executemany("UPDATE queued SET attempts = attempts + 1 WHERE seq = ?",
                           [(row.seq,) for row in batch])

    def held_keys(self) -> set[str]:
        """IDs the server has not accepted: still queued, or refused for good."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM queued UNION SELECT id FROM dead_letters").fetchall()
        return {str(row[0]) for row in rows}

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM queued").fetchone()[0])

    def stats(self) -> QueueStats:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                depth, oldest, attempts = self._db.execute(
                    "SELECT COUNT(*), MIN(enqueued_at), COALESCE(MAX(attempts), 0) FROM queued"
                ).fetchone()
                dead = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
            finally:
                self._db.execute("COMMIT")
        return QueueStats(int(depth), oldest, int(attempts), int(dead))

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, body, reason, failed_at, enqueued_at FROM dead_letters "
                "ORDER BY seq LIMIT ?", (-1 if limit is None else limit,)).fetchall()
        return [DeadLetter(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> UploadQueue:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _key_or_none(raw: object) -> str | None:
    try:
        return id_key(raw)
    except ValueError:
        return None
