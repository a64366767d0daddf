"""What the snapshot endpoint answers (protocol: ``docs/edge-protocol.md``).

The domain side of the endpoint: the policies it serves (``EdgeRegistry``), tokens, and one
blocking function per route returning a ``Reply`` whose body streams from disk or from
Qdrant in chunks, so no snapshot is ever held whole in memory. The HTTP server that calls
them (limits, timeouts, ranges, access logs) is ``http.py``. Policies are registered by their
reconciler; a token opens its own policy only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import models as qm

from album_operator.adapters.edge.server_source import ServerSnapshots
from album_operator.adapters.edge.store import PolicyStore, file_slice, sha256_of, stream_file
from album_operator.adapters.metrics import (
    EDGE_BYTES_SAVED,
    EDGE_PARTIALS,
    EDGE_UPLOAD_BATCHES,
    EDGE_UPLOADS,
)
from album_operator.adapters.qdrant import points as qdrant_points
from album_operator.adapters.qdrant.connection import QdrantEngine, QdrantError
from album_operator.core.edge import (
    Rejection,
    RoutedPoint,
    partial_files,
    route_points,
    upload_targets,
)
from album_operator.edge.protocol import (
    Layout,
    MalformedRequest,
    layout_of,
    points_answer,
    points_of,
    rejection,
)
from album_operator.models.edge_snapshot_policy import UploadSpec


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PartialCounters:
    """Partials served since the last status write; HTTP threads add, the reconciler takes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served = 0
        self._saved = 0

    def record(self, bytes_saved: int) -> None:
        with self._lock:
            self._served += 1
            self._saved += bytes_saved

    def take(self) -> tuple[int, int]:
        """(partials served, bytes saved) since the previous take."""
        with self._lock:
            taken = (self._served, self._saved)
            self._served = self._saved = 0
            return taken


