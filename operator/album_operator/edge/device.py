"""``EdgeDevice``: one device directory, the two-shard pattern, and its upload queue.

``EdgeDevice(directory, client=None, shard=0)`` with ``client`` an
:class:`~album_operator.edge.client.EndpointClient` (needed by ``init``, ``pull`` and
``push`` only). Layout of ``directory``:

- ``mirror/``: read-only shard restored from the endpoint's snapshots. Never written
  locally; updated by staging a copy, applying the partial to it, and swapping by rename.
- ``local/``: the device's own writes, created by ``init`` with the layout of
  ``GET /snapshots``. Queries search both; a local point shadows the mirror's same ID
  until it comes back: a ``pull`` removes from ``local/`` every point the server accepted
  whose mirror copy now holds the same payload and vectors (queries answer the same).
- ``queue.sqlite``: the durable :class:`~album_operator.edge.queue.UploadQueue`.
- ``state.json``: :class:`~album_operator.edge.state.DeviceState` (shard version = snapshot
  name, last pull, endpoint, namespace, policy, shard, vector layout).
- ``tmp/`` staging space and ``.lock`` (held while ``init`` or ``pull`` runs).

Methods: ``init() -> InitResult``; ``pull() -> PullResult``; ``upsert(points) -> int``
(points as :class:`EdgePoint` or ``{"id", "vector", "payload"}`` dicts; all validated first,
then enqueued durably, then written to the local shard: a crash in between loses nothing
acknowledged); ``push(batch_size=64, **drain_options) -> PushResult``;
``query(vector, limit=10, using=None) -> list[Hit]``; ``status() -> DeviceStatus`` (reads
only ``state.json`` and the queue, so it runs beside a ``push --watch``); ``close()``.
A failed ``init`` or ``pull`` (network, checksum, engine) raises and leaves the existing
mirror as it was. The shards are opened on first use and kept open until ``close()``; one
process at a time should use a directory's shards (``push`` and ``status`` never open them).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from qdrant_edge import EdgeShard

from album_operator.core.vectors import cosine_names
from album_operator.edge import shards
from album_operator.edge.client import EndpointClient
from album_operator.edge.errors import DeviceError, EdgeError
from album_operator.edge.fsutil import DirLock, recover_swap, swap_in
from album_operator.edge.points import (
    EdgePoint,
    Hit,
    VectorSpec,
    check_point,
    id_key,
    merge_hits,
    same_content,
)
from album_operator.edge.pushing import PushResult, drain
from album_operator.edge.queue import UploadQueue
from album_operator.edge.state import DeviceState, load_state, save_state, utc_now_iso

DEFAULT_DIR = Path("~/.local/share/album-edge").expanduser()


@dataclass(frozen=True)
class InitResult:
    snapshot: str
    sha256: str
    size_bytes: int
    points: int

    def to_json(self) -> dict[str, object]:
        return {"snapshot": self.snapshot, "sha256": self.sha256,
                "sizeBytes": self.size_bytes, "points": self.points}


@dataclass(frozen=True)
class PullResult:
    changed: bool
    snapshot: str | None
    size_bytes: int = 0
    full_size_bytes: int | None = None
    points: int | None = None
    retired_local_points: int = 0

    def to_json(self) -> dict[str, object]:
        return {"changed": self.changed, "snapshot": self.snapshot,
                "sizeBytes": self.size_bytes, "fullSizeBytes": self.full_size_bytes,
                "points": self.points, "retiredLocalPoints": self.retired_local_points}


@dataclass(frozen=True)
class DeviceStatus:
    initialized: bool
    endpoint: str | None
    namespace: str | None
    policy: str | None
    shard: int
    shard_version: str | None
    last_pull_at: str | None
    last_pull_error: str | None
    queue_depth: int
    oldest_queued_age_seconds: float | None
    max_attempts: int
    dead_letters: int

    def to_json(self) -> dict[str, object]:
        return {"initialized": self.initialized, "endpoint": self.endpoint,
                "namespace": self.namespace, "policy": self.policy, "shard": self.shard,
                "shardVersion": self.shard_version, "lastPullAt": self.last_pull_at,
                "lastPullError": self.last_pull_error, "queueDepth": self.queue_depth,
                "oldestQueuedAgeSeconds": self.oldest_queued_age_seconds,
                "maxAttempts": self.max_attempts, "deadLetters": self.dead_letters}


class EdgeDevice:
    def __init__(self, directory: str | Path, client: EndpointClient | None = None,
                 shard: int = 0, *, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(directory).expanduser()
        self.client = client
        self.shard = int(shard)
        self._clock = clock
        self.mirror_dir = self.dir / "mirror"
        self.local_dir = self.dir / "local"
        self.state_path = self.dir / "state.json"
        self.queue_path = self.dir / "queue.sqlite"
        self.tmp_dir = self.dir / "tmp"
        self._queue: UploadQueue | None = None
        self._mirror: EdgeShard | None = None
        self._local: EdgeShard | None = None
        state = load_state(self.state_path)
        if state is not None:
            self._check_identity(state)

    # -- identity and state ---------------------------------------------------------------

    def _check_identity(self, state: DeviceState) -> None:
        if state.shard != self.shard:
            raise DeviceError(f"{self.dir} holds shard {state.shard}, not shard {self.shard}")
        if self.client is None or state.policy is None:
            return
        if (state.namespace, state.policy) != (self.client.namespace, self.client.policy):
            raise DeviceError(
                f"{self.dir} holds policy {state.namespace}/{state.policy}, not "
                f"{self.client.namespace}/{self.client.policy}; use another --dir")

    def state(self) -> DeviceState:
        return load_state(self.state_path) or DeviceState(shard=self.shard)

    def _layout(self) -> dict[str, VectorSpec]:
        state = self.state()
        if not state.vectors or not self.local_dir.exists():
            raise DeviceError(f"{self.dir} is not initialised: run init first")
        return state.vectors

    def _need_client(self) -> EndpointClient:
        if self.client is None:
            raise DeviceError("this operation needs the endpoint (--endpoint, --namespace, "
                              "--policy and a token)")
        return self.client

    @property
    def queue(self) -> UploadQueue:
        if self._queue is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._queue = UploadQueue(self.queue_path)
        return self._queue

    # -- staging --------------------------------------------------------------------------

    @contextmanager
    def _staging(self) -> Iterator[Path]:
        """Holds the directory's lock and gives a fresh work directory under ``tmp/``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            lock = DirLock(self.dir / ".lock").__enter__()
        except BlockingIOError:
            raise DeviceError(f"another init or pull is running on {self.dir}") from None
        try:
            recover_swap(self.mirror_dir)
            shutil.rmtree(self.tmp_dir, ignore_errors=True)  # leftovers of a crashed run
            self.tmp_dir.mkdir()
            work = Path(tempfile.mkdtemp(dir=self.tmp_dir))
            try:
                yield work
            finally:
                shutil.rmtree(work, ignore_errors=True)
        finally:
            lock.__exit__(None, None, None)

    def _close_mirror(self) -> None:
        shards.close_quietly(self._mirror)
        self._mirror = None

    # -- operations -----------------------------------------------------------------------

    def init(self) -> InitResult:
        """Restores the latest full snapshot as the mirror; creates the local shard."""
        client = self._need_client()
        with self._staging() as work:
            listing = client.listing()
            state = self.state()
            if state.vectors and state.vectors != listing.vectors and self.local_dir.exists():
                raise DeviceError("the endpoint's vector layout changed since this directory "
                                  "was initialised; start a new --dir")
            download = client.download_snapshot(self.shard, work / "snapshot.tar")
            staging = work / "mirror"
            points = shards.restore_full(download.path, staging)
            declared = shards.snapshot_layout(staging)
            if declared is not None and declared != listing.vectors:
                raise DeviceError(f"snapshot {download.name} declares vectors {declared}, "
                                  f"the endpoint lists {listing.vectors}")
            self._close_mirror()
            swap_in(staging, self.mirror_dir)
            if not self.local_dir.exists():
                shards.create_local(self.local_dir, listing.vectors, work)
            save_state(self.state_path, replace(
                state, endpoint=client.base_url, namespace=client.namespace,
                policy=client.policy, shard=self.shard, collection=listing.collection,
                vectors=listing.vectors, snapshot=download.name,
                snapshot_sha256=download.sha256, initialized_at=utc_now_iso(),
                last_pull_at=utc_now_iso(), last_pull="updated"))
        return InitResult(download.name, download.sha256, download.size_bytes, points)

    def pull(self) -> PullResult:
        """Brings the mirror to the latest snapshot with a partial, or does nothing (304)."""
        client = self._need_client()
        self._layout()
        with self._staging() as work:
            try:
                result = self._pull(client, work)
            except EdgeError as error:
                save_state(self.state_path, replace(self.state(), last_pull=f"failed: {error}"))
                raise
        return result

    def _pull(self, client: EndpointClient, work: Path) -> PullResult:
        mirror = self._open_mirror()
        with shards.engine_errors("cannot read the mirror's manifest"):
            manifest = mirror.snapshot_manifest()
        download = client.download_partial(self.shard, manifest, work / "partial.tar")
        state = self.state()
        if download is None:
            save_state(self.state_path, replace(state, last_pull_at=utc_now_iso(),
                                                last_pull="unchanged"))
            return PullResult(False, state.snapshot)
        self._close_mirror()
        staging, points = shards.apply_partial(self.mirror_dir, download.path, work)
        swap_in(staging, self.mirror_dir)
        save_state(self.state_path, replace(
            state, snapshot=download.name, snapshot_sha256=download.sha256,
            endpoint=client.base_url, last_pull_at=utc_now_iso(), last_pull="updated"))
        return PullResult(True, download.name, download.size_bytes, download.full_size_bytes,
                          points, self._retire_returned_points())

    def _retire_returned_points(self) -> int:
        """Removes local points the server accepted and the mirror now holds unchanged.
        Points still queued or dead-lettered stay, and so does any whose mirror copy differs
        (a snapshot older than the upload, or a later write by someone else)."""
        held, cosine = self.queue.held_keys(), cosine_names(self._layout())
        local, mirror = self._open_local(), self._open_mirror()
        retired = 0
        for page in shards.pages(local):
            mine = {id_key(record.id): record for record in page
                    if id_key(record.id) not in held}
            in_mirror = shards.retrieve(mirror, [record.id for record in mine.values()])
            returned = [theirs.id for theirs in in_mirror
                        if same_content(mine[id_key(theirs.id)], theirs, cosine)]
            shards.delete(local, returned)
            retired += len(returned)
        return retired

    def upsert(self, points: Iterable[EdgePoint | Mapping[str, Any]]) -> int:
        """Validates all points, enqueues them durably, then writes them to the local shard."""
        layout = self._layout()
        batch = [p if isinstance(p, EdgePoint) else EdgePoint.from_json(dict(p))
                 for p in points]
        for point in batch:
            reason = check_point(point, layout)
            if reason is not None:
                raise DeviceError(f"point {point.id}: {reason}")
        if not batch:
            return 0
        local = self._open_local()  # before enqueueing: a locked shard fails with nothing queued
        self.queue.enqueue(batch)
        shards.upsert(local, batch)
        return len(batch)

    def push(self, batch_size: int = 64, **options: Any) -> PushResult:
        """Drains the queue to the endpoint; see :func:`album_operator.edge.pushing.drain`."""
        return drain(self.queue, self._need_client(), batch_size=batch_size, **options)

    def query(self, vector: Sequence[float], limit: int = 10,
              using: str | None = None) -> list[Hit]:
        layout = self._layout()
        if using is None:
            if len(layout) != 1:
                raise DeviceError(f"the shard has vectors {sorted(layout)}: choose one")
            using = next(iter(layout))
        spec = layout.get(using)
        if spec is None:
            raise DeviceError(f"no vector {using!r} in the shard's layout {sorted(layout)}")
        if len(vector) != spec.size:
            raise DeviceError(f"the query has {len(vector)} dimensions, the shard's "
                              f"vector has {spec.size}")
        if limit < 1:
            raise DeviceError("limit must be >= 1")
        query = [float(value) for value in vector]
        local = self._open_local()
        local_hits = shards.search(local, query, using, limit, "local")
        mirror = self._open_mirror()
        fetch = limit
        while True:
            mirror_hits = shards.search(mirror, query, using, fetch, "mirror")
            shadowed = shards.present_ids(local, [hit.id for hit in mirror_hits])
            if len(mirror_hits) - len(shadowed) >= limit or len(mirror_hits) < fetch:
                break
            fetch *= 2
        return merge_hits(local_hits, mirror_hits, shadowed, limit, spec.higher_is_better)

    def status(self) -> DeviceStatus:
        state = load_state(self.state_path)
        if self._queue is not None or self.queue_path.exists():
            stats = self.queue.stats()
            depth, oldest = stats.depth, stats.oldest_enqueued_at
            attempts, dead = stats.max_attempts, stats.dead_letters
        else:
            depth, oldest, attempts, dead = 0, None, 0, 0
        error = None
        if state and state.last_pull and state.last_pull.startswith("failed: "):
            error = state.last_pull.removeprefix("failed: ")
        return DeviceStatus(
            initialized=bool(state and state.snapshot and self.mirror_dir.exists()),
            endpoint=state.endpoint if state else None,
            namespace=state.namespace if state else None,
            policy=state.policy if state else None, shard=self.shard,
            shard_version=state.snapshot if state else None,
            last_pull_at=state.last_pull_at if state else None, last_pull_error=error,
            queue_depth=depth,
            oldest_queued_age_seconds=None if oldest is None else
            round(max(0.0, self._clock() - oldest), 3),
            max_attempts=attempts, dead_letters=dead)

    # -- shards ---------------------------------------------------------------------------

    def _open_mirror(self) -> EdgeShard:
        if self._mirror is None:
            if not self.mirror_dir.exists():
                recover_swap(self.mirror_dir)
            if not self.mirror_dir.exists():
                raise DeviceError(f"{self.dir} has no mirror: run init first")
            self._mirror = shards.load(self.mirror_dir)
        return self._mirror

    def _open_local(self) -> EdgeShard:
        if self._local is None:
            self._local = shards.load(self.local_dir)
        return self._local

    def close(self) -> None:
        self._close_mirror()
        if self._local is not None:
            with shards.engine_errors("cannot flush the local shard"):
                self._local.flush()
            shards.close_quietly(self._local)
            self._local = None
        if self._queue is not None:
            self._queue.close()
            self._queue = None

    def __enter__(self) -> EdgeDevice:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
