"""HTTP client of the operator's edge snapshot endpoint (``docs/edge-protocol.md``).

``EndpointClient(base_url, namespace, policy, token, timeout=(5.0, 60.0))``; every request
carries ``Authorization: Bearer <token>`` and goes under
``{base_url}/v1/namespaces/{namespace}/policies/{policy}``.

- ``listing() -> Listing``: ``GET /snapshots`` (vector layout and published snapshots).
- ``download_snapshot(shard, dest) -> Download``: ``GET /shards/{shard}/snapshot`` streamed
  to ``dest``, its sha256 computed while streaming and checked against
  ``X-Snapshot-Sha256`` (:class:`~album_operator.edge.errors.ChecksumMismatch` otherwise; the
  file is then removed).
- ``download_partial(shard, manifest, dest) -> Download | None``: ``POST
  /shards/{shard}/partial`` with the device manifest; None on ``304``.
- ``push_points(bodies) -> PushAnswer``: ``POST /points`` with the points' JSON bodies;
  the answer's accepted IDs and its rejections ``(id, reason, index)``.

Errors: connection errors, timeouts, truncated bodies, ``408``, ``429`` and ``5xx`` raise
:class:`RetryableError`; ``413`` :class:`BatchTooLarge`; other ``4xx`` and answers that break
the protocol :class:`EndpointError`. No message ever holds the token.
``timeout`` is (connect, read) in seconds; a read timeout bounds each wait for data, so a
long download is fine as long as bytes keep arriving.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from album_operator.edge.errors import (
    BatchTooLarge,
    ChecksumMismatch,
    EdgeError,
    EndpointError,
    RetryableError,
    redact,
)
from album_operator.edge.points import VectorSpec, layout_from_json
from album_operator.edge.protocol import ACCEPTED_KEY, REJECTED_KEY

CHUNK_BYTES = 1 << 20
RETRYABLE_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class SnapshotInfo:
    shard: int
    name: str
    sha256: str
    size_bytes: int
    created_at: str


@dataclass(frozen=True)
class Listing:
    namespace: str
    policy: str
    collection: str
    vectors: dict[str, VectorSpec]
    snapshots: list[SnapshotInfo]


@dataclass(frozen=True)
class Download:
    name: str
    sha256: str
    size_bytes: int
    path: Path
    full_size_bytes: int | None = None


@dataclass(frozen=True)
class PushAnswer:
    accepted: list[object]
    rejected: list[tuple[object, str, int | None]]
    """(ID as the endpoint names it, reason, position in the request or None)."""


class EndpointClient:
    def __init__(self, base_url: str, namespace: str, policy: str, token: str, *,
                 timeout: tuple[float, float] = (5.0, 60.0),
                 session: requests.Session | None = None) -> None:
        if not token:
            raise EdgeError("a device token is required")
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        self.policy = policy
        self.timeout = timeout
        self._token = token
        self._session = session or requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self.root = (f"{self.base_url}/v1/namespaces/{quote(namespace, safe='')}"
                     f"/policies/{quote(policy, safe='')}")

    def __repr__(self) -> str:
        return f"EndpointClient({self.root!r})"

    def close(self) -> None:
        self._session.close()

    def listing(self) -> Listing:
        response = self._request("GET", "/snapshots")
        body = self._json(response)
        try:
            return Listing(
                namespace=str(body["namespace"]), policy=str(body["policy"]),
                collection=str(body.get("collection", "")),
                vectors=layout_from_json(body["vectors"]),
                snapshots=[SnapshotInfo(int(item["shard"]), str(item["name"]),
                                        str(item["sha256"]), int(item["sizeBytes"]),
                                        str(item.get("createdAt", "")))
                           for item in body["snapshots"]])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise EndpointError(self._redact(f"GET /snapshots: unexpected answer: {error}")
                                ) from None

    def download_snapshot(self, shard: int, dest: Path) -> Download:
        response = self._request("GET", f"/shards/{int(shard)}/snapshot", stream=True)
        return self._save(response, dest, "GET snapshot")

    def download_partial(self, shard: int, manifest: Mapping[str, Any],
                         dest: Path) -> Download | None:
        response = self._request("POST", f"/shards/{int(shard)}/partial", stream=True,
                                 json_body=manifest)
        if response.status_code == 304:
            response.close()
            return None
        download = self._save(response, dest, "POST partial")
        full = response.headers.get("X-Full-Size-Bytes")
        return Download(download.name, download.sha256, download.size_bytes, download.path,
                        int(full) if full and full.isdigit() else None)

    def push_points(self, bodies: Sequence[str]) -> PushAnswer:
        """Sends the points (each already a JSON object's text) as one ``POST /points``."""
        data = ('{"points":[' + ",".join(bodies) + "]}").encode()
        response = self._request("POST", "/points", data=data)
        body = self._json(response)
        try:
            accepted = list(body[ACCEPTED_KEY])
            rejected = [(item.get("id"), str(item.get("reason", "rejected")),
                         _index(item.get("index"))) for item in body[REJECTED_KEY]]
        except (KeyError, TypeError, AttributeError) as error:
            raise EndpointError(self._redact(f"POST /points: unexpected answer: {error}")
                                ) from None
        return PushAnswer(accepted, rejected)

    # -- plumbing -------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return redact(text, self._token)

    def _request(self, method: str, path: str, *, stream: bool = False,
                 json_body: Mapping[str, Any] | None = None,
                 data: bytes | None = None) -> requests.Response:
        what = f"{method} {path}"
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            response = self._session.request(method, self.root + path, stream=stream,
                                             json=json_body, data=data, headers=headers,
                                             timeout=self.timeout)
        except requests.RequestException as error:
            raise RetryableError(self._redact(f"{what}: {type(error).__name__}: {error}")
                                 ) from None
        status = response.status_code
        if status < 400 or status == 304:
            return response
        message = self._redact(f"{what}: HTTP {status}: {_error_text(response)}")
        response.close()
        if status == 413:
            raise BatchTooLarge(message, status)
        if status >= 500 or status in RETRYABLE_STATUSES:
            raise RetryableError(message, status)
        raise EndpointError(message, status)

    def _json(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise EndpointError(self._redact(
                f"{response.request.method} {response.url}: answer is not a JSON object"))
        return body

    def _save(self, response: requests.Response, dest: Path, what: str) -> Download:
        name = response.headers.get("X-Snapshot-Name")
        expected = (response.headers.get("X-Snapshot-Sha256") or "").strip().lower()
        if not name or len(expected) != 64:
            response.close()
            raise EndpointError(f"{what}: missing X-Snapshot-Name or X-Snapshot-Sha256 header")
        length = response.headers.get("Content-Length")
        digest = hashlib.sha256()
        size = 0
        try:
            with response, open(dest, "wb") as out:
                for chunk in response.iter_content(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except requests.RequestException as error:
            dest.unlink(missing_ok=True)
            raise RetryableError(self._redact(f"{what}: download failed: {error}")) from None
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        if length is not None and length.isdigit() and int(length) != size:
            dest.unlink(missing_ok=True)
            raise RetryableError(f"{what}: got {size} bytes of {length}")
        actual = digest.hexdigest()
        if actual != expected:
            dest.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{what}: snapshot {name} has sha256 {actual}, "
                                   f"the endpoint announced {expected}")
        return Download(name, actual, size, dest)


def _index(raw: object) -> int | None:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else None


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] if response.text else response.reason or ""
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])[:300]
    return json.dumps(body)[:300]
