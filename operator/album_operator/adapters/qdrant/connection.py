"""Qdrant connections: settings, one long-lived engine per connection, serialised access.

Async code reaches an engine without the event loop's default thread pool: a server is asked
through qdrant-client's ``AsyncQdrantClient`` (one per connection and event loop, so many
reconciles wait on the network at once), and the embedded engine, which is not thread-safe,
runs on one thread of its own behind its lock.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import ssl
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from qdrant_client import AsyncQdrantClient, QdrantClient

from album_operator.adapters.redaction import redact, register_secret
from album_operator.core.engine import EMBEDDED, SERVER, EngineCapabilities
from album_operator.core.versions import version_warning

T = TypeVar("T")

REQUEST_TIMEOUT_S = 30
# Collection requests one server connection has in flight at once (reconciles of one kind run
# as many at a time: services.RECONCILES_IN_FLIGHT). Measured with 1,000 AlbumCollections on
# the shared server binary (bench collections): 1.67x the direct creation time with 4, 1.26x
# with 8.
REQUESTS_IN_FLIGHT = 8
# Idle connections kept per client: the async requests above plus the copy threads of merges
# and snapshot work on the blocking client.
KEEPALIVE_CONNECTIONS = 16
log = logging.getLogger(__name__)


class QdrantError(RuntimeError):
    """A Qdrant call failed. The message never contains the API key."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class ConnectionSettings:
    """Where Qdrant is. No URL means the embedded engine at ``embedded_path``."""

    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)
    embedded_path: str | None = None
    peer_urls: Mapping[str, str] = field(default_factory=dict, hash=False)
    """In cluster mode: a peer's cluster URI -> its HTTP URL, where deriving it from the
    URI's host and ``url``'s scheme and port would be wrong (``core/peers.py``)."""
    grpc_port: int | None = None
    """The server's gRPC port on ``url``'s host: bulk copies use it (protobuf, no JSON)."""

    @property
    def is_embedded(self) -> bool:
        return not self.url

    def identity(self) -> str:
        """A stable key for the pool; hashes the secret parts instead of holding them."""
        raw = "\0".join([self.url or "", self.api_key or "", self.ca_pem or "",
                         self.embedded_path or "",
                         json.dumps(dict(self.peer_urls), sort_keys=True),
                         str(self.grpc_port or "")])
        return hashlib.sha256(raw.encode()).hexdigest()

    def describe(self) -> str:
        return f"embedded:{self.embedded_path or ':memory:'}" if self.is_embedded else str(
            self.url)


def redacted_error(exc: Exception) -> QdrantError:
    """A client failure as a ``QdrantError`` that names its cause with secrets redacted."""
    status = getattr(exc, "status_code", None)
    text = f"{type(exc).__name__}: {exc}"
    # qdrant-client wraps transport failures (a timeout, a refused connection) in an
    # exception whose own message is often empty; name the cause instead.
    cause = getattr(exc, "source", None) or exc.__cause__ or exc.__context__
    if not str(exc).strip() and cause is not None:
        text = f"{type(exc).__name__}: {type(cause).__name__} {cause}".rstrip()
    return QdrantError(redact(text), status_code=status if isinstance(status, int) else None)


