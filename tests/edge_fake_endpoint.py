"""A stand-in for the operator's edge snapshot endpoint, over real qdrant-edge-py shards.

``SourceShard`` is the server side's shard: created with the WAL disabled, changed with
upserts and deletes, optimised and flushed; it builds REAL tar snapshots with GNU tar:

- full: ``segments/``, ``edge_config.json`` and the empty ``wal/`` of a fresh WAL-enabled
  shard;
- partial (for a device manifest): every server segment's ``segment.json``,
  ``version.info`` and a ``segment_manifest.json`` holding the server's manifest entry, plus
  the segment files the device lacks or holds in an older version (Qdrant's rule: a file's
  version, or the segment's when the file is unversioned; files at version 0 on both sides
  always go), plus ``edge_config.json`` and the empty ``wal/``.

``FakeEndpoint`` serves the protocol of ``docs/edge-protocol.md`` from a thread
(``http.server``): bearer tokens, ``GET /snapshots``, full and partial downloads with
``X-Snapshot-*`` headers, ``POST /points`` counting every upsert per ID. ``/points``
validates and routes each point with the operator's own code (``core.edge.route_points``,
the protocol's point rules): to ``upload`` (default: the fixed collection ``album_master``)
with the layouts in ``collections`` (default: the source shard's, or ``vectors``). Switches:
``available`` (False: 503 on /points), ``max_batch`` (413), ``corrupt_downloads`` (a wrong
``X-Snapshot-Sha256``), ``garbage_partials`` (a valid checksum over a body that is no tar),
``delay`` (seconds per /points request), ``reject`` (ID -> reason), ``stop()``/``start()``
(connection refused in between, same port).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    Point,
    Query,
    QueryRequest,
    ScrollRequest,
    UpdateOperation,
)

from album_operator.core.edge import route_points
from album_operator.edge import protocol
from album_operator.models.edge_snapshot_policy import UploadSpec

PREFIX = protocol.API_PREFIX
COLLECTION = "album_master"
Manifest = Mapping[str, Mapping[str, Any]]


def _effective(entry: Mapping[str, Any], path: str) -> int:
    version = entry["file_versions"][path]
    return int(entry["segment_version"] if version is None else version)


def partial_files(server: Manifest, device: Manifest) -> list[str]:
    """Paths (relative to the shard directory) of the segment files a partial carries."""
    files = []
    for segment_id, entry in server.items():
        base = f"segments/{segment_id}"
        files += [f"{base}/segment.json", f"{base}/version.info"]
        old = device.get(segment_id)
        for path in entry["file_versions"]:
            current = _effective(entry, path)
            if old is None or path not in old["file_versions"]:
                files.append(f"{base}/{path}")
                continue
            previous = _effective(old, path)
            if previous < current or previous == current == 0:
                files.append(f"{base}/{path}")
    return files


class SourceShard:
    """The server's shard, kept closed between changes (one opener per directory)."""

    def __init__(self, root: Path, dim: int = 32, distance: str = "Cosine",
                 vector_name: str = "") -> None:
        self.root = root
        self.dir = root / "source"
        self.dim = dim
        self.distance = distance
        self.vector_name = vector_name
        self.manifest: dict[str, Any] = {}
        self._wal = root / "empty-wal-shard"
        EdgeShard.create(str(self._wal), self._config(wal=True)).close()
        EdgeShard.create(str(self.dir), self._config(wal=False)).close()
        self._refresh()

    def _config(self, *, wal: bool) -> EdgeConfig:
        params = EdgeVectorParams(size=self.dim, distance=getattr(Distance, self.distance))
        return EdgeConfig(vectors={self.vector_name: params}, wal_enabled=wal)

    def _refresh(self) -> None:
        shard = EdgeShard.load(str(self.dir))
        self.manifest = shard.snapshot_manifest()
        shard.close()

    def change(self, upserts: Iterable[Point] = (),
               deletes: Iterable[int | uuid.UUID | str] = ()) -> None:
        shard = EdgeShard.load(str(self.dir))
        try:
            upserts, deletes = list(upserts), list(deletes)
            if upserts:
                shard.update(UpdateOperation.upsert_points(upserts))
            if deletes:
                shard.update(UpdateOperation.delete_points(deletes))
            shard.optimize()
            shard.flush()
            self.manifest = shard.snapshot_manifest()
        finally:
            shard.close()

    def random_points(self, ids: Iterable[int], rng: random.Random,
                      tag: str = "v1") -> list[Point]:
        points = []
        for i in ids:
            vector = [rng.uniform(-1, 1) for _ in range(self.dim)]
            points.append(Point(i, {self.vector_name: vector} if self.vector_name else vector,
                                {"n": i, "tag": tag}))
        return points

    def full_tar(self, dest: Path) -> Path:
        subprocess.run(["tar", "--sparse", "-cf", str(dest), "-C", str(self.dir), "segments",
                        "edge_config.json", "-C", str(self._wal), "wal"], check=True)
        return dest

    def partial_tar(self, device: Manifest, dest: Path) -> Path:
        stage = dest.with_name(dest.name + ".manifests")
        shutil.rmtree(stage, ignore_errors=True)
        for segment_id, entry in self.manifest.items():
            folder = stage / "segments" / segment_id
            folder.mkdir(parents=True)
            (folder / "segment_manifest.json").write_text(json.dumps(entry))
        files = [f for f in partial_files(self.manifest, device) if (self.dir / f).exists()]
        subprocess.run(["tar", "--sparse", "-cf", str(dest), "-C", str(self.dir),
                        "edge_config.json", *files, "-C", str(stage), "segments",
                        "-C", str(self._wal), "wal"], check=True)
        shutil.rmtree(stage)
        return dest

    def everything(self) -> dict[object, tuple[Any, Any]]:
        return scroll_all(self.dir)

    def search(self, vector: list[float], limit: int) -> list[tuple[object, float]]:
        shard = EdgeShard.load(str(self.dir))
        try:
            hits = shard.query(QueryRequest(limit=limit, query=Query.Nearest(
                vector, using=self.vector_name or None), with_payload=True))
        finally:
            shard.close()
        return [(hit.id, round(hit.score, 5)) for hit in hits]


