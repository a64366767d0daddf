"""The Qdrant side of a catch-up pass: reads the sources and the master chunk by chunk in
scroll order and repairs the master (upserts what it lacks or holds in another version,
deletes what no source holds any more). Sources are only scrolled; every write names the
target.

A chunk is the sources' next points in scroll order and the master's up to the last of
them, so a pass can stop after any chunk and resume from the last settled ID (kept in status)
while holding about a page of every collection.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from qdrant_client import models as qm

from album_operator.adapters.metrics import QDRANT_WRITES
from album_operator.adapters.qdrant.connection import QdrantEngine
from album_operator.adapters.qdrant.grpccopy import GrpcPoints
from album_operator.adapters.qdrant.merge import (
    Offset,
    RestTransport,
    SourceReader,
    read_ahead,
    upsert_records,
)
from album_operator.core.catchup import (
    Difference,
    IdSet,
    PassTally,
    differences,
    latest_union,
    within,
)
from album_operator.core.vectors import matching_pairs


@dataclass(frozen=True)
class CatchUpProgress:
    tally: PassTally
    """What this step compared and repaired (its ``number`` is not used)."""
    after: Offset
    """Every ID up to this one is settled; the pass resumes above it."""
    finished: bool


class CatchUpPoints(Protocol):
    """How a catch-up reads, compares and rewrites points: qdrant-client records over REST,
    or protobuf messages over gRPC (``grpccopy.GrpcPoints``), never decoded."""

    def page(self, collection: str, offset: Offset, limit: int) -> tuple[list[Any], Offset]:
        ...

    def id_of(self, point: Any) -> int | str:
        ...

    def equal(self, pairs: Sequence[tuple[Any, Any]], cosine: frozenset[str]) -> list[bool]:
        ...

    def write(self, target: str, points: Sequence[Any]) -> None:
        ...


class RestPoints:
    """Points as qdrant-client records."""

    def __init__(self, engine: QdrantEngine, read_by_id: frozenset[str] = frozenset()
                 ) -> None:
        self._reader, self._engine = SourceReader(engine), engine
        self._read_by_id = read_by_id

    def page(self, collection: str, offset: Offset, limit: int) -> tuple[list[Any], Offset]:
        page = self._reader.page(collection, offset, limit, collection in self._read_by_id)
        return page.points, page.next_offset

    id_of = staticmethod(RestTransport.id_of)

    @staticmethod
    def equal(pairs: Sequence[tuple[Any, Any]], cosine: frozenset[str]) -> list[bool]:
        same_vectors = matching_pairs([(a.vector, b.vector) for a, b in pairs], cosine)
        return [(a.payload or {}) == (b.payload or {}) and same
                for (a, b), same in zip(pairs, same_vectors, strict=True)]

    def write(self, target: str, points: Sequence[Any]) -> None:
        upsert_records(self._engine, target, points)


def catch_up_points(engine: QdrantEngine, read_by_id: frozenset[str] = frozenset()
                    ) -> CatchUpPoints:
    if engine.points_stub() is not None:
        return GrpcPoints(engine, read_by_id)
    return RestPoints(engine, read_by_id)


def catch_up_step(engine: QdrantEngine, sources: Sequence[str], target: str, after: Offset,
                  batch_size: int, cosine: frozenset[str], max_points: int
                  ) -> CatchUpProgress:
    """Settles chunks above ``after`` until about ``max_points`` were compared or the pass
    reached the end of every source. Every collection is read once, page by page, in scroll
    order; a chunk is the union's next ``batch_size`` points and the master's up to them."""
    points = catch_up_points(engine, SourceReader(engine).read_by_id([*sources, target]))
    readers = len(sources) + 1 if engine.capabilities.parallel_writes else 1
    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="catch-up") as pool:
        union = latest_union([_stream(points, source, after, batch_size, pool)
                              for source in sources], points.id_of, list(sources))
        master = _Lookahead(_stream(points, target, after, batch_size, pool), points.id_of)
        total = PassTally()
        while total.compared < max_points:
            wanted = list(itertools.islice(union, batch_size))
            bound = points.id_of(wanted[-1]) if len(wanted) == batch_size else None
            total = total.add(_settle_chunk(points, engine, target, wanted,
                                            master.up_to(bound), batch_size, cosine))
            if bound is None:
                return CatchUpProgress(total, None, True)
            after = bound
        return CatchUpProgress(total, after, False)


def _stream(points: CatchUpPoints, collection: str, after: Offset, batch_size: int,
            pool: ThreadPoolExecutor) -> Iterator[Any]:
    """A collection's points above ``after`` in scroll order, read a page at a time; the next
    page is read while this one is compared (every collection's at once on a server)."""
    pages = read_ahead(lambda offset: points.page(collection, offset, batch_size), after, pool)
    return (p for p in pages if within(points.id_of(p), after, None))


class _Lookahead:
    """A point stream from which a chunk takes the points up to its bound, leaving the rest
    for the next chunk."""

    def __init__(self, stream: Iterator[Any], id_of: Callable[[Any], int | str]) -> None:
        self._stream, self._id_of = stream, id_of
        self._next: list[Any] = []

    def up_to(self, bound: Offset) -> list[Any]:
        taken: list[Any] = []
        while True:
            if not self._next:
                following = next(self._stream, None)
                if following is None:
                    return taken
                self._next.append(following)
            if bound is not None and not within(self._id_of(self._next[0]), None, bound):
                return taken
            taken.append(self._next.pop())


def _settle_chunk(points: CatchUpPoints, engine: QdrantEngine, target: str,
                  wanted: list[Any], held: list[Any], batch_size: int,
                  cosine: frozenset[str]) -> PassTally:
    equal = _equal_points(points, wanted, held, cosine)
    found = list(differences(wanted, held, points.id_of,
                             lambda want, _: points.id_of(want) in equal))
    _repair(points, engine, target, found, batch_size)
    kinds = [difference.kind for difference in found]
    return PassTally(compared=len(wanted), missing=kinds.count("missing"),
                     changed=kinds.count("changed"), removed=kinds.count("unexpected"),
                     ids=IdSet().with_ids(points.id_of(p) for p in wanted))


def _equal_points(points: CatchUpPoints, wanted: Sequence[Any], held: Sequence[Any],
                  cosine: frozenset[str]) -> set[int | str]:
    """IDs whose payload and vectors are the same in the sources and the master; a chunk's
    vectors are compared in one array operation."""
    held_by_id = {points.id_of(point): point for point in held}
    pairs = [(want, held_by_id[points.id_of(want)]) for want in wanted
             if points.id_of(want) in held_by_id]
    return {points.id_of(want) for (want, _), same in zip(pairs, points.equal(pairs, cosine),
                                                           strict=True) if same}


def _repair(points: CatchUpPoints, engine: QdrantEngine, target: str,
            found: Sequence[Difference[Any]], batch_size: int) -> None:
    """Writes the sources' versions and removes points no source holds; each request waits
    until applied, so a settled chunk is in the master before its ID is checkpointed."""
    writes = [d.wanted for d in found if d.wanted is not None]
    removals = [d.point_id for d in found if d.kind == "unexpected"]
    for start in range(0, len(writes), batch_size):
        points.write(target, writes[start:start + batch_size])
    for start in range(0, len(removals), batch_size):
        _delete_points(engine, target, list(removals[start:start + batch_size]))


def _delete_points(engine: QdrantEngine, target: str, ids: list[int | str]) -> None:
    QDRANT_WRITES.labels("DeletePoints").inc()
    selector = qm.PointIdsList(points=list(ids))
    engine.call(lambda client: client.delete(target, selector, wait=True))
