"""Catch-up decisions: what a master lacks after sources were written during its build.

A catch-up pass walks the sources' union and the master side by side in Qdrant's scroll order
(a merge join, as ``idstreams`` does for IDs) and names every point the master is missing,
holds in another version, or holds although no source does any more. Passes repeat until one
finds little to repair; the last pass's ID set (a count and an order-independent digest) is
the snapshot the master is verified against.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Generic, Literal, TypeVar

from album_operator.core.idstreams import PointId, checked_order_by, id_order_key

T = TypeVar("T")
DifferenceKind = Literal["missing", "changed", "unexpected"]

_DIGEST_MODULUS = 1 << 64


@dataclass(frozen=True)
class Difference(Generic[T]):
    kind: DifferenceKind
    point_id: PointId
    wanted: T | None
    """The source's version, to write (None for ``unexpected``: the point is removed)."""


def latest_union(streams: Sequence[Iterable[T]], id_of: Callable[[T], PointId],
                 names: Sequence[str]) -> Iterator[T]:
    """Each distinct ID once in scroll order; where sources share an ID, the later source's
    point (the copy's ``PreferLater`` rule)."""
    keyed = [((id_order_key(id_of(item)), index, item)
              for item in checked_order_by(stream, name, id_of))
             for index, (name, stream) in enumerate(zip(names, streams, strict=True))]
    merged = heapq.merge(*keyed, key=lambda entry: (entry[0], entry[1]))
    for _, group in itertools.groupby(merged, key=lambda entry: entry[0]):
        *_, last = group
        yield last[2]


def differences(wanted: Iterable[T], held: Iterable[T], id_of: Callable[[T], PointId],
                same: Callable[[T, T], bool]) -> Iterator[Difference[T]]:
    """What turns ``held`` (the master) into ``wanted`` (the sources), both in scroll order."""
    tagged = heapq.merge(((id_order_key(id_of(item)), 0, item) for item in wanted),
                         ((id_order_key(id_of(item)), 1, item) for item in held),
                         key=lambda entry: (entry[0], entry[1]))
    for _, group in itertools.groupby(tagged, key=lambda entry: entry[0]):
        sides = {side: item for _, side, item in group}
        if 1 not in sides:
            yield Difference("missing", id_of(sides[0]), sides[0])
        elif 0 not in sides:
            yield Difference("unexpected", id_of(sides[1]), None)
        elif not same(sides[0], sides[1]):
            yield Difference("changed", id_of(sides[0]), sides[0])


def id_digest_term(point_id: PointId) -> int:
    """One ID's share of a set digest; the digest is their sum, so order does not matter and
    a pass split over many steps adds up to the digest of one walk."""
    token = f"i:{point_id}" if isinstance(point_id, int) else f"u:{point_id.lower()}"
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class IdSet:
    """A set of point IDs as a count and a digest, comparable without holding the IDs."""

    count: int = 0
    digest: int = 0

    def with_ids(self, ids: Iterable[PointId]) -> IdSet:
        count, digest = self.count, self.digest
        for point_id in ids:
            count += 1
            digest = (digest + id_digest_term(point_id)) % _DIGEST_MODULUS
        return IdSet(count, digest)

    def plus(self, other: IdSet) -> IdSet:
        return IdSet(self.count + other.count, (self.digest + other.digest) % _DIGEST_MODULUS)

    def encode(self) -> dict[str, int | str]:
        return {"count": self.count, "digest": f"{self.digest:016x}"}

    @staticmethod
    def decode(value: dict[str, int | str] | None) -> IdSet:
        if not value:
            return IdSet()
        return IdSet(int(value.get("count", 0)), int(str(value.get("digest", "0")), 16))


@dataclass(frozen=True)
class PassTally:
    """One catch-up pass so far."""

    number: int = 1
    compared: int = 0
    missing: int = 0
    changed: int = 0
    removed: int = 0
    ids: IdSet = IdSet()

    @property
    def repaired(self) -> int:
        return self.missing + self.changed + self.removed

    def add(self, other: PassTally) -> PassTally:
        return replace(self, compared=self.compared + other.compared,
                       missing=self.missing + other.missing,
                       changed=self.changed + other.changed,
                       removed=self.removed + other.removed, ids=self.ids.plus(other.ids))


PassVerdict = Literal["another pass", "caught up"]


def after_pass(tally: PassTally, quiet_points: int, max_passes: int) -> PassVerdict:
    """A finished pass that repaired little (or the last pass allowed) ends the catch-up; its
    ID set is then the snapshot the master is verified against."""
    if tally.repaired <= quiet_points or tally.number >= max_passes:
        return "caught up"
    return "another pass"


def within(point_id: PointId, after: PointId | None, bound: PointId | None) -> bool:
    """``after`` < ``point_id`` <= ``bound`` in scroll order (an open end when None)."""
    key = id_order_key(point_id)
    return ((after is None or key > id_order_key(after))
            and (bound is None or key <= id_order_key(bound)))
