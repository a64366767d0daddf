"""The continuous copy of a MasterMerge build: background threads that scroll the sources and
upsert into the master at the server's pace, while the build's step only reads their
checkpoint and writes it to status.

A source is copied as one or more ID ranges (cut at planning), each an independent stream
of work; a stream takes the largest range left, so the streams finish close together. A
checkpoint names, per range, the offset below which every point is confirmed written
(``copy_step`` returns an offset only after its upserts are acknowledged). A copy that dies,
with the operator or on an error, restarts from the checkpoint last written to status:
upserts are idempotent by ID, so a repeated chunk loses and duplicates nothing.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from album_operator.adapters.qdrant.connection import QdrantEngine
from album_operator.adapters.qdrant.merge import Offset, SourceReader, copy_step
from album_operator.core.idstreams import IdRange

# Pages copied between two checkpoints of one source: large enough that the upsert pipeline
# rarely drains, small enough that a stop or a crash repeats little.
PAGES_PER_CHUNK = 16


class CopyPart(NamedTuple):
    """One range of one source: the unit a copy stream takes."""

    source: str
    number: int = 0


@dataclass(frozen=True)
class SourceCheckpoint:
    """Where a range's copy stands; ``until`` is the range's exclusive end (None: the
    source's end) and ``expected`` its size at planning."""

    copied: int
    next_offset: Offset
    done: bool
    until: Offset = None
    expected: int = 0


@dataclass(frozen=True)
class CopyPlan:
    target: str
    parts: Mapping[CopyPart, SourceCheckpoint]
    batch_size: int
    streams: int
    """Ranges copied at once (1 on the embedded engine, whose calls are serialised)."""
    upserts_per_stream: int
    deferred_writes: bool = False
    """Upserts not waited for, each chunk ending with one that waits (``copy_step``)."""
    max_points_per_second: int | None = None
    """Shared by every stream; a throttled copy moves one page at a time."""


def whole_parts(ranges: Mapping[str, list[IdRange]]) -> dict[CopyPart, SourceCheckpoint]:
    """Fresh checkpoints for every range of every source, nothing copied yet."""
    return {CopyPart(source, number): SourceCheckpoint(0, r.start, False, r.until, r.expected)
            for source, source_ranges in ranges.items()
            for number, r in enumerate(source_ranges)}


class ContinuousCopy:
    """Copies every unfinished source of ``plan`` into its target until done or stopped."""

    def __init__(self, engine: QdrantEngine, plan: CopyPlan) -> None:
        self.plan = plan
        self._engine = engine
        self._reader = SourceReader(engine)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._checkpoints = dict(plan.parts)
        self._queue = sorted((part for part, point in plan.parts.items() if not point.done),
                             key=lambda part: plan.parts[part].copied - plan.parts[part].expected)
        self._error: BaseException | None = None
        self._started = time.monotonic()
        self._copied_here = 0
        self.reported_at: dt.datetime | None = None
        """When a step last wrote this copy's checkpoint to status."""
        self._threads = [threading.Thread(target=self._work, daemon=True,
                                          name=f"copy-{plan.target}-{i}")
                         for i in range(max(1, min(plan.streams, len(self._queue))))]

    def start(self) -> ContinuousCopy:
        for thread in self._threads:
            thread.start()
        return self

    def checkpoint(self) -> dict[CopyPart, SourceCheckpoint]:
        with self._lock:
            return dict(self._checkpoints)

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def done(self) -> bool:
        return all(point.done for point in self.checkpoint().values())

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stop(self) -> None:
        """Asks the threads to stop after their current chunk (its upserts confirmed)."""
        self._stop.set()

    def _next_part(self) -> CopyPart | None:
        with self._lock:
            return self._queue.pop(0) if self._queue and self._error is None else None

    def _work(self) -> None:
        try:
            while not self._stop.is_set() and (part := self._next_part()) is not None:
                self._copy_part(part)
        except BaseException as exc:  # reported to the build's step, which restarts the copy
            with self._lock:
                self._error = exc

    def _copy_part(self, part: CopyPart) -> None:
        point = self.checkpoint()[part]
        pages = 1 if self.plan.max_points_per_second else PAGES_PER_CHUNK
        by_id = part.source in self._reader.read_by_id([part.source])
        while not point.done and not self._stop.is_set() and self._error is None:
            if self._pace():
                continue
            progress = copy_step(self._reader, self._engine, part.source, self.plan.target,
                                 point.next_offset, self.plan.batch_size, pages,
                                 self.plan.upserts_per_stream, self.plan.deferred_writes,
                                 until=point.until, by_id=by_id)
            point = replace(point, copied=point.copied + progress.copied,
                            next_offset=progress.next_offset, done=progress.done)
            with self._lock:
                self._checkpoints[part] = point
                self._copied_here += progress.copied

    def _pace(self) -> bool:
        """Waits while the copy is ahead of its throttle; True when it waited."""
        rate = self.plan.max_points_per_second
        if not rate:
            return False
        with self._lock:
            ahead = self._copied_here / rate - (time.monotonic() - self._started)
        if ahead <= 0:
            return False
        self._stop.wait(ahead)
        return True


class CopyRegistry:
    """The running copies, one per build (``key``), shared by every step of the operator."""

    def __init__(self) -> None:
        self._copies: dict[str, ContinuousCopy] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> ContinuousCopy | None:
        with self._lock:
            return self._copies.get(key)

    def start(self, key: str, engine: QdrantEngine, plan: CopyPlan) -> ContinuousCopy:
        with self._lock:
            old = self._copies.get(key)
            if old is not None:
                old.stop()
            copy = self._copies[key] = ContinuousCopy(engine, plan).start()
            return copy

    def forget(self, key: str) -> None:
        with self._lock:
            copy = self._copies.pop(key, None)
        if copy is not None:
            copy.stop()

    def forget_prefix(self, prefix: str) -> None:
        """Stops every copy whose key starts with ``prefix`` (a deleted or rebuilt merge)."""
        with self._lock:
            keys = [key for key in self._copies if key.startswith(prefix)]
        for key in keys:
            self.forget(key)

    def stop_all(self) -> None:
        with self._lock:
            copies, self._copies = list(self._copies.values()), {}
        for copy in copies:
            copy.stop()
