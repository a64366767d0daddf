"""Qdrant connections: settings, one long-lived engine per connection, serialised access."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qdrant_client import QdrantClient

from album_operator.adapters.redaction import redact, register_secret
from album_operator.core.engine import EMBEDDED, SERVER, EngineCapabilities
from album_operator.core.versions import version_warning

T = TypeVar("T")

REQUEST_TIMEOUT_S = 30
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

    @property
    def is_embedded(self) -> bool:
        return not self.url

    def identity(self) -> str:
        """A stable key for the pool; hashes the secret parts instead of holding them."""
        raw = "\0".join([self.url or "", self.api_key or "", self.ca_pem or "",
                         self.embedded_path or "",
                         json.dumps(dict(self.peer_urls), sort_keys=True)])
        return hashlib.sha256(raw.encode()).hexdigest()

    def describe(self) -> str:
        return f"embedded:{self.embedded_path or ':memory:'}" if self.is_embedded else str(
            self.url)


def _error_from(exc: Exception) -> QdrantError:
    status = getattr(exc, "status_code", None)
    return QdrantError(redact(f"{type(exc).__name__}: {exc}"),
                       status_code=status if isinstance(status, int) else None)


class QdrantEngine:
    """One Qdrant client plus what its engine honours.

    The embedded engine (qdrant-client local mode) is not thread-safe, so every call on it
    holds a lock; a server client runs calls concurrently.
    """

    def __init__(self, client: QdrantClient, capabilities: EngineCapabilities,
                 label: str, settings: ConnectionSettings) -> None:
        self._client = client
        self.capabilities = capabilities
        self.label = label
        self.settings = settings
        self._lock: threading.Lock | None = (
            None if capabilities.parallel_writes else threading.Lock())
        self.version_warning: str | None = None

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
            raise _error_from(exc) from None

    async def run(self, fn: Callable[[QdrantClient], T]) -> T:
        """``call`` from async code, off the event loop."""
        return await asyncio.to_thread(self.call, fn)

    def close(self) -> None:
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
    try:
        client = QdrantClient(url=settings.url, api_key=settings.api_key,
                              timeout=REQUEST_TIMEOUT_S, check_compatibility=False, **extra)
    except Exception as exc:
        raise _error_from(exc) from None
    engine = QdrantEngine(client, SERVER, settings.describe(), settings)
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

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()
