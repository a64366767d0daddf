"""Keeps a policy's publishing edge shard equal to its collection (the ``Build`` source).

The shard is built once with ``qdrant-edge-py`` (the engine devices run) and optimised, then
each run applies only what changed in the collection: new segments stay small, so partial
snapshots stay small. Once enough changed points have piled up unindexed, a run indexes them
(``publishing_shard_needs_indexing``); a count kept beside the shard says how many.
The collection and the shard are walked side by side in ID order.
The shard runs without a WAL: it is only ever written here, and snapshots ship an empty one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client import models as qm

from album_operator.adapters.qdrant import points as qdrant_points
from album_operator.adapters.qdrant.connection import QdrantEngine
from album_operator.adapters.qdrant.merge import point_id
from album_operator.core.edge import publishing_shard_needs_indexing
from album_operator.core.idstreams import checked_order_by, id_order_key
from album_operator.core.vectors import cosine_names, dense_vectors, same_vectors
from album_operator.models.edge_snapshot_policy import EdgeConfig, PointFilter

PAGE = 512
SEGMENTS = 8
_DISTANCES = {"Cosine": qe.Distance.Cosine, "Euclid": qe.Distance.Euclid,
              "Dot": qe.Distance.Dot, "Manhattan": qe.Distance.Manhattan}


@dataclass(frozen=True)
class VectorLayout:
    size: int
    distance: str


@dataclass(frozen=True)
class SyncResult:
    upserted: int
    deleted: int
    points: int
    rebuilt: bool
    indexed: bool
    """Whether this run indexed the points changed since the last indexing."""


def edge_config(layout: Mapping[str, VectorLayout], settings: EdgeConfig | None,
                wal: bool = False) -> qe.EdgeConfig:
    on_disk = settings.on_disk_vectors if settings else None
    vectors = {name: qe.EdgeVectorParams(size=v.size, distance=_DISTANCES[v.distance],
                                         on_disk=on_disk)
               for name, v in layout.items()}
    # A 1 KB indexing threshold makes the first optimize() seal the points into an indexed,
    # immutable segment; later changes land in a small appendable one, which is what keeps
    # partial snapshots small (with the default, a small shard stays one appendable segment
    # that every change rewrites). Room for several segments lets a later optimize() seal
    # the changes as a segment of their own instead of merging them into the big one, which
    # would make the next partial as large as a full snapshot.
    return qe.EdgeConfig(vectors=vectors, wal_enabled=wal,
                         on_disk_payload=settings.on_disk_payload if settings else None,
                         optimizers=qe.EdgeOptimizersConfig(
                             indexing_threshold=1, default_segment_number=SEGMENTS))


def qdrant_filter(spec: PointFilter | None) -> qm.Filter | None:
    if spec is None:
        return None
    must: list[Any] = []
    for cond in spec.must:
        if cond.range is not None:
            rng = cond.range
            must.append(qm.FieldCondition(key=cond.key, range=qm.Range(
                gt=rng.gt, gte=rng.gte, lt=rng.lt, lte=rng.lte)))
            continue
        match: Any
        if cond.any_keyword is not None or cond.any_integer is not None:
            match = qm.MatchAny(any=cond.any_keyword or cond.any_integer or [])
        else:
            value = next(v for v in (cond.keyword, cond.integer, cond.boolean) if v is not None)
            match = qm.MatchValue(value=value)
        must.append(qm.FieldCondition(key=cond.key, match=match))
    return qm.Filter(must=must)


def _collection_points(engine: QdrantEngine, collection: str, flt: qm.Filter | None
                       ) -> Iterator[qm.Record]:
    return qdrant_points.scroll_all(engine, collection, flt, PAGE)


def _shard_points(shard: qe.EdgeShard) -> Iterator[Any]:
    offset: Any = None
    while True:
        records, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=PAGE,
                                                        with_payload=True, with_vector=True))
        yield from records
        if offset is None:
            return


def _same(record: qm.Record, edge_record: Any, cosine: frozenset[str]) -> bool:
    return ((record.payload or {}) == (edge_record.payload or {})
            and same_vectors(record.vector, edge_record.vector, cosine))


def _edge_point(record: qm.Record) -> qe.Point:
    """Dense vectors only: the CRD's vector layouts have no sparse vectors to publish."""
    vectors = dense_vectors(record.vector)
    vector: Any = vectors[""] if set(vectors) == {""} else vectors
    return qe.Point(point_id(record.id), vector, record.payload or {})


