"""The ``Server`` source: Qdrant's own shard snapshot and partial snapshot REST API.

Routes follow Qdrant's documented API (``/collections/{c}/shards/{id}/snapshots`` and
``/collections/{c}/shards/{id}/snapshot/partial/create``); qdrant-client does not wrap the
partial route and buffers downloads, so this talks HTTP directly and streams.

In cluster mode a shard's snapshots live on (and must be asked of) a peer that holds the
shard: ``locate`` reads the placement at each step and ``core/peers.py`` picks each shard's
peer and its HTTP address; every shard request goes there.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from album_operator.adapters.qdrant.connection import ConnectionSettings, QdrantError
from album_operator.adapters.redaction import redact
from album_operator.core.peers import (
    ShardPlan,
    ShardRoute,
    cluster_peers,
    plan_shards,
    replicas,
)
from album_operator.core.timeutil import rfc3339

TIMEOUT_S = (10, 600)
CHUNK = 1 << 20


class ShardUnavailable(QdrantError):
    """A shard's peer could not be asked (down, wrong address, shard moved away)."""


@dataclass(frozen=True)
class Download:
    headers: dict[str, str]
    chunks: Iterator[bytes]
    close: Callable[[], None]


def qdrant_time(value: str | None) -> str | None:
    """Qdrant's snapshot ``creation_time`` (UTC, written without a zone) as RFC 3339."""
    if not value:
        return None
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return rfc3339(moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC))


