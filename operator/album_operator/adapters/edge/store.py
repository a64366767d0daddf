"""Published snapshots on disk, and packaging a shard into full and partial snapshot tars.

Layout per policy: ``<root>/<namespace>/<policy>/`` with ``work/`` (the publishing shard),
``published/<name>`` plus ``<name>.json`` (metadata and the shard manifest at publication)
and ``empty/`` (a fresh shard whose empty ``wal/`` every snapshot carries).

Shard files are sparse and preallocated, so tars are written by GNU tar with ``--sparse``
(Python's tarfile would expand every hole); ``EdgeShard.unpack_snapshot`` and
``update_from_snapshot`` read them as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from album_operator.adapters.edge.shardbuild import empty_wal_dir
from album_operator.core.edge import SEGMENT_MANIFEST_FILE

CHUNK = 1 << 20


@dataclass(frozen=True)
class SnapshotFile:
    shard: int
    name: str
    collection: str
    size_bytes: int
    sha256: str
    created_at: str
    scheduled_for: str | None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def file_slice(path: Path, start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of a file from ``start``, in chunks (opened at the first read)."""
    with path.open("rb") as handle:
        handle.seek(start)
        while length > 0:
            block = handle.read(min(CHUNK, length))
            if not block:
                return
            length -= len(block)
            yield block


def stream_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            yield block


def _tar(out: Path, groups: Sequence[tuple[Path, Sequence[str]]]) -> None:
    command = ["tar", "--sparse", "--format=gnu", "-cf", str(out)]
    for directory, members in groups:
        if members:
            command += ["-C", str(directory), *members]
    subprocess.run(command, check=True, capture_output=True)


class PolicyStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.published = root / "published"

    def empty(self) -> Path:
        return empty_wal_dir(self.root / "empty")

    def path(self, name: str) -> Path:
        return self.published / name

    def snapshots(self) -> list[SnapshotFile]:
        """Newest first."""
        if not self.published.is_dir():
            return []
        found = []
        for meta in self.published.glob("*.json"):
            record = json.loads(meta.read_text())["snapshot"]
            if self.path(record["name"]).is_file():
                found.append(SnapshotFile(**record))
        return sorted(found, key=lambda s: (s.created_at, s.name), reverse=True)

    def latest(self, shard: int) -> SnapshotFile | None:
        return next((s for s in self.snapshots() if s.shard == shard), None)

    def find(self, name: str) -> SnapshotFile | None:
        return next((s for s in self.snapshots() if s.name == name), None)

    def manifest_of(self, name: str) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(
            (self.published / f"{name}.json").read_text())["manifest"]
        return manifest

    def publish(self, shard: int, name: str, collection: str, manifest: dict[str, Any],
                created_at: str, scheduled_for: str | None) -> SnapshotFile:
        """Packages the work shard as a full snapshot; atomic: a crash leaves no half file."""
        self.published.mkdir(parents=True, exist_ok=True)
        staging = self.published / f".{name}.partial"
        members = sorted(p.name for p in self.work.iterdir()
                         if p.name in {"segments", "edge_config.json"})
        _tar(staging, [(self.work, members), (self.empty(), ["wal"])])
        record = SnapshotFile(shard, name, collection, staging.stat().st_size,
                              sha256_of(staging), created_at, scheduled_for)
        meta = self.published / f"{name}.json"
        meta.write_text(json.dumps({"snapshot": asdict(record), "manifest": manifest}))
        os.replace(staging, self.path(name))
        return record

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)
        (self.published / f"{name}.json").unlink(missing_ok=True)

    def partial(self, files: Sequence[str], manifest: dict[str, Any]) -> Path:
        """A tar of ``files`` from the work shard plus each segment's manifest entry and an
        empty WAL. The caller deletes it."""
        extra = Path(tempfile.mkdtemp(prefix="partial-", dir=self.root))
        try:
            from_work, from_extra = [], []
            for member in files:
                if member.endswith("/" + SEGMENT_MANIFEST_FILE):
                    segment = member.split("/")[1]
                    target = extra / member
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(json.dumps(manifest[segment]))
                    from_extra.append(member)
                elif (self.work / member).exists():
                    from_work.append(member)
            handle, name = tempfile.mkstemp(prefix="partial-", suffix=".tar", dir=self.root)
            os.close(handle)
            out = Path(name)
            _tar(out, [(self.work, from_work), (extra, from_extra), (self.empty(), ["wal"])])
            return out
        finally:
            shutil.rmtree(extra, ignore_errors=True)

    def spool(self, chunks: Iterable[bytes]) -> tuple[Path, str]:
        """Writes a stream to a temporary file, hashing it on the way: (path, sha256). The
        caller deletes it. For answers whose checksum must go in a header before the body."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="spool-", suffix=".tar", dir=self.root)
        digest = hashlib.sha256()
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, digest.hexdigest()

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