def scroll_all(shard_dir: Path) -> dict[object, tuple[Any, Any]]:
    """Every point of a (closed) shard directory: id -> (payload, rounded vector)."""
    shard = EdgeShard.load(str(shard_dir))
    out: dict[object, tuple[Any, Any]] = {}
    offset = None
    try:
        while True:
            records, offset = shard.scroll(ScrollRequest(offset=offset, limit=1000,
                                                         with_payload=True, with_vector=True))
            for record in records:
                raw = record.vector
                vector = next(iter(raw.values())) if isinstance(raw, dict) else raw
                dense = cast("list[float]", vector)  # these shards hold one dense vector
                out[record.id] = (record.payload, [round(v, 4) for v in dense])
            if offset is None:
                return out
    finally:
        shard.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FakeEndpoint:
    def __init__(self, root: Path, source: SourceShard | None, *, namespace: str = "albums",
                 policy: str = "phones", token: str = "device-token-123",
                 shard: int = 0, vectors: protocol.Layout | None = None) -> None:
        self.root = root
        self.source = source
        self.namespace, self.policy, self.token, self.shard = namespace, policy, token, shard
        self.other_tokens: set[str] = set()  # valid tokens of another policy: 403
        self.available = True
        self.max_batch: int | None = None
        self.corrupt_downloads = False
        self.garbage_partials = False
        self.delay = 0.0
        self.reject: dict[str, str] = {}
        self.upload = UploadSpec.model_validate({"collection": COLLECTION})
        self.collections: dict[str, protocol.Layout] = {}
        if source is not None:
            self.collections[COLLECTION] = {source.vector_name: source.dim}
        elif vectors is not None:
            self.collections[COLLECTION] = dict(vectors)
        self.points: dict[str, dict[str, Any]] = {}
        self.upserts: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.snapshot_name: str | None = None
        self._full: Path | None = None
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self._serial = 0
        self.connections: set[socket.socket] = set()

    # -- publishing -----------------------------------------------------------------------

    def publish(self) -> str:
        assert self.source is not None
        self._serial += 1
        name = f"{self.policy}-shard{self.shard}-{self._serial:04d}.tar"
        path = self.source.full_tar(self.root / name)
        with self.lock:
            self.snapshot_name, self._full = name, path
        return name

    # -- server ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeEndpoint:
        endpoint = self

        class Handler(_Handler):
            fake = endpoint

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stops listening and cuts the kept-alive connections: connection refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    # -- /points --------------------------------------------------------------------------

    def receive(self, points: list[Any]) -> dict[str, Any]:
        """The answer to ``POST /points``: per-point validation and routing as the operator
        does it; ``reject`` (ID key -> reason) refuses points the rules would let through."""
        with self.lock:
            layouts = dict(self.collections)
            routed, rejections = route_points(points, self.upload, layouts,
                                              frozenset(layouts))
            accepted: list[Any] = []
            rejected = [protocol.rejection(r.index, r.point_id, r.reason) for r in rejections]
            for point in routed:
                key = str(point.point_id)
                if key in self.reject:
                    rejected.append(protocol.rejection(point.index, point.point_id,
                                                       self.reject[key]))
                    continue
                self.points[key] = points[point.index]
                self.upserts[key] += 1
                accepted.append(point.point_id)
        rejected.sort(key=lambda r: int(r["index"]))
        return protocol.points_answer(accepted, rejected)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeEndpoint
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake.lock:
            self.fake.connections.add(self.connection)

    def finish(self) -> None:
        with self.fake.lock:
            self.fake.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _send_json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        if token == self.fake.token:
            return True
        if token in self.fake.other_tokens:
            self._send_json(403, {"error": f"token {token} belongs to another policy"})
        else:  # echoing the token is what a careless server does: the client must redact
            self._send_json(401, {"error": f"missing or unknown token {token}"})
        return False

    def _route(self) -> str | None:
        fake = self.fake
        prefix = PREFIX.format(namespace=fake.namespace, policy=fake.policy)
        if not self.path.startswith(prefix):
            self._send_json(404, {"error": "no such policy"})
            return None
        return self.path[len(prefix):]

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:
        route = self._route()
        if route is None or not self._authorised():
            return
        fake = self.fake
        fake.requests[f"GET {route}"] += 1
        if route == "/snapshots":
            source = fake.source
            snapshots = []
            if fake._full is not None and fake.snapshot_name:
                snapshots.append({"shard": fake.shard, "name": fake.snapshot_name,
                                  "collection": "album_master", "sha256": _sha256(fake._full),
                                  "sizeBytes": fake._full.stat().st_size,
                                  "createdAt": "2026-11-01T00:00:00Z"})
            vectors = {source.vector_name: {"size": source.dim, "distance": source.distance}
                       } if source else {}
            self._send_json(200, {"policy": fake.policy, "namespace": fake.namespace,
                                  "collection": "album_master", "vectors": vectors,
                                  "snapshots": snapshots})
        elif route == f"/shards/{fake.shard}/snapshot":
            if fake._full is None or fake.snapshot_name is None:
                self._send_json(404, {"error": "no snapshot published"})
                return
            self._send_file(fake._full, fake.snapshot_name)
        else:
            self._send_json(404, {"error": "no such route"})

    def do_POST(self) -> None:
        route = self._route()
        body = self._body()
        if route is None or not self._authorised():
            return
        fake = self.fake
        fake.requests[f"POST {route}"] += 1
        if route == "/points":
            if fake.delay:
                time.sleep(fake.delay)
            if not fake.available:
                self._send_json(503, {"error": "qdrant unreachable"})
                return
            try:
                points = protocol.points_of(json.loads(body))
            except ValueError as error:  # not JSON, or no {"points": [...]}
                self._send_json(400, {"error": str(error)})
                return
            if fake.max_batch is not None and len(points) > fake.max_batch:
                self._send_json(413, {"error": f"more than {fake.max_batch} points"})
                return
            self._send_json(200, fake.receive(points))
        elif route == f"/shards/{fake.shard}/partial":
            device = json.loads(body)
            source = fake.source
            if source is None or fake.snapshot_name is None:
                self._send_json(404, {"error": "no snapshot published"})
                return
            if device == source.manifest:
                self.send_response(304)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path = fake.root / f"partial-{uuid.uuid4().hex}.tar"
            if fake.garbage_partials:
                path.write_bytes(b"this is not a tar archive" * 100)
            else:
                source.partial_tar(device, path)
            assert fake._full is not None
            self._send_file(path, fake.snapshot_name, full_size=fake._full.stat().st_size)
            path.unlink()
        else:
            self._send_json(404, {"error": "no such route"})

    def _send_file(self, path: Path, name: str, full_size: int | None = None) -> None:
        sha = _sha256(path)
        if self.fake.corrupt_downloads:
            sha = hashlib.sha256(b"something else").hexdigest()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("X-Snapshot-Name", name)
        self.send_header("X-Snapshot-Sha256", sha)
        if full_size is not None:
            self.send_header("X-Full-Size-Bytes", str(full_size))
        self.end_headers()
        with open(path, "rb") as data:
            shutil.copyfileobj(data, self.wfile, 1 << 20)
