"""Set operations over point-ID streams in Qdrant's scroll order, in constant memory.

Qdrant scrolls points in ascending ID order: unsigned integers first, then UUIDs. That lets
collision checks and master-vs-sources comparisons walk the collections side by side like a
merge join, holding one ID per collection instead of every ID. A stream that breaks the order
raises ``OutOfOrder`` rather than give a wrong answer.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

PointId = int | str
T = TypeVar("T")


class OutOfOrder(Exception):
    """A collection did not scroll in ascending ID order."""


def id_order_key(point_id: PointId) -> tuple[int, int, str]:
    """Qdrant's order of point IDs: integers ascending, then UUIDs ascending."""
    if isinstance(point_id, int):
        return (0, point_id, "")
    return (1, 0, point_id.lower())


def checked_order_by(items: Iterable[T], where: str, id_of: Callable[[T], PointId]
                     ) -> Iterator[T]:
    """Passes ``items`` through, raising OutOfOrder when one's ID is not above the one
    before."""
    previous: tuple[int, int, str] | None = None
    for item in items:
        point_id = id_of(item)
        key = id_order_key(point_id)
        if previous is not None and key <= previous:
            raise OutOfOrder(f"{where} returned {point_id} after a larger or equal ID")
        previous = key
        yield item


def checked_order(ids: Iterable[PointId], where: str) -> Iterator[PointId]:
    return checked_order_by(ids, where, lambda point_id: point_id)


def _keyed(index: int, ids: Iterable[PointId]
           ) -> Iterator[tuple[tuple[int, int, str], int, PointId]]:
    return ((id_order_key(pid), index, pid) for pid in ids)


def _grouped(streams: Sequence[tuple[str, Iterable[PointId]]]
             ) -> Iterator[tuple[PointId, tuple[str, ...]]]:
    """Each distinct ID once, with the streams that hold it, in stream order."""
    keyed = [_keyed(index, checked_order(ids, name))
             for index, (name, ids) in enumerate(streams)]
    merged = heapq.merge(*keyed)
    for _, group in itertools.groupby(merged, key=lambda item: item[0]):
        members = list(group)
        yield members[0][2], tuple(streams[index][0] for _, index, _ in members)


@dataclass(frozen=True)
class Collision:
    point_id: PointId
    sources: tuple[str, ...]


@dataclass(frozen=True)
class CollisionScan:
    distinct: int
    colliding_ids: int
    examples: tuple[Collision, ...]


def scan_collisions(streams: Sequence[tuple[str, Iterable[PointId]]], examples: int = 5
                    ) -> CollisionScan:
    """Counts distinct IDs and those held by more than one source, keeping a few examples."""
    distinct = colliding = 0
    found: list[Collision] = []
    for point_id, holders in _grouped(streams):
        distinct += 1
        if len(holders) > 1:
            colliding += 1
            if len(found) < examples:
                found.append(Collision(point_id, holders))
    return CollisionScan(distinct, colliding, tuple(found))


def collision_message(scan: CollisionScan) -> str:
    shown = ", ".join(f"{c.point_id} ({' & '.join(c.sources)})" for c in scan.examples)
    more = scan.colliding_ids - len(scan.examples)
    suffix = f" and {more} more" if more > 0 else ""
    return f"{scan.colliding_ids} point IDs appear in more than one source: {shown}{suffix}"


def distinct_union(streams: Sequence[tuple[str, Iterable[PointId]]]) -> Iterator[PointId]:
    return (point_id for point_id, _ in _grouped(streams))


@dataclass(frozen=True)
class IdSetDiff:
    expected: int
    missing: int
    unexpected: int
    examples: tuple[str, ...]

    @property
    def equal(self) -> bool:
        return not (self.missing or self.unexpected)


def compare_ids(expected: Iterable[PointId], actual: Iterable[PointId], examples: int = 5
                ) -> IdSetDiff:
    """How two ID sets differ: IDs only in ``expected`` (missing), only in ``actual``."""
    total = missing = unexpected = 0
    shown: list[str] = []
    for point_id, holders in _grouped([("expected", expected), ("actual", actual)]):
        total += holders[0] == "expected"
        if len(holders) == 2:
            continue
        if holders == ("expected",):
            missing += 1
            label = f"missing {point_id}"
        else:
            unexpected += 1
            label = f"unexpected {point_id}"
        if len(shown) < examples:
            shown.append(label)
    return IdSetDiff(total, missing, unexpected, tuple(shown))


class Reservoir(Generic[T]):
    """A uniform sample of ``size`` items from a stream of unknown length (Algorithm R)."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.items: list[T] = []
        self._rng = rng
        self._seen = 0

    def offer(self, item: T) -> None:
        if self._seen < self.size:
            self.items.append(item)
        else:
            slot = self._rng.randint(0, self._seen)
            if slot < self.size:
                self.items[slot] = item
        self._seen += 1

    def tap(self, items: Iterable[T]) -> Iterator[T]:
        """Passes ``items`` through, sampling them on the way."""
        for item in items:
            self.offer(item)
            yield item


def precedes(point_id: PointId, bound: PointId | None) -> bool:
    """``point_id`` comes before ``bound`` in scroll order (everything precedes no bound)."""
    return bound is None or id_order_key(point_id) < id_order_key(bound)


@dataclass(frozen=True)
class IdRange:
    """The IDs from ``start`` (inclusive) up to ``until`` (exclusive) in scroll order, of
    which ``expected`` were counted when the range was cut; None is an open end."""

    start: PointId | None
    until: PointId | None
    expected: int


class RangeCutter:
    """Cuts an ID stream into ranges of ``every`` IDs while it passes through (None: one
    range), so that one source's copy can run as several streams side by side."""

    def __init__(self, every: int | None) -> None:
        if every is not None and every < 1:
            raise ValueError("a range holds at least one ID")
        self.every = every
        self.count = 0
        self._cuts: list[PointId] = []

    def tap(self, ids: Iterable[PointId]) -> Iterator[PointId]:
        for point_id in ids:
            if self.every and self.count and self.count % self.every == 0:
                self._cuts.append(point_id)
            self.count += 1
            yield point_id

    @property
    def ranges(self) -> list[IdRange]:
        """Ranges covering every ID, including any written after the cut: the first starts
        at the beginning, the last runs to the end."""
        starts: list[PointId | None] = [None, *self._cuts]
        ends: list[PointId | None] = [*self._cuts, None]
        full = (self.every or 0) * len(self._cuts)
        sizes = [self.every or 0] * len(self._cuts) + [self.count - full]
        return [IdRange(start, until, size)
                for start, until, size in zip(starts, ends, sizes, strict=True)]
