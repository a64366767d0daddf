"""The long-lived objects every handler shares, built once at start-up (kopf's memo)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from album_operator.adapters.edge.endpoint import EdgeRegistry
from album_operator.adapters.kube import KubeApi, load_api_client
from album_operator.adapters.qdrant.connection import (
    REQUESTS_IN_FLIGHT,
    ConnectionSettings,
    QdrantEngine,
    QdrantPool,
)
from album_operator.adapters.qdrant.copier import CopyRegistry
from album_operator.adapters.redaction import register_secret
from album_operator.config import OperatorConfig
from album_operator.core.peers import parse_grpc_port, parse_peer_urls
from album_operator.core.retry import RetryBook
from album_operator.core.writes import WriteLedger
from album_operator.models.common import ConnectionSpec

# Reconciles of one kind running at once. Each has at most one Qdrant request in flight, so
# this many keep a server connection's request slots full.
RECONCILES_IN_FLIGHT = REQUESTS_IN_FLIGHT


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class KeyedLocks:
    """One asyncio lock per key, so a timer and a change handler never reconcile one object
    at the same time."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            yield

    def forget(self, key: str) -> None:
        self._locks.pop(key, None)


class ReconcileSlots:
    """At most ``size`` reconciles of one kind at once; the others wait their turn in order.

    A fleet applied at once would otherwise start every reconcile together: each waits for
    its share of every Qdrant request, none finishes until all do, and their status patches
    then open as many connections to the API server at the same moment (kopf's client has
    no connection limit), each with its own TLS buffers. Taken in turns, resources become
    Ready one after another and memory stays bounded.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots: dict[str, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def hold(self, kind: str) -> AsyncIterator[None]:
        slot = self._slots.setdefault(kind, asyncio.Semaphore(self.size))
        async with slot:
            yield


@dataclass
class Services:
    config: OperatorConfig
    pool: QdrantPool
    kube: KubeApi
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    slots: ReconcileSlots = field(default_factory=lambda: ReconcileSlots(RECONCILES_IN_FLIGHT))
    retries: RetryBook = field(init=False)
    writes: WriteLedger = field(default_factory=WriteLedger)
    edge: EdgeRegistry = field(default_factory=EdgeRegistry)
    copies: CopyRegistry = field(default_factory=CopyRegistry)
    """The MasterMerge copies running between build steps."""
    source_checks: dict[str, dt.datetime] = field(default_factory=dict)
    """Per MasterMerge uid: when its sources' counts were last read for a trigger."""
    edge_facts: dict[str, object] = field(default_factory=dict)
    """Per EdgeSnapshotPolicy uid: what was last read from Kubernetes for it."""
    clock: Callable[[], dt.datetime] = utc_now
    edge_port: int | None = None

    def __post_init__(self) -> None:
        self.retries = RetryBook(base=self.config.retry_backoff_seconds,
                                 cap=self.config.retry_cap_seconds)

    async def engine_for(self, namespace: str, connection: ConnectionSpec | None
                         ) -> QdrantEngine:
        """The engine for a resource: its own Secret's connection, or the operator default."""
        settings = None
        if connection is not None:
            settings = await self.kube.connection_from_secret(namespace,
                                                              connection.secret_ref.name)
        return await self.pool.engine_async(settings)


async def default_connection(config: OperatorConfig, kube: KubeApi) -> ConnectionSettings:
    if config.qdrant_secret:
        namespace, _, name = config.qdrant_secret.partition("/")
        return await kube.connection_from_secret(namespace, name)
    if config.qdrant_url:
        register_secret(config.qdrant_api_key)
        try:
            peer_urls = parse_peer_urls(config.qdrant_peer_urls)
        except ValueError as exc:
            raise ValueError(f"QDRANT_PEER_URLS: {exc}") from None
        try:
            grpc_port = parse_grpc_port(config.qdrant_grpc_port)
        except ValueError as exc:
            raise ValueError(f"QDRANT_GRPC_PORT: {exc}") from None
        return ConnectionSettings(url=config.qdrant_url, api_key=config.qdrant_api_key,
                                  peer_urls=peer_urls, grpc_port=grpc_port)
    return ConnectionSettings(embedded_path=config.embedded_path)


async def build_services(config: OperatorConfig, pool: QdrantPool | None = None) -> Services:
    kube = KubeApi(load_api_client())
    if pool is None:
        pool = QdrantPool(await default_connection(config, kube))
    return Services(config=config, pool=pool, kube=kube)
