"""The Qdrant side of a merge: read sources, write the target, move the alias.

Sources are reached only through ``SourceReader``, which has no method that writes and does
not expose its client, so the merge path cannot modify a source even by mistake.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.metrics import QDRANT_WRITES
from album_operator.adapters.qdrant.connection import QdrantEngine, QdrantError
from album_operator.adapters.qdrant.grpccopy import GrpcTransport
from album_operator.core.idstreams import (
    CollisionScan,
    IdRange,
    PointId,
    RangeCutter,
    precedes,
    scan_collisions,
)
from album_operator.core.merge import parse_version, reads_by_id

Offset = PointId | None
T = TypeVar("T")
ID_PAGE_SIZE = 8192
"""IDs per scroll of an ID scan: pages without payloads or vectors are small."""
EXACT_SEARCH = qm.SearchParams(exact=True, quantization=qm.QuantizationSearchParams(ignore=True))


def point_id(value: int | str | uuid.UUID) -> PointId:
    """IDs as the rest of the code sees them: an int, or a UUID as a string."""
    return str(value) if isinstance(value, uuid.UUID) else value


def encode_offset(offset: Offset) -> str | None:
    """Scroll checkpoints go into status as JSON (an int or a UUID string)."""
    return None if offset is None else json.dumps(offset)


def decode_offset(value: str | None) -> Offset:
    if value is None:
        return None
    decoded: PointId = json.loads(value)
    return decoded


@dataclass(frozen=True)
class Page:
    points: list[qm.Record]
    next_offset: Offset


class SourceReader:
    """Read-only access to source collections."""

    def __init__(self, engine: QdrantEngine) -> None:
        self._engine = engine

    @property
    def concurrent(self) -> bool:
        """Whether reads may run at once (a server; the embedded engine serialises them)."""
        return self._engine.capabilities.parallel_writes

    def count(self, collection: str) -> int:
        return self._engine.call(lambda c: c.count(collection, exact=True).count)

    def page(self, collection: str, offset: Offset, limit: int, by_id: bool = False) -> Page:
        """The next ``limit`` points from ``offset``; ``by_id``: a page of IDs, then those
        points (``core.merge.reads_by_id``)."""
        if by_id:
            ids, following = self.id_page(collection, offset, limit)
            return Page(self.retrieve(collection, ids) if ids else [], following)

        def scroll(client: QdrantClient) -> Page:
            points, next_offset = client.scroll(collection, limit=limit, offset=offset,
                                                with_payload=True, with_vectors=True)
            return Page(points, None if next_offset is None else point_id(next_offset))
        return self._engine.call(scroll)

    def read_by_id(self, collections: Sequence[str]) -> frozenset[str]:
        """The collections a copy reads by ID rather than by whole scrolled pages."""
        sharding = self._engine.capabilities.applies_sharding
        if not sharding:
            return frozenset()

        def shard_numbers(client: QdrantClient) -> dict[str, int | None]:
            return {name: client.get_collection(name).config.params.shard_number
                    for name in collections}
        numbers = self._engine.call(shard_numbers)
        return frozenset(name for name, shards in numbers.items()
                         if reads_by_id(sharding, shards))

    def ids(self, collection: str, pool: Executor | None = None) -> Iterator[PointId]:
        """A collection's IDs in scroll order; with a ``pool``, the next page is read while
        this one is consumed."""
        return read_ahead(lambda offset: self.id_page(collection, offset), None, pool)

    def id_page(self, collection: str, offset: Offset, limit: int = ID_PAGE_SIZE
                ) -> tuple[list[PointId], Offset]:
        if self._engine.points_stub() is not None:
            return GrpcTransport(self._engine).id_page(collection, offset, limit)

        def scroll(client: QdrantClient) -> tuple[list[qm.Record], Any]:
            return client.scroll(collection, limit=limit, offset=offset,
                                 with_payload=False, with_vectors=False)
        points, following = self._engine.call(scroll)
        return [point_id(p.id) for p in points], (
            None if following is None else point_id(following))

    @contextmanager
    def id_streams(self, collections: Sequence[str]
                   ) -> Iterator[list[tuple[str, Iterator[PointId]]]]:
        """Every collection's IDs, read ahead all at once on a server (an ID scan waits on
        the slowest stream, so they are read side by side rather than one after another)."""
        if not self.concurrent:
            yield [(name, self.ids(name)) for name in collections]
            return
        with ThreadPoolExecutor(max_workers=len(collections) or 1,
                                thread_name_prefix="id-scan") as pool:
            yield [(name, self.ids(name, pool)) for name in collections]

    def retrieve(self, collection: str, ids: Sequence[PointId]) -> list[qm.Record]:
        return self._engine.call(lambda c: c.retrieve(collection, list(ids), with_payload=True,
                                                      with_vectors=True))

    def search(self, collection: str, vector: Any, limit: int,
               using: str | None = None) -> list[tuple[PointId, float]]:
        """The exact top ``limit``: a full scan of the original vectors, so two collections
        holding the same points give the same answer whatever their indexes."""
        # An engine without HNSW graphs always scans, and warns about search params.
        params = EXACT_SEARCH if self._engine.capabilities.applies_hnsw else None
        hits = self._engine.call(lambda c: c.query_points(
            collection, query=vector, using=using, limit=limit, search_params=params).points)
        return [(point_id(hit.id), hit.score) for hit in hits]


def upsert_records(engine: QdrantEngine, target: str, records: Sequence[qm.Record],
                   wait: bool = True) -> None:
    """Writes records to the target with their IDs, payloads and vectors unchanged. Without
    ``wait`` the server acknowledges once the write is in its log, before it is applied."""
    points = [qm.PointStruct(id=r.id, vector=r.vector or {}, payload=r.payload or {})
              for r in records]
    QDRANT_WRITES.labels("UpsertPoints").inc()
    engine.call(lambda c: c.upsert(target, points, wait=wait))


def scan_sources(reader: SourceReader, sources: Sequence[str], every: int | None
                 ) -> tuple[CollisionScan, dict[str, list[IdRange]]]:
    """One pass over every source's IDs: the collisions, and each source cut into ranges of
    ``every`` points (None: whole) for the copy."""
    cutters = {source: RangeCutter(every) for source in sources}
    with reader.id_streams(sources) as streams:
        scan = scan_collisions([(name, cutters[name].tap(ids)) for name, ids in streams])
    return scan, {source: cutter.ranges for source, cutter in cutters.items()}


def read_ahead(fetch: Callable[[Offset], tuple[Sequence[T], Offset]], start: Offset,
               pool: Executor | None) -> Iterator[T]:
    """The items of the pages ``fetch`` returns from ``start`` on. With a ``pool`` the next
    page is fetched while this one is consumed, so at most two pages are held."""
    if pool is None:
        offset = start
        while True:
            page, offset = fetch(offset)
            yield from page
            if offset is None:
                return
    reading = pool.submit(fetch, start)
    while True:
        page, following = reading.result()
        if following is not None:
            reading = pool.submit(fetch, following)
        yield from page
        if following is None:
            return


@dataclass(frozen=True)
class CopyProgress:
    copied: int
    next_offset: Offset
    done: bool


class CopyTransport(Protocol):
    """How a copy reads a source's pages and writes them to the target."""

    def page(self, source: str, offset: Offset, limit: int) -> tuple[Sequence[Any], Offset]:
        ...

    def id_page(self, source: str, offset: Offset, limit: int
                ) -> tuple[Sequence[PointId], Offset]:
        ...

    def by_id(self, source: str, ids: Sequence[PointId]) -> Sequence[Any]:
        ...

    def write(self, target: str, points: Sequence[Any], wait: bool) -> None:
        ...

    def id_of(self, point: Any) -> PointId:
        ...


