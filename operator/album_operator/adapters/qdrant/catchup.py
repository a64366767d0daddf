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

from qdrant_client import models as qm

from album_operator.adapters.metrics import QDRANT_WRITES
from album_operator.adapters.qdrant.connection import QdrantEngine
from album_operator.adapters.qdrant.merge import (
    Offset,
    Page,
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


def catch_up_step(engine: QdrantEngine, sources: Sequence[str], target: str, after: Offset,
                  batch_size: int, cosine: frozenset[str], max_points: int
                  ) -> CatchUpProgress:
    """Settles chunks above ``after`` until about ``max_points`` were compared or the pass
    reached the end of every source."""
    reader = SourceReader(engine)
    workers = len(sources) if engine.capabilities.parallel_writes else 1
    total = PassTally()
    with ThreadPoolExecutor(max_workers=max(1, min(workers, 8)),
                            thread_name_prefix="catch-up") as pool:
        while total.compared < max_points:
            pages = list(pool.map(_page_after, [reader] * len(sources), sources,
                                  [after] * len(sources), [batch_size] * len(sources)))
            bound = chunk_bound([point_id(page.points[-1].id) if page.next_offset is not None
                                 and page.points else None for page in pages])
            tally = _settle_chunk(reader, engine, sources, target, pages, after, bound,
                                  batch_size, cosine)
            total = total.add(tally)
            if bound is None:
                return CatchUpProgress(total, None, True)
            after = point_id(bound)
    return CatchUpProgress(total, after, False)


def _page_after(reader: SourceReader, collection: str, after: Offset, batch_size: int) -> Page:
    """A page that starts above ``after``; scroll offsets are inclusive, so one more point
    is read to keep a full page from ending at ``after`` itself."""
    return reader.page(collection, after, batch_size if after is None else batch_size + 1)


def _settle_chunk(reader: SourceReader, engine: QdrantEngine, sources: Sequence[str],
                  target: str, pages: Sequence[Page], after: Offset, bound: Offset,
                  batch_size: int, cosine: frozenset[str]) -> PassTally:
    chunk = [[r for r in page.points if within(point_id(r.id), after, bound)] for page in pages]
    wanted = list(latest_union(chunk, _id_of, list(sources)))
    held = _held(reader, target, after, bound, batch_size)
    equal = _equal_points(wanted, held, cosine)
    found = list(differences(wanted, held, _id_of, lambda want, _: _id_of(want) in equal))
    _repair(engine, target, found, batch_size)
    kinds = [difference.kind for difference in found]
    return PassTally(compared=len(wanted), missing=kinds.count("missing"),
                     changed=kinds.count("changed"), removed=kinds.count("unexpected"),
                     ids=IdSet().with_ids(_id_of(r) for r in wanted))


def _held(reader: SourceReader, target: str, after: Offset, bound: Offset, batch_size: int
          ) -> list[qm.Record]:
    """The master's points in (after, bound]."""
    held: list[qm.Record] = []
    offset = after
    while True:
        page = reader.page(target, offset, batch_size)
        held.extend(r for r in page.points if within(point_id(r.id), after, bound))
        if page.next_offset is None or (
                bound is not None and id_order_key(page.next_offset) > id_order_key(bound)):
            return held
        offset = page.next_offset


def _repair(engine: QdrantEngine, target: str, found: Sequence[Difference[qm.Record]],
            batch_size: int) -> None:
    """Writes the sources' versions and removes points no source holds; each request waits
    until applied, so a settled chunk is in the master before its ID is checkpointed."""
    writes = [d.wanted for d in found if d.wanted is not None]
    removals = [d.point_id for d in found if d.kind == "unexpected"]
    for start in range(0, len(writes), batch_size):
        upsert_records(engine, target, writes[start:start + batch_size])
    for start in range(0, len(removals), batch_size):
        _delete_points(engine, target, list(removals[start:start + batch_size]))


def _delete_points(engine: QdrantEngine, target: str, ids: list[int | str]) -> None:
    QDRANT_WRITES.labels("DeletePoints").inc()
    selector = qm.PointIdsList(points=list(ids))
    engine.call(lambda client: client.delete(target, selector, wait=True))


def _id_of(record: qm.Record) -> int | str:
    return point_id(record.id)


def _equal_points(wanted: Sequence[qm.Record], held: Sequence[qm.Record],
                  cosine: frozenset[str]) -> set[int | str]:
    """IDs whose payload and vectors are the same in the sources and the master; the vectors
    of a chunk are compared in one array operation."""
    held_by_id = {_id_of(record): record for record in held}
    pairs = [(want, held_by_id[_id_of(want)]) for want in wanted
             if _id_of(want) in held_by_id
             and (want.payload or {}) == (held_by_id[_id_of(want)].payload or {})]
    verdicts = matching_pairs([(want.vector, got.vector) for want, got in pairs], cosine)
    return {_id_of(want) for (want, _), same in zip(pairs, verdicts, strict=True) if same}