class QdrantEngine:
    """One Qdrant client plus what its engine honours.

    The embedded engine (qdrant-client local mode) is not thread-safe, so every call on it
    holds a lock, and async callers queue on the engine's own thread instead of occupying the
    event loop's shared pool. A server runs calls concurrently; async callers use ``request``
    with the engine's ``AsyncQdrantClient``.
    """

    def __init__(self, client: QdrantClient, capabilities: EngineCapabilities,
                 label: str, settings: ConnectionSettings,
                 async_client: Callable[[], AsyncQdrantClient] | None = None) -> None:
        self._client = client
        self.capabilities = capabilities
        self.label = label
        self.settings = settings
        self._lock: threading.Lock | None = (
            None if capabilities.parallel_writes else threading.Lock())
        self._thread: ThreadPoolExecutor | None = (
            None if self._lock is None
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-embedded"))
        self._new_async_client = async_client
        self._grpc_client: QdrantClient | None = None
        self._grpc_lock = threading.Lock()
        # One async client per event loop: its connections belong to the loop that made them
        # (the operator has one loop; tests may run several one after another).
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncQdrantClient] = weakref.WeakKeyDictionary()
        self._in_flight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
        self.version_warning: str | None = None

    def points_stub(self) -> Any | None:
        """The server's gRPC Points service, when the connection names a gRPC port (a plain
        or TLS channel as ``url`` says; a custom CA is only wired for REST, so not then)."""
        settings = self.settings
        if settings.grpc_port is None or settings.is_embedded or settings.ca_pem:
            return None
        with self._grpc_lock:
            if self._grpc_client is None:
                try:
                    self._grpc_client = QdrantClient(
                        url=settings.url, api_key=settings.api_key, prefer_grpc=True,
                        grpc_port=settings.grpc_port, timeout=REQUEST_TIMEOUT_S,
                        check_compatibility=False)
                except Exception as exc:
                    raise redacted_error(exc) from None
            return self._grpc_client.grpc_points

    def grpc(self, fn: Callable[[Any], T]) -> T:
        """Runs ``fn`` with the gRPC Points stub, errors redacted like ``call``'s."""
        stub = self.points_stub()
        if stub is None:
            raise TypeError(f"{self.label}: no gRPC port configured")
        try:
            return fn(stub)
        except QdrantError:
            raise
        except Exception as exc:
            raise redacted_error(exc) from None

    @property
    def is_async(self) -> bool:
        """Whether ``request`` (the async client) is available: a server connection."""
        return self._new_async_client is not None

    def call(self, fn: Callable[[QdrantClient], T]) -> T:
        """Runs ``fn`` with the client, serialised where needed, errors redacted."""
        try:
            if self._lock is None:
                return fn(self._client)
            with self._lock:
                return fn(self._client)
        except QdrantError:
            raise
        except Exception as exc:
            raise redacted_error(exc) from None

    async def run(self, fn: Callable[[QdrantClient], T]) -> T:
        """``call`` from async code, off the event loop: on the embedded engine's own thread,
        else on the loop's default pool (blocking calls on a server; ``request`` is the
        async path)."""
        if self._thread is None:
            return await asyncio.to_thread(self.call, fn)
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, context.run, self.call, fn)

    def _async_client(self) -> AsyncQdrantClient:
        if self._new_async_client is None:
            raise TypeError(f"{self.label}: the embedded engine has no async client")
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            try:
                client = self._new_async_client()
            except Exception as exc:
                raise redacted_error(exc) from None
            self._async_clients[loop] = client
        return client

    async def request(self, fn: Callable[[AsyncQdrantClient], Awaitable[T]]) -> T:
        """Awaits ``fn`` with the server's async client (long-lived, one per event loop),
        errors redacted. Only for server engines (``is_async``)."""
        client = self._async_client()
        try:
            async with self._request_slot():
                return await fn(client)
        except QdrantError:
            raise
        except Exception as exc:
            raise redacted_error(exc) from None

    def _request_slot(self) -> asyncio.Semaphore:
        """At most REQUESTS_IN_FLIGHT requests at once; the rest wait in order. A fleet
        reconciled at once otherwise queues a thousand requests inside the HTTP pool, whose
        bookkeeping grows with the square of its queue, opens and drops connections beyond
        its keep-alive set, and slows the server's collection writes."""
        loop = asyncio.get_running_loop()
        slot = self._in_flight.get(loop)
        if slot is None:
            slot = self._in_flight[loop] = asyncio.Semaphore(REQUESTS_IN_FLIGHT)
        return slot

    async def aclose(self) -> None:
        """``close`` from the event loop: this loop's async client is closed properly."""
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()
        self.close()

    def close(self) -> None:
        clients, self._async_clients = (list(self._async_clients.items()),
                                        weakref.WeakKeyDictionary())
        for loop, client in clients:
            # A loop that ended took its connections with it; a running one closes its own.
            if not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(client.close(), loop)
        if self._thread is not None:
            self._thread.shutdown(wait=False)
        if self._grpc_client is not None:
            self._grpc_client.close()
        self.call(lambda client: client.close())


def _ssl_context(ca_pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem)


def open_engine(settings: ConnectionSettings) -> QdrantEngine:
    if settings.is_embedded:
        path = settings.embedded_path
        if path and path != ":memory:":
            Path(path).mkdir(parents=True, exist_ok=True)
            client = QdrantClient(path=path)
        else:
            client = QdrantClient(location=":memory:")
        return QdrantEngine(client, EMBEDDED, settings.describe(), settings)
    register_secret(settings.api_key)
    extra: dict[str, Any] = {"verify": _ssl_context(settings.ca_pem)} if settings.ca_pem else {}
    # qdrant-client turns keep-alive off for a server on localhost or 127.0.0.1 (a sidecar,
    # a port-forward, the tests): every request would open a new connection. The operator's
    # clients are long-lived and bounded, so they keep their connections.
    extra["limits"] = httpx.Limits(max_connections=None,
                                   max_keepalive_connections=KEEPALIVE_CONNECTIONS)
    try:
        client = QdrantClient(url=settings.url, api_key=settings.api_key,
                              timeout=REQUEST_TIMEOUT_S, check_compatibility=False, **extra)
    except Exception as exc:
        raise redacted_error(exc) from None

    def async_client() -> AsyncQdrantClient:
        return AsyncQdrantClient(url=settings.url, api_key=settings.api_key,
                                 timeout=REQUEST_TIMEOUT_S, check_compatibility=False, **extra)

    engine = QdrantEngine(client, SERVER, settings.describe(), settings, async_client)
    engine.version_warning = _check_server_version(engine)
    return engine


def _check_server_version(engine: QdrantEngine) -> str | None:
    """Logs, once per connection, a server outside the supported versions. An unreachable
    server is not a version problem: the first real call reports it."""
    try:
        reported = engine.call(lambda client: client.info().version)
    except QdrantError:
        return None
    warning = version_warning(reported)
    if warning:
        log.warning("%s (%s)", warning, engine.label)
    return warning


class QdrantPool:
    """Long-lived engines, one per distinct connection, shared by every handler."""

    def __init__(self, default: ConnectionSettings) -> None:
        self.default = default
        self._engines: dict[str, QdrantEngine] = {}
        self._lock = threading.Lock()

    def engine(self, settings: ConnectionSettings | None = None) -> QdrantEngine:
        settings = settings or self.default
        key = settings.identity()
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = open_engine(settings)
                self._engines[key] = engine
            return engine

    async def engine_async(self, settings: ConnectionSettings | None = None) -> QdrantEngine:
        """``engine`` from async code: an open engine is returned at once, a new one is
        opened off the event loop (the server's version is asked then)."""
        settings = settings or self.default
        engine = self._engines.get(settings.identity())
        if engine is not None:
            return engine
        return await asyncio.to_thread(self.engine, settings)

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()

    async def aclose(self) -> None:
        """``close`` from the event loop the engines were used on."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await engine.aclose()