class RestTransport:
    """Pages as qdrant-client records, over whichever client the engine has."""

    def __init__(self, reader: SourceReader, engine: QdrantEngine) -> None:
        self._reader, self._engine = reader, engine

    def page(self, source: str, offset: Offset, limit: int) -> tuple[Sequence[Any], Offset]:
        page = self._reader.page(source, offset, limit)
        return page.points, page.next_offset

    def id_page(self, source: str, offset: Offset, limit: int
                ) -> tuple[Sequence[PointId], Offset]:
        return self._reader.id_page(source, offset, limit)

    def by_id(self, source: str, ids: Sequence[PointId]) -> Sequence[Any]:
        return self._reader.retrieve(source, ids)

    def write(self, target: str, points: Sequence[Any], wait: bool) -> None:
        upsert_records(self._engine, target, points, wait)

    @staticmethod
    def id_of(point: Any) -> PointId:
        return point_id(point.id)


def copy_transport(reader: SourceReader, engine: QdrantEngine) -> CopyTransport:
    """gRPC when the connection names a gRPC port (protobuf end to end), else REST."""
    if engine.points_stub() is not None:
        return GrpcTransport(engine)
    return RestTransport(reader, engine)


def _before(items: Sequence[T], following: Offset, until: Offset,
            id_of: Callable[[T], PointId]) -> tuple[Sequence[T], Offset]:
    """A page cut at the end of its range: items at or past ``until`` belong to the next
    range, and the range is done when it reaches one."""
    if until is None:
        return items, following
    kept = [item for item in items if precedes(id_of(item), until)]
    if len(kept) < len(items) or (following is not None and not precedes(following, until)):
        return kept, None
    return kept, following


