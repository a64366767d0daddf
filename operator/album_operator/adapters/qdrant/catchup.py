"""The Qdrant side of a catch-up pass: reads the sources and the master chunk by chunk in
scroll order and repairs the master (upserts what it lacks or holds in another version,
deletes what no source holds any more). Sources are read through ``SourceReader`` only.

A chunk ends at an ID below which every source was read, so a pass can stop after any chunk
and resume from the last settled ID (kept in status) without holding more than a page of
every collection.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from qdrant_client import models as qm

from album_operator.adapters.metrics import QDRANT_WRITES
from album_operator.adapters.qdrant.connection import QdrantEngine
from album_operator.adapters.qdrant.grpccopy import GrpcPoints
from album_operator.adapters.qdrant.merge import (
    Offset,
    SourceReader,
    point_id,
    upsert_records,
)
from album_operator.core.catchup import (
    Difference,
    IdSet,
    PassTally,
    chunk_bound,
    differences,
    latest_union,
    within,
)
from album_operator.core.idstreams import id_order_key
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

    def __init__(self, engine: QdrantEngine) -> None:
        self._reader, self._engine = SourceReader(engine), engine

    def page(self, collection: str, offset: Offset, limit: int) -> tuple[list[Any], Offset]:
        page = self._reader.page(collection, offset, limit)
        return page.points, page.next_offset

    @staticmethod
    def id_of(point: Any) -> int | str:
        return point_id(point.id)

    @staticmethod
    def equal(pairs: Sequence[tuple[Any, Any]], cosine: frozenset[str]) -> list[bool]:
        same_vectors = matching_pairs([(a.vector, b.vector) for a, b in pairs], cosine)
        return [(a.payload or {}) == (b.payload or {}) and same
                for (a, b), same in zip(pairs, same_vectors, strict=True)]

    def write(self, target: str, points: Sequence[Any]) -> None:
        upsert_records(self._engine, target, points)


def catch_up_points(engine: QdrantEngine) -> CatchUpPoints:
    return GrpcPoints(engine) if engine.points_stub() is not None else RestPoints(engine)


def catch_up_step(engine: QdrantEngine, sources: Sequence[str], target: str, after: Offset,
                  batch_size: int, cosine: frozenset[str], max_points: int
                  ) -> CatchUpProgress:
    """Settles chunks above ``after`` until about ``max_points`` were compared or the pass
    reached the end of every source."""
    points = catch_up_points(engine)
    workers = len(sources) if engine.capabilities.parallel_writes else 1
    total = PassTally()
    with ThreadPoolExecutor(max_workers=max(1, min(workers, 8)),
                            thread_name_prefix="catch-up") as pool:
        while total.compared < max_points:
            pages = list(pool.map(_page_after, [points] * len(sources), sources,
                                  [after] * len(sources), [batch_size] * len(sources)))
            bound = chunk_bound([points.id_of(page[-1]) if following is not None and page
                                 else None for page, following in pages])
            chunk = [[p for p in page if within(points.id_of(p), after, bound)]
                     for page, _ in pages]
            tally = _settle_chunk(points, engine, sources, target, chunk, after, bound,
                                  batch_size, cosine)
            total = total.add(tally)
            if bound is None:
                return CatchUpProgress(total, None, True)
            after = bound
    return CatchUpProgress(total, after, False)


def _page_after(points: CatchUpPoints, collection: str, after: Offset, batch_size: int
                ) -> tuple[list[Any], Offset]:
    """A page that starts above ``after``; scroll offsets are inclusive, so one more point
    is read to keep a full page from ending at ``after`` itself."""
    return points.page(collection, after, batch_size if after is None else batch_size + 1)


def _settle_chunk(points: CatchUpPoints, engine: QdrantEngine, sources: Sequence[str],
                  target: str, chunk: list[list[Any]], after: Offset, bound: Offset,
                  batch_size: int, cosine: frozenset[str]) -> PassTally:
    wanted = list(latest_union(chunk, points.id_of, list(sources)))
    held = _held(points, target, after, bound, batch_size)
    equal = _equal_points(points, wanted, held, cosine)
    found = list(differences(wanted, held, points.id_of,
                             lambda want, _: points.id_of(want) in equal))
    _repair(points, engine, target, found, batch_size)
    kinds = [difference.kind for difference in found]
    return PassTally(compared=len(wanted), missing=kinds.count("missing"),
                     changed=kinds.count("changed"), removed=kinds.count("unexpected"),
                     ids=IdSet().with_ids(points.id_of(p) for p in wanted))


def _held(points: CatchUpPoints, target: str, after: Offset, bound: Offset, batch_size: int
          ) -> list[Any]:
    """The master's points in (after, bound]."""
    held: list[Any] = []
    offset = after
    while True:
        page, following = points.page(target, offset, batch_size)
        held.extend(p for p in page if within(points.id_of(p), after, bound))
        if following is None or (
                bound is not None and id_order_key(following) > id_order_key(bound)):
            return held
        offset = following


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
