"""Point reads and writes for the edge adapters, so no client call lives outside here."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import models as qm

from album_operator.adapters.qdrant.collections import describe_sync
from album_operator.adapters.qdrant.connection import QdrantEngine
from album_operator.core.collections import ObservedCollection


def upsert(engine: QdrantEngine, collection: str, points: Sequence[qm.PointStruct]) -> None:
    """Writes ``points`` and returns once Qdrant has applied them."""
    engine.call(lambda client: client.upsert(collection, list(points), wait=True))


def describe(engine: QdrantEngine, collection: str) -> ObservedCollection | None:
    return engine.call(lambda client: describe_sync(client, collection))


def scroll_all(engine: QdrantEngine, collection: str, flt: qm.Filter | None,
               page: int) -> Iterator[qm.Record]:
    """Every point matching ``flt``, with payload and vectors, a page at a time."""
    offset: Any = None
    while True:
        def scroll(client: Any, start: Any = offset) -> tuple[list[qm.Record], Any]:
            result: tuple[list[qm.Record], Any] = client.scroll(
                collection, scroll_filter=flt, limit=page, offset=start,
                with_payload=True, with_vectors=True)
            return result
        records, offset = engine.call(scroll)
        yield from records
        if offset is None:
            return