def _pages(transport: CopyTransport, source: str, offset: Offset, batch_size: int,
           max_batches: int, until: Offset, by_id: bool
           ) -> Iterator[tuple[Sequence[Any], Offset]]:
    """A step's pages of ``source`` from ``offset``, each with the offset after it (None:
    the range is done). ``by_id``: the step's IDs in one read, then their points a page at
    a time (``core.merge.reads_by_id``)."""
    if by_id:
        ids, following = _before(*transport.id_page(source, offset, batch_size * max_batches),
                                 until, _same)
        for start in range(0, len(ids), batch_size):
            end = start + batch_size
            yield (transport.by_id(source, ids[start:end]),
                   ids[end] if end < len(ids) else following)
        if not ids:
            yield [], following
        return
    for _ in range(max_batches):
        points, offset = _before(*transport.page(source, offset, batch_size), until,
                                 transport.id_of)
        yield points, offset
        if offset is None:
            return


def _same(point: PointId) -> PointId:
    return point


def _copy_serially(transport: CopyTransport, target: str,
                   pages: Iterator[tuple[Sequence[Any], Offset]]) -> CopyProgress:
    copied, reached = 0, None
    for points, following in pages:
        if points:
            transport.write(target, points, True)
            copied += len(points)
        reached = following
    return CopyProgress(copied, reached, reached is None)


def _drain(in_flight: deque[Future[None]], keep: int) -> None:
    while len(in_flight) > keep:
        in_flight.popleft().result()


