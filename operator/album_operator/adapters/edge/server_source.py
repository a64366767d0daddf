"""The ``Server`` source: Qdrant's own shard snapshot and partial snapshot REST API.

Routes follow Qdrant's documented API (``/collections/{c}/shards/{id}/snapshots`` and
``/collections/{c}/shards/{id}/snapshot/partial/create``); qdrant-client does not wrap the
partial route and buffers downloads, so this talks HTTP directly and streams.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from album_operator.adapters.qdrant.connection import ConnectionSettings, QdrantError

TIMEOUT_S = (10, 600)
CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    headers: dict[str, str]
    chunks: Iterator[bytes]
    close: Callable[[], None]


class ServerSnapshots:
    def __init__(self, settings: ConnectionSettings, collection: str) -> None:
        if not settings.url:
            raise QdrantError("the Server source needs a Qdrant server URL")
        self._base = settings.url.rstrip("/")
        self._collection = collection
        self._session = requests.Session()
        if settings.api_key:
            self._session.headers["api-key"] = settings.api_key
        self._ca_file: str | None = None
        if settings.ca_pem:
            with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
                handle.write(settings.ca_pem)
                self._ca_file = handle.name
        self.shards: list[int] = []

    def _url(self, shard: int, tail: str) -> str:
        return f"{self._base}/collections/{quote(self._collection)}/shards/{shard}/{tail}"

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = self._session.request(method, url, timeout=TIMEOUT_S,
                                             verify=self._ca_file or True, **kwargs)
        except requests.RequestException as exc:
            raise QdrantError(f"{method} {url}: {type(exc).__name__}") from None
        if response.status_code >= 400 and response.status_code != 404:
            detail = response.text[:300] if not kwargs.get("stream") else ""
            response.close()
            raise QdrantError(f"{method} {url}: HTTP {response.status_code} {detail}",
                              status_code=response.status_code)
        return response

    def shard_ids(self, wanted: list[int] | None) -> list[int]:
        if wanted:
            return list(wanted)
        response = self._request("GET", f"{self._base}/collections/{quote(self._collection)}")
        params = response.json()["result"]["config"]["params"]
        return list(range(int(params.get("shard_number") or 1)))

    def create(self, shard: int) -> dict[str, Any]:
        response = self._request("POST", self._url(shard, "snapshots"), params={"wait": "true"})
        result: dict[str, Any] = response.json()["result"]
        return result

    def snapshots(self, shard: int) -> list[dict[str, Any]]:
        response = self._request("GET", self._url(shard, "snapshots"))
        if response.status_code == 404:
            return []
        found: list[dict[str, Any]] = response.json()["result"]
        return sorted(found, key=lambda s: (s.get("creation_time") or "", s["name"]),
                      reverse=True)

    def delete(self, shard: int, name: str) -> None:
        self._request("DELETE", self._url(shard, f"snapshots/{quote(name)}"),
                      params={"wait": "true"})

    def list_published(self) -> list[dict[str, Any]]:
        return [{"shard": shard, "name": s["name"], "collection": self._collection,
                 "sha256": s.get("checksum"), "sizeBytes": s.get("size"),
                 "createdAt": s.get("creation_time")}
                for shard in self.shards for s in self.snapshots(shard)]

    def _stream(self, response: requests.Response, extra: dict[str, str]) -> Download:
        headers = {"Content-Type": "application/x-tar", **extra}
        if response.headers.get("Content-Length"):
            headers["Content-Length"] = response.headers["Content-Length"]
        return Download(headers, response.iter_content(CHUNK), response.close)

    def download_latest(self, shard: int) -> Download | None:
        snapshots = self.snapshots(shard)
        if not snapshots:
            return None
        latest = snapshots[0]
        response = self._request("GET", self._url(shard, f"snapshots/{quote(latest['name'])}"),
                                 stream=True)
        return self._stream(response, {"X-Snapshot-Name": latest["name"],
                                       "X-Snapshot-Sha256": latest.get("checksum") or ""})

    def partial(self, shard: int, manifest: dict[str, Any]) -> Download | None:
        """A partial snapshot for ``manifest``, streamed from Qdrant; None when current."""
        response = self._request("POST", self._url(shard, "snapshot/partial/create"),
                                 json=manifest, stream=True)
        if response.status_code == 304:
            response.close()
            return None
        return self._stream(response, {})

    def close(self) -> None:
        self._session.close()
