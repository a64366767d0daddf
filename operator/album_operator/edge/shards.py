"""The qdrant-edge-py calls of the device, each one step that leaves no half-made shard.

- ``create_local(path, layout, work)``: an empty mutable shard (WAL on) with the mirror's
  vector layout, built in ``work`` and renamed into place.
- ``restore_full(snapshot, staging) -> int``: ``unpack_snapshot`` into ``staging``, then load
  and close it to prove it works; the point count.
- ``apply_partial(mirror, snapshot, work) -> (staging, points)``: a sparse copy of the
  mirror in ``work``, ``update_from_snapshot`` on the copy, a sparse copy of the result
  (the engine writes replaced files dense), loaded again to prove it. The mirror itself is
  never touched; the caller swaps the staging tree in.
- ``snapshot_layout(shard_dir)``: the dense vector layout a shard directory declares in its
  ``edge_config.json`` (None when it has none).
- ``search(shard, vector, using, limit)`` and ``present_ids(shard, ids)``.
- ``pages(shard)``, ``retrieve(shard, ids)`` and ``delete(shard, ids)``: the points of a
  shard page by page with payloads and vectors, some of them by ID, and their removal.
All engine errors come out as :class:`~album_operator.edge.errors.DeviceError`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    Point,
    Query,
    QueryRequest,
    ScrollRequest,
    UpdateOperation,
)

from album_operator.edge.errors import DeviceError
from album_operator.edge.fsutil import fsync_dir, sparse_copytree
from album_operator.edge.points import (
    UNNAMED,
    EdgePoint,
    Hit,
    Source,
    VectorSpec,
    id_key,
    layout_from_json,
    normalise_id,
)

if TYPE_CHECKING:
    from qdrant_edge import Vector as EngineVector

_DISTANCES = {"cosine": Distance.Cosine, "dot": Distance.Dot, "euclid": Distance.Euclid,
              "manhattan": Distance.Manhattan}


@contextmanager
def engine_errors(what: str) -> Iterator[None]:
    try:
        yield
    except DeviceError:
        raise
    except Exception as error:  # qdrant-edge-py raises plain Exception
        raise DeviceError(f"{what}: {error}") from None


def load(path: Path) -> EdgeShard:
    with engine_errors(f"cannot load the shard at {path}"):
        return EdgeShard.load(str(path))


def close_quietly(shard: EdgeShard | None) -> None:
    if shard is None:
        return
    try:
        shard.close()
    except Exception:  # an object a failed update left unusable; its files are discarded
        return


def create_local(path: Path, layout: Mapping[str, VectorSpec], work: Path) -> None:
    config = EdgeConfig(vectors={
        name: EdgeVectorParams(size=spec.size, distance=_DISTANCES[spec.distance.lower()])
        for name, spec in layout.items()})
    staging = work / "local"
    with engine_errors("cannot create the local shard"):
        EdgeShard.create(str(staging), config).close()
    os.rename(staging, path)
    fsync_dir(path.parent)


def restore_full(snapshot: Path, staging: Path) -> int:
    with engine_errors("the snapshot does not unpack into a shard"):
        EdgeShard.unpack_snapshot(str(snapshot), str(staging))
    shard = load(staging)
    try:
        with engine_errors("the restored shard does not answer"):
            return int(shard.info().points_count)
    finally:
        close_quietly(shard)


def apply_partial(mirror: Path, snapshot: Path, work: Path) -> tuple[Path, int]:
    staging = work / "mirror"
    sparse_copytree(mirror, staging)
    unpack = work / "unpack"
    unpack.mkdir()
    shard = load(staging)
    try:
        with engine_errors("the partial snapshot does not apply"):
            shard.update_from_snapshot(str(snapshot), tmp_dir=str(unpack))
            shard.flush()
    finally:
        close_quietly(shard)
    shutil.rmtree(unpack, ignore_errors=True)
    # update_from_snapshot writes the files it replaces dense (a 32 MiB preallocated file
    # costs 32 MiB): copy once more, sparse, and prove that copy loads.
    compact = work / "compact"
    sparse_copytree(staging, compact)
    shutil.rmtree(staging)
    check = load(compact)
    try:
        with engine_errors("the updated shard does not answer"):
            return compact, int(check.info().points_count)
    finally:
        close_quietly(check)


def snapshot_layout(shard_dir: Path) -> dict[str, VectorSpec] | None:
    try:
        config = json.loads((shard_dir / "edge_config.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    vectors = config.get("vectors") if isinstance(config, dict) else None
    if not vectors:
        return None
    try:
        return layout_from_json(vectors)
    except (ValueError, AttributeError):
        return None


def upsert(shard: EdgeShard, points: Sequence[EdgePoint]) -> None:
    with engine_errors("the local shard refused the points"):
        shard.update(UpdateOperation.upsert_points(
            [Point(point.id, _engine_vector(point), point.payload) for point in points]))


def _engine_vector(point: EdgePoint) -> EngineVector:
    if isinstance(point.vector, dict):
        return dict(point.vector.items())
    return point.vector


def search(shard: EdgeShard, vector: list[float], using: str, limit: int,
           source: Source) -> list[Hit]:
    request = QueryRequest(limit=limit, query=Query.Nearest(
        vector, using=None if using == UNNAMED else using), with_payload=True)
    with engine_errors(f"the {source} shard cannot answer the query"):
        found = shard.query(request)
    return [Hit(normalise_id(hit.id), float(hit.score), dict(hit.payload or {}), source)
            for hit in found]


def present_ids(shard: EdgeShard, ids: Sequence[object]) -> set[str]:
    """The ID keys among ``ids`` that ``shard`` holds."""
    if not ids:
        return set()
    wanted = [normalise_id(raw) for raw in ids]
    with engine_errors("the local shard cannot retrieve points"):
        records = shard.retrieve(list(wanted), False, False)
    return {id_key(record.id) for record in records}


def pages(shard: EdgeShard, size: int = 256) -> Iterator[list[Any]]:
    offset: Any = None
    while True:
        with engine_errors("the local shard cannot list its points"):
            records, offset = shard.scroll(ScrollRequest(
                offset=offset, limit=size, with_payload=True, with_vector=True))
        if records:
            yield list(records)
        if offset is None:
            return


def retrieve(shard: EdgeShard, ids: Sequence[object]) -> list[Any]:
    if not ids:
        return []
    with engine_errors("the mirror cannot retrieve points"):
        return list(shard.retrieve([normalise_id(raw) for raw in ids], True, True))


def delete(shard: EdgeShard, ids: Sequence[object]) -> None:
    if ids:
        with engine_errors("the local shard cannot delete points"):
            shard.update(UpdateOperation.delete_points([normalise_id(raw) for raw in ids]))