def copy_step(reader: SourceReader, engine: QdrantEngine, source: str, target: str,
              offset: Offset, batch_size: int, max_batches: int, parallelism: int = 1,
              deferred: bool = False, until: Offset = None, by_id: bool = False
              ) -> CopyProgress:
    """Copies up to ``max_batches`` pages from ``offset``, stopping before ``until`` (the
    end of the range, None for the source's end); resumable from ``next_offset``.

    The next page is read while up to ``parallelism`` upserts are in flight, so memory
    stays at ``batch_size * (parallelism + 1)`` points whatever the collection's size (and
    ``batch_size * max_batches`` IDs when read ``by_id``). The returned offset is reached
    only after every upsert before it was confirmed, and upserts are idempotent by ID, so
    repeating a step after a crash loses and duplicates nothing.
    ``deferred`` (a server) sends all but the step's last upsert without waiting for them to
    be applied; the last one waits, and a server applies one shard's writes in order, so it
    is the barrier after which the whole step is applied. On a server with a gRPC port the
    pages travel as protobuf (``grpccopy.py``).
    """
    if source == target:
        raise ValueError(f"a copy never writes its source ({source})")
    transport = copy_transport(reader, engine)
    pages = _pages(transport, source, offset, batch_size, max_batches, until, by_id)
    if parallelism == 1:  # the embedded engine: its lock would serialise a pipeline anyway
        return _copy_serially(transport, target, pages)
    copied, unapplied, reached = 0, list[Any](), offset
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="upsert") as pool:
        in_flight: deque[Future[None]] = deque()
        for batch, (points, reached) in enumerate(pages):
            last = reached is None or batch == max_batches - 1
            if points:
                barrier = not deferred or last
                _drain(in_flight, keep=0 if deferred and last else parallelism - 1)
                in_flight.append(pool.submit(transport.write, target, points, barrier))
                copied += len(points)
                unapplied = [] if barrier else list(points)
        _drain(in_flight, keep=0)
    if unapplied:  # the step ended on an empty page: its last write is repeated as barrier
        transport.write(target, unapplied, True)
    return CopyProgress(copied, reached, reached is None)


def aliases(engine: QdrantEngine) -> dict[str, str]:
    """Every alias and the collection it points at, as Qdrant answers now."""
    listed = engine.call(lambda c: c.get_aliases().aliases)
    return {a.alias_name: a.collection_name for a in listed}


def alias_target(engine: QdrantEngine, alias: str) -> str | None:
    return aliases(engine).get(alias)


def swap_alias(engine: QdrantEngine, alias: str, target: str) -> None:
    """Points ``alias`` at ``target`` in one alias request of one action; returns once Qdrant
    acknowledged it (the swap's success: a later read may lag behind it).

    ``create_alias`` replaces an existing alias of that name atomically on both engines, and
    fails without touching it when ``target`` is missing. (A delete + create batch is not
    transactional on a server: a failed create there leaves the alias deleted.)
    """
    action = qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name=target,
                                                                 alias_name=alias))
    QDRANT_WRITES.labels("SwapAlias").inc()
    acknowledged = engine.call(
        lambda c: c.update_collection_aliases(change_aliases_operations=[action]))
    if not acknowledged:
        raise QdrantError(f"Qdrant did not acknowledge moving alias {alias} to {target}")


def delete_alias(engine: QdrantEngine, alias: str) -> None:
    action = qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias))
    engine.call(lambda c: c.update_collection_aliases(change_aliases_operations=[action]))


def collection_names(engine: QdrantEngine) -> set[str]:
    return engine.call(lambda c: {item.name for item in c.get_collections().collections})


def versioned_collections(engine: QdrantEngine, prefix: str) -> dict[str, dict[str, Any]]:
    """Collections named ``<prefix>_v<N>`` and their metadata (owner stamps), whoever owns
    them; only names of that shape are opened, so a server with many collections costs one
    list."""
    def read(client: QdrantClient) -> dict[str, dict[str, Any]]:
        return {item.name: dict(client.get_collection(item.name).config.metadata or {})
                for item in client.get_collections().collections
                if parse_version(prefix, item.name) is not None}
    return engine.call(read)


def restamp(engine: QdrantEngine, collection: str, stamp: Mapping[str, str]) -> None:
    """Writes an owner stamp over a collection's metadata keys of the same names."""
    QDRANT_WRITES.labels("UpdateCollection").inc()
    engine.call(lambda c: c.update_collection(collection, metadata=dict(stamp)))