def _checked(records: Iterator[Any], where: str) -> Iterator[Any]:
    return checked_order_by(records, where, lambda record: point_id(record.id))


def _diff(collection: Iterator[qm.Record], shard: Iterator[Any]
          ) -> Iterator[tuple[qm.Record | None, Any]]:
    """(collection record, shard record) pairs joined by ID; None where one side lacks it."""
    left, right = next(collection, None), next(shard, None)
    while left is not None or right is not None:
        lkey = id_order_key(point_id(left.id)) if left is not None else None
        rkey = id_order_key(point_id(right.id)) if right is not None else None
        if rkey is None or (lkey is not None and lkey < rkey):
            yield left, None
            left = next(collection, None)
        elif lkey is None or rkey < lkey:
            yield None, right
            right = next(shard, None)
        else:
            yield left, right
            left, right = next(collection, None), next(shard, None)


def _apply(shard: qe.EdgeShard, upserts: list[qe.Point], deletes: list[Any]) -> None:
    if upserts:
        shard.update(qe.UpdateOperation.upsert_points(upserts))
        upserts.clear()
    if deletes:
        shard.update(qe.UpdateOperation.delete_points(deletes))
        deletes.clear()


def _unindexed_file(work: Path) -> Path:
    return work.with_name(work.name + ".unindexed")


def _read_unindexed(work: Path) -> int:
    try:
        return int(_unindexed_file(work).read_text())
    except (OSError, ValueError):
        return 0  # unknown: counted afresh from here on


def _write_unindexed(work: Path, count: int) -> None:
    staging = _unindexed_file(work).with_suffix(".tmp")
    staging.write_text(str(count))
    staging.replace(_unindexed_file(work))


def sync_shard(engine: QdrantEngine, collection: str, work: Path,
               layout: Mapping[str, VectorLayout], settings: EdgeConfig | None,
               flt: PointFilter | None) -> SyncResult:
    """Brings the shard at ``work`` to the collection's (filtered) points. A shard whose
    vector layout no longer fits is rebuilt from scratch."""
    config = edge_config(layout, settings)
    rebuilt = not (work / "segments").is_dir()
    if not rebuilt:
        try:
            shard = qe.EdgeShard.load(str(work), config)
        except Exception:  # incompatible layout or damaged files: start over
            shutil.rmtree(work)
            rebuilt = True
    if rebuilt:
        work.parent.mkdir(parents=True, exist_ok=True)
        shard = qe.EdgeShard.create(str(work), config)
    cosine = cosine_names(layout)
    upserted = deleted = points = 0
    try:
        upserts: list[qe.Point] = []
        deletes: list[Any] = []
        records = _checked(_collection_points(engine, collection, qdrant_filter(flt)),
                           collection)
        for ours, theirs in _diff(records, _checked(_shard_points(shard), "edge shard")):
            if ours is None:
                deletes.append(theirs.id)
                deleted += 1
                continue
            points += 1
            if theirs is None or not _same(ours, theirs, cosine):
                upserts.append(_edge_point(ours))
                upserted += 1
            if len(upserts) >= PAGE or len(deletes) >= PAGE:
                _apply(shard, upserts, deletes)
        _apply(shard, upserts, deletes)
        # Upserts, new or edited, land in the appendable segment; deletions only mark points.
        unindexed = 0 if rebuilt else _read_unindexed(work) + upserted
        indexed = rebuilt or publishing_shard_needs_indexing(unindexed, points)
        if indexed:
            shard.optimize()
            unindexed = 0
        shard.flush()
    finally:
        shard.close()
    _write_unindexed(work, unindexed)
    return SyncResult(upserted, deleted, points, rebuilt, indexed)


def manifest(work: Path) -> dict[str, Any]:
    shard = qe.EdgeShard.load(str(work))
    try:
        result: dict[str, Any] = shard.snapshot_manifest()
        return result
    finally:
        shard.close()


def empty_wal_dir(root: Path) -> Path:
    """A directory holding the ``wal/`` of a fresh shard, for packaging (created once)."""
    marker = root / "wal"
    if not marker.is_dir():
        staging = root.with_name(root.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        qe.EdgeShard.create(str(staging), qe.EdgeConfig(
            vectors={"": qe.EdgeVectorParams(size=1, distance=qe.Distance.Dot)})).close()
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    return root
