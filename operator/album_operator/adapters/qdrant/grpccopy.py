"""The copy's transport over gRPC: scrolled points go back out as upserts without ever
becoming Python objects (no JSON, no pydantic models, no lists of floats), which is where a
REST copy spends its client's time.

A scrolled ``RetrievedPoint`` and an upserted ``PointStruct`` share their ID; their vectors
messages (``VectorsOutput``, ``Vectors``) have the same field numbers and types, so the
bytes of one parse as the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import grpc

from album_operator.adapters.metrics import QDRANT_WRITES
from album_operator.adapters.qdrant.connection import REQUEST_TIMEOUT_S, QdrantEngine
from album_operator.core.idstreams import PointId
from album_operator.core.vectors import rows_match

Offset = PointId | None


def to_grpc_id(point_id: int | str) -> Any:
    return grpc.PointId(num=point_id) if isinstance(point_id, int) else grpc.PointId(
        uuid=point_id)


def from_grpc_id(point_id: Any) -> int | str:
    kind = point_id.WhichOneof("point_id_options")
    return int(point_id.num) if kind == "num" else str(point_id.uuid)


def as_upsert(point: Any) -> Any:
    """A scrolled point as the same point to upsert."""
    return grpc.PointStruct(id=point.id, payload=point.payload,
                            vectors=grpc.Vectors.FromString(point.vectors.SerializeToString()))


class GrpcTransport:
    """Pages of a source and upserts into the target, as protobuf messages end to end."""

    def __init__(self, engine: QdrantEngine) -> None:
        self._engine = engine

    def page(self, source: str, offset: Offset, limit: int) -> tuple[list[Any], Offset]:
        points, following = self.scrolled(source, offset, limit)
        return [as_upsert(point) for point in points], following

    def by_id(self, source: str, ids: Sequence[int | str]) -> list[Any]:
        return [as_upsert(point) for point in self.retrieved(source, ids)]

    def scrolled(self, source: str, offset: Offset, limit: int) -> tuple[list[Any], Offset]:
        """A page of ``RetrievedPoint`` messages, and the offset of the next."""
        response, following = self._scroll(source, offset, limit, whole_points=True)
        return list(response.result), following

    def retrieved(self, collection: str, ids: Sequence[int | str]) -> list[Any]:
        """The points of ``ids`` that exist, as ``RetrievedPoint`` messages in that order."""
        if not ids:
            return []
        request = grpc.GetPoints(collection_name=collection,
                                 ids=[to_grpc_id(point_id) for point_id in ids],
                                 with_payload=grpc.WithPayloadSelector(enable=True),
                                 with_vectors=grpc.WithVectorsSelector(enable=True))
        response = self._engine.grpc(lambda stub: stub.Get(request, timeout=REQUEST_TIMEOUT_S))
        return list(response.result)

    def id_page(self, collection: str, offset: Offset, limit: int
                ) -> tuple[list[int | str], Offset]:
        """A page of IDs alone (no payload, no vectors), and the offset of the next."""
        response, following = self._scroll(collection, offset, limit, whole_points=False)
        return [from_grpc_id(point.id) for point in response.result], following

    def _scroll(self, collection: str, offset: Offset, limit: int, whole_points: bool
                ) -> tuple[Any, Offset]:
        request = grpc.ScrollPoints(
            collection_name=collection, limit=limit,
            with_payload=grpc.WithPayloadSelector(enable=whole_points),
            with_vectors=grpc.WithVectorsSelector(enable=whole_points))
        if offset is not None:
            request.offset.CopyFrom(to_grpc_id(offset))
        response = self._engine.grpc(
            lambda stub: stub.Scroll(request, timeout=REQUEST_TIMEOUT_S))
        following = (from_grpc_id(response.next_page_offset)
                     if response.HasField("next_page_offset") else None)
        return response, following

    @staticmethod
    def id_of(point: Any) -> int | str:
        return from_grpc_id(point.id)

    def write(self, target: str, points: Sequence[Any], wait: bool) -> None:
        request = grpc.UpsertPoints(collection_name=target, wait=wait, points=list(points))
        QDRANT_WRITES.labels("UpsertPoints").inc()
        self._engine.grpc(lambda stub: stub.Upsert(request, timeout=REQUEST_TIMEOUT_S))


def _dense(vector: Any) -> Any:
    """A ``VectorOutput``'s dense values, or None for a sparse or multi-vector one."""
    if vector.HasField("dense"):
        return vector.dense.data
    if vector.HasField("sparse") or vector.HasField("multi_dense") or len(vector.indices.data):
        return None
    return vector.data


def named_vectors(point: Any) -> dict[str, Any]:
    """A ``RetrievedPoint``'s vectors by name ("" for the unnamed one), as ``VectorOutput``."""
    vectors = point.vectors
    if vectors.HasField("vectors"):
        return dict(vectors.vectors.vectors)
    return {"": vectors.vector} if vectors.HasField("vector") else {}


def same_payload(left: Any, right: Any) -> bool:
    return set(left.payload) == set(right.payload) and all(
        left.payload[key] == right.payload[key] for key in left.payload)


class GrpcPoints:
    """The catch-up's view of points as ``RetrievedPoint`` messages (``catchup.py``)."""

    def __init__(self, engine: QdrantEngine, read_by_id: frozenset[str] = frozenset()
                 ) -> None:
        self._transport, self._read_by_id = GrpcTransport(engine), read_by_id

    def page(self, collection: str, offset: Offset, limit: int) -> tuple[list[Any], Offset]:
        """A page of ``RetrievedPoint`` messages; a collection in ``read_by_id`` as a page of
        IDs and then those points (``core.merge.reads_by_id``)."""
        if collection in self._read_by_id:
            ids, following = self._transport.id_page(collection, offset, limit)
            return self._transport.retrieved(collection, ids), following
        return self._transport.scrolled(collection, offset, limit)

    id_of = staticmethod(GrpcTransport.id_of)

    @staticmethod
    def equal(pairs: Sequence[tuple[Any, Any]], cosine: frozenset[str]) -> list[bool]:
        """Payloads compared value by value; dense vectors in bulk within float32 precision
        (``rows_match``); sparse and multi-vectors byte for byte."""
        verdict = [same_payload(a, b) for a, b in pairs]
        mine = [named_vectors(a) for a, _ in pairs]
        theirs = [named_vectors(b) for _, b in pairs]
        for i, (ours, other) in enumerate(zip(mine, theirs, strict=True)):
            verdict[i] = verdict[i] and ours.keys() == other.keys()
        for name in {name for vectors in mine for name in vectors}:
            rows, left, right = [], [], []
            for i, ok in enumerate(verdict):
                if not ok or name not in mine[i]:
                    continue
                a, b = _dense(mine[i][name]), _dense(theirs[i][name])
                if a is None or b is None:
                    verdict[i] = (mine[i][name].SerializeToString()
                                  == theirs[i][name].SerializeToString())
                else:
                    rows.append(i)
                    left.append(a)
                    right.append(b)
            for i, ok in zip(rows, rows_match(left, right, normalise=name in cosine),
                             strict=True):
                verdict[i] = ok
        return verdict

    def write(self, target: str, points: Sequence[Any]) -> None:
        self._transport.write(target, [as_upsert(point) for point in points], True)