@dataclass
class PolicyAccess:
    namespace: str
    name: str
    token_digests: frozenset[str]
    store: PolicyStore
    engine: QdrantEngine
    collection: str
    vectors: dict[str, dict[str, Any]]
    upload: UploadSpec | None
    allowed_targets: frozenset[str]
    server: ServerSnapshots | None = None
    target_layouts: dict[str, Layout | None] = field(default_factory=dict)
    """Upload targets' vector layouts read from Qdrant during this step (``_upload``)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    counters: PartialCounters = field(default_factory=PartialCounters)


class EdgeRegistry:
    """Policies the endpoint serves, keyed by namespace/name. Thread-safe.

    Only a replica that works serves: one standing by (or still registering its policies
    at start-up) answers every request 503 with Retry-After, never 401 or 404, which a
    device would take for a lasting refusal."""

    def __init__(self, serving: bool = True) -> None:
        self._policies: dict[tuple[str, str], PolicyAccess] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._counters: dict[tuple[str, str], PartialCounters] = {}
        self._guard = threading.Lock()
        self._serving = serving

    @property
    def serving(self) -> bool:
        return self._serving

    def serve(self) -> None:
        """Starts answering devices from the policies registered since ``stand_by``."""
        self._serving = True

    def stand_by(self) -> None:
        """Stops serving and forgets every policy: what a paused replica registered may be
        stale by the time it works again (devices removed, tokens deleted), so it registers
        them afresh from the API then. Locks and counters stay."""
        with self._guard:
            self._serving = False
            self._policies.clear()

    def lock(self, namespace: str, name: str) -> threading.Lock:
        """Held by a run and by partial packaging, so neither sees the other half-done."""
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def counters(self, namespace: str, name: str) -> PartialCounters:
        with self._guard:
            return self._counters.setdefault((namespace, name), PartialCounters())

    def get(self, namespace: str, name: str) -> PolicyAccess | None:
        with self._guard:
            return self._policies.get((namespace, name))

    def put(self, access: PolicyAccess) -> None:
        access.lock = self.lock(access.namespace, access.name)
        access.counters = self.counters(access.namespace, access.name)
        with self._guard:
            self._policies[(access.namespace, access.name)] = access

    def withdraw(self, namespace: str, name: str) -> None:
        """Stops serving a policy (its reconcile failed, so what it may serve is unknown);
        its lock and counters stay for when it comes back."""
        with self._guard:
            self._policies.pop((namespace, name), None)

    def remove(self, namespace: str, name: str) -> None:
        with self._guard:
            self._policies.pop((namespace, name), None)
            self._locks.pop((namespace, name), None)
            self._counters.pop((namespace, name), None)

    def authorize(self, token: str | None, namespace: str, name: str
                  ) -> PolicyAccess | int:
        """The policy, or 401 (no or unknown token) / 403 (another policy's token)."""
        if not token:
            return 401
        digest = token_digest(token)
        with self._guard:
            policies = list(self._policies.values())
            wanted = self._policies.get((namespace, name))
        if wanted is not None and any(hmac.compare_digest(digest, d)
                                      for d in wanted.token_digests):
            return wanted
        known = any(hmac.compare_digest(digest, d) for p in policies for d in p.token_digests)
        return 403 if known else 401


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Iterator[bytes] | bytes = b""
    cleanup: Callable[[], None] | None = None
    byte_range: Callable[[int, int], Iterator[bytes]] | None = None
    """The body is a whole snapshot, unchanged, and this opens (first byte, length) of it:
    the HTTP layer may serve byte ranges (a device resuming a download)."""


def _json(status: int, value: Any) -> Reply:
    return Reply(status, {"Content-Type": "application/json"}, json.dumps(value).encode())


def list_snapshots(access: PolicyAccess) -> Reply:
    if access.server is not None:
        snapshots = access.server.list_published()
    else:
        snapshots = [{"shard": s.shard, "name": s.name, "collection": s.collection,
                      "sha256": s.sha256, "sizeBytes": s.size_bytes, "createdAt": s.created_at}
                     for s in access.store.snapshots()]
    return _json(200, {"policy": access.name, "namespace": access.namespace,
                       "collection": access.collection, "vectors": access.vectors,
                       "snapshots": snapshots})


def full_snapshot(access: PolicyAccess, shard: int) -> Reply:
    if access.server is not None:
        download = access.server.download_latest(shard)
        if download is None:
            raise HttpError(404, f"no snapshot of shard {shard} is published")
        server, name = access.server, download.headers["X-Snapshot-Name"]
        return Reply(200, download.headers, download.chunks, download.close,
                     lambda first, length: server.download_range(shard, name, first, length))
    latest = access.store.latest(shard)
    if latest is None:
        raise HttpError(404, f"no snapshot of shard {shard} is published")
    return Reply(200, {"Content-Type": "application/x-tar",
                       "Content-Length": str(latest.size_bytes),
                       "X-Snapshot-Name": latest.name, "X-Snapshot-Sha256": latest.sha256},
                 stream_file(access.store.path(latest.name)),
                 byte_range=lambda first, length: file_slice(access.store.path(latest.name),
                                                             first, length))


def partial_snapshot(access: PolicyAccess, shard: int, device_manifest: Any) -> Reply:
    if not isinstance(device_manifest, dict):
        raise HttpError(400, "the body must be the shard's manifest (a JSON object)")
    if access.server is not None:
        return _server_partial(access, shard, device_manifest)
    with access.lock:
        latest = access.store.latest(shard)
        if latest is None:
            raise HttpError(404, f"no snapshot of shard {shard} is published")
        manifest = access.store.manifest_of(latest.name)
        files = partial_files(manifest, device_manifest)
        if files is None:
            return Reply(304, {"X-Snapshot-Name": latest.name})
        path = access.store.partial(files, manifest)
    size = path.stat().st_size
    saved = max(latest.size_bytes - size, 0)
    access.counters.record(saved)
    EDGE_PARTIALS.labels(access.namespace, access.name).inc()
    EDGE_BYTES_SAVED.labels(access.namespace, access.name).inc(saved)
    return Reply(200, {"Content-Type": "application/x-tar", "Content-Length": str(size),
                       "X-Snapshot-Name": latest.name, "X-Snapshot-Sha256": sha256_of(path),
                       "X-Full-Size-Bytes": str(latest.size_bytes)},
                 stream_file(path), lambda: path.unlink(missing_ok=True))


def _server_partial(access: PolicyAccess, shard: int, device_manifest: dict[str, Any]
                    ) -> Reply:
    """Qdrant's partial, spooled to disk first: Qdrant gives no checksum for it, and a device
    verifies every snapshot it applies against the sha256 in the headers."""
    assert access.server is not None
    download = access.server.partial(shard, device_manifest)
    if download is None:
        return Reply(304)
    try:
        path, sha256 = access.store.spool(download.chunks)
    finally:
        download.close()
    headers = {**download.headers, "Content-Length": str(path.stat().st_size),
               "X-Snapshot-Sha256": sha256}
    return Reply(200, headers, stream_file(path), lambda: path.unlink(missing_ok=True))


def upload_points(access: PolicyAccess, body: Any) -> Reply:
    batches = EDGE_UPLOAD_BATCHES.labels(access.namespace, access.name, "refused")
    try:
        reply = _upload(access, body)
    except HttpError:
        batches.inc()
        raise
    EDGE_UPLOAD_BATCHES.labels(access.namespace, access.name, "accepted").inc()
    return reply


def _upload(access: PolicyAccess, body: Any) -> Reply:
    """Each point validated on its own (``core/edge_points.py``) against its routed
    collection's layout; bad points are rejected with their reason, the others upserted.
    503 only when Qdrant cannot take writes right now."""
    if access.upload is None:
        raise HttpError(409, "this policy accepts no uploads (spec.upload is not set)")
    try:
        points = points_of(body)
    except MalformedRequest as exc:
        raise HttpError(400, str(exc)) from None
    if len(points) > access.upload.max_batch_size:
        raise HttpError(413, f"{len(points)} points exceed maxBatchSize "
                        f"{access.upload.max_batch_size}")
    try:
        layouts = {target: _target_layout(access, target) for target in
                   upload_targets(points, access.upload) & access.allowed_targets}
        routed, rejected = route_points(points, access.upload, layouts,
                                        access.allowed_targets)
        refused = _upsert_routed(access.engine, routed)
    except QdrantError as exc:
        raise HttpError(503, f"Qdrant is unavailable: {exc}") from None
    refused_at = {r.index for r in refused}
    accepted = [p.point_id for p in routed if p.index not in refused_at]
    rejections = sorted([*rejected, *refused], key=lambda r: r.index)
    EDGE_UPLOADS.labels(access.namespace, access.name, "accepted").inc(len(accepted))
    EDGE_UPLOADS.labels(access.namespace, access.name, "rejected").inc(len(rejections))
    return _json(200, points_answer(accepted, [rejection(r.index, r.point_id, r.reason)
                                               for r in rejections]))


def _target_layout(access: PolicyAccess, collection: str) -> Layout | None:
    """The dense vectors of an upload target as Qdrant has them (None: no such collection),
    read once per policy step: ``access`` is replaced at every step."""
    if collection not in access.target_layouts:
        if collection == access.collection:
            layout: Layout | None = layout_of(access.vectors)
        else:
            observed = qdrant_points.describe(access.engine, collection)
            layout = None if observed is None else {
                name: v.size for name, v in observed.vectors.items() if not v.multivector}
        access.target_layouts[collection] = layout
    return access.target_layouts[collection]


def _upsert_routed(engine: QdrantEngine, routed: list[RoutedPoint]) -> list[Rejection]:
    """Upserts the points by collection; returns those Qdrant refused for good. A refused
    batch is split until the refused points are found, so one bad point fails alone."""
    by_collection: dict[str, list[RoutedPoint]] = {}
    for point in routed:
        by_collection.setdefault(point.collection, []).append(point)
    refused: list[Rejection] = []
    for collection, points in by_collection.items():
        refused += _upsert_or_split(engine, collection, points)
    return refused


def _upsert_or_split(engine: QdrantEngine, collection: str, points: list[RoutedPoint]
                     ) -> list[Rejection]:
    try:
        _upsert(engine, collection, [qm.PointStruct(id=p.point_id, vector=p.vector,
                                                    payload=p.payload) for p in points])
        return []
    except QdrantError as exc:
        if _qdrant_unavailable(engine, exc):
            raise
        reason = f"Qdrant refused the point: {str(exc)[:300]}"
        if exc.status_code == 404 or len(points) == 1:
            return [Rejection(p.index, p.point_id, reason) for p in points]
    half = len(points) // 2
    return [*_upsert_or_split(engine, collection, points[:half]),
            *_upsert_or_split(engine, collection, points[half:])]


def _qdrant_unavailable(engine: QdrantEngine, exc: QdrantError) -> bool:
    """An outage (retry later), not a refusal of the points: no answer from a server, 5xx,
    408, 429. The embedded engine runs in-process: its errors are about the points."""
    status = exc.status_code
    if status is None:
        return engine.capabilities.kind == "server"
    return status >= 500 or status in (408, 429)


def _upsert(engine: QdrantEngine, collection: str, points: list[Any]) -> None:
    qdrant_points.upsert(engine, collection, points)