class ServerSnapshots:
    def __init__(self, settings: ConnectionSettings, collection: str) -> None:
        if not settings.url:
            raise QdrantError("the Server source needs a Qdrant server URL")
        self.identity = settings.identity()
        self._base = settings.url.rstrip("/")
        self._peer_urls = dict(settings.peer_urls)
        self._collection = collection
        self._session = requests.Session()
        if settings.api_key:
            self._session.headers["api-key"] = settings.api_key
        self._ca_file: str | None = None
        if settings.ca_pem:
            with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
                handle.write(settings.ca_pem)
                self._ca_file = handle.name
        self.routes: dict[int, ShardRoute] = {}
        self.on_partial: Callable[[int, int], None] | None = None
        """Called with (bytes sent, bytes of the latest full snapshot) after each partial."""

    @property
    def shards(self) -> list[int]:
        return sorted(self.routes)

    @property
    def collection(self) -> str:
        return self._collection

    def _route(self, shard: int) -> ShardRoute:
        route = self.routes.get(shard)
        if route is None:
            raise QdrantError(f"shard {shard} of {self._collection} is not published by this "
                              "policy", status_code=404)
        return route

    def _url(self, route: ShardRoute, tail: str) -> str:
        return (f"{route.url}/collections/{quote(self._collection)}/shards/{route.shard_id}/"
                f"{tail}")

    def _request(self, method: str, url: str, route: ShardRoute | None = None,
                 **kwargs: Any) -> requests.Response:
        where = f" ({route.describe()})" if route is not None else ""
        failure = QdrantError if route is None else ShardUnavailable
        try:
            response = self._session.request(method, url, timeout=TIMEOUT_S,
                                             verify=self._ca_file or True, **kwargs)
        except requests.RequestException as exc:
            raise failure(redact(f"{method} {url}{where}: {type(exc).__name__}")) from None
        if response.status_code >= 400 and response.status_code != 404:
            detail = _error_text(response) if not kwargs.get("stream") else ""
            response.close()
            raise failure(redact(f"{method} {url}{where}: HTTP {response.status_code} "
                                 f"{detail}").rstrip(), status_code=response.status_code)
        return response

    def _result(self, path: str) -> Any:
        response = self._request("GET", f"{self._base}{path}")
        if response.status_code == 404:
            raise QdrantError(f"GET {self._base}{path}: HTTP 404 {_error_text(response)}",
                              status_code=404)
        return response.json()["result"]

    def locate(self, shards: list[int] | None, shard_keys: list[str] | None) -> ShardPlan:
        """Reads where the collection's shards are and routes each wanted one to a peer
        that holds it. Shards the plan cannot route are left out (see the plan's
        ``missing`` and ``unavailable``)."""
        peers = cluster_peers(self._result("/cluster"))
        placement = self._result(f"/collections/{quote(self._collection)}/cluster")
        plan = plan_shards(replicas(placement), peers, self._base, self._peer_urls, shards,
                           shard_keys)
        self.routes = {route.shard_id: route for route in plan.routes}
        return plan

    def create(self, shard: int) -> dict[str, Any]:
        route = self._route(shard)
        response = self._request("POST", self._url(route, "snapshots"), route,
                                 params={"wait": "true"})
        result: dict[str, Any] = response.json()["result"]
        return result

    def snapshots(self, shard: int) -> list[dict[str, Any]]:
        route = self._route(shard)
        response = self._request("GET", self._url(route, "snapshots"), route)
        if response.status_code == 404:
            return []
        found: list[dict[str, Any]] = response.json()["result"]
        return sorted(found, key=lambda s: (s.get("creation_time") or "", s["name"]),
                      reverse=True)

    def delete(self, shard: int, name: str) -> None:
        route = self._route(shard)
        self._request("DELETE", self._url(route, f"snapshots/{quote(name)}"), route,
                      params={"wait": "true"})

    def list_published(self) -> list[dict[str, Any]]:
        return [{"shard": shard, "name": s["name"], "collection": self._collection,
                 "sha256": s.get("checksum"), "sizeBytes": s.get("size"),
                 "createdAt": qdrant_time(s.get("creation_time"))}
                for shard in self.shards for s in self.snapshots(shard)]

    def _stream(self, response: requests.Response, extra: dict[str, str],
                counted: Callable[[int], None] | None = None) -> Download:
        headers = {"Content-Type": "application/x-tar", **extra}
        # a compressed answer is decoded on the way: its length is not what we send
        if response.headers.get("Content-Length") and not response.headers.get(
                "Content-Encoding"):
            headers["Content-Length"] = response.headers["Content-Length"]

        def chunks() -> Iterator[bytes]:
            sent = 0
            for chunk in response.iter_content(CHUNK):
                sent += len(chunk)
                yield chunk
            if counted is not None:
                counted(sent)
        return Download(headers, chunks(), response.close)

    def download_latest(self, shard: int) -> Download | None:
        if shard not in self.routes:
            return None
        snapshots = self.snapshots(shard)
        if not snapshots:
            return None
        latest = snapshots[0]
        route = self._route(shard)
        response = self._request("GET", self._url(route, f"snapshots/{quote(latest['name'])}"),
                                 route, stream=True, headers={"Accept-Encoding": "identity"})
        return self._stream(response, {"X-Snapshot-Name": latest["name"],
                                       "X-Snapshot-Sha256": latest.get("checksum") or ""})

    def download_range(self, shard: int, name: str, first: int, length: int
                       ) -> Iterator[bytes]:
        """``length`` bytes of snapshot ``name`` from byte ``first``, asked of the shard's
        peer with a Range header (Qdrant answers 206); the request starts at the first
        read."""
        route = self._route(shard)
        response = self._request("GET", self._url(route, f"snapshots/{quote(name)}"), route,
                                 stream=True, headers={
                                     "Accept-Encoding": "identity",
                                     "Range": f"bytes={first}-{first + length - 1}"})
        try:
            if response.status_code != 206:
                raise QdrantError(f"GET snapshot range ({route.describe()}): HTTP "
                                  f"{response.status_code} instead of 206",
                                  status_code=response.status_code)
            yield from response.iter_content(CHUNK)
        finally:
            response.close()

    def partial(self, shard: int, manifest: dict[str, Any]) -> Download | None:
        """A partial snapshot for ``manifest``, built by the shard's peer and streamed; None
        when the device is current."""
        route = self._route(shard)
        published = self.snapshots(shard)
        full = int(published[0].get("size") or 0) if published else 0
        response = self._request("POST", self._url(route, "snapshot/partial/create"), route,
                                 json=manifest, stream=True,
                                 headers={"Accept-Encoding": "identity"})
        if response.status_code == 304:
            response.close()
            return None
        if response.status_code == 404:
            detail = _error_text(response)
            response.close()
            raise ShardUnavailable(f"POST partial ({route.describe()}): HTTP 404 {detail}",
                                   status_code=404)
        extra = {"X-Full-Size-Bytes": str(full)}
        if published:
            extra["X-Snapshot-Name"] = published[0]["name"]
        on_partial = self.on_partial
        return self._stream(response, extra, None if on_partial is None
                            else lambda sent: on_partial(sent, full))

    def close(self) -> None:
        self._session.close()


def _error_text(response: requests.Response) -> str:
    """Qdrant's own error message (``status.error``), else the start of the body."""
    try:
        error = response.json()["status"]["error"]
        return str(error)[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]
