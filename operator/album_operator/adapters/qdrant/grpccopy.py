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

Offset = int | str | None


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
        request = grpc.ScrollPoints(
            collection_name=source, limit=limit,
            with_payload=grpc.WithPayloadSelector(enable=True),
            with_vectors=grpc.WithVectorsSelector(enable=True))
        if offset is not None:
            request.offset.CopyFrom(to_grpc_id(offset))
        response = self._engine.grpc(
            lambda stub: stub.Scroll(request, timeout=REQUEST_TIMEOUT_S))
        following = (from_grpc_id(response.next_page_offset)
                     if response.HasField("next_page_offset") else None)
        return [as_upsert(point) for point in response.result], following

    def write(self, target: str, points: Sequence[Any], wait: bool) -> None:
        request = grpc.UpsertPoints(collection_name=target, wait=wait, points=list(points))
        QDRANT_WRITES.labels("UpsertPoints").inc()
        self._engine.grpc(lambda stub: stub.Upsert(request, timeout=REQUEST_TIMEOUT_S))
