"""EdgeSnapshotPolicy decisions as pure functions: when to run, names, retention, manifest
diffs for partial snapshots, and validation of points uploaded by devices."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from album_operator.core.schedule import due_scheduled_time
from album_operator.models.edge_snapshot_policy import UploadSpec

SNAPSHOT_NOW_ANNOTATION = "albumops.io/snapshot-now"
# Files every segment of a partial snapshot carries, changed or not.
PARTIAL_SEGMENT_FILES = ("segment.json", "version.info")
SEGMENT_MANIFEST_FILE = "segment_manifest.json"
Manifest = Mapping[str, Mapping[str, Any]]


def snapshot_name(policy: str, shard: int, scheduled_for: dt.datetime) -> str:
    """Deterministic per scheduled time, so a retried run adopts what it already made."""
    return f"{policy}-shard{shard}-{scheduled_for.strftime('%Y%m%dT%H%M%SZ')}.tar"


_DURATION_PART = re.compile(r"([0-9]+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``7d``, ``168h``, ``1d12h``: the CRD's duration pattern."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return dt.timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


@dataclass(frozen=True)
class RunTrigger:
    schedule: str
    last_scheduled_time: dt.datetime | None
    created: dt.datetime
    trigger_token: str | None
    last_trigger_token: str | None
    suspended: bool
    published_times: tuple[dt.datetime | None, ...]
    """When each published snapshot was made (None: not known)."""

    @property
    def published_since_created(self) -> bool:
        """Whether a published snapshot may be this object's own. Older ones were left by a
        predecessor of the same name (deletionPolicy Retain) and do not count as a first run.
        One made in the second it was created counts: the first run usually happens then, and
        a step that still sees the status from before that run must not run again."""
        return any(made is None or made >= self.created for made in self.published_times)


@dataclass(frozen=True)
class DueRun:
    reason: str
    scheduled_for: dt.datetime


def due_run(trigger: RunTrigger, now: dt.datetime) -> DueRun | None:
    """The run to make now, if any. ``snapshot-now`` runs even while suspended; the schedule
    does not. Missed scheduled runs collapse into one catch-up."""
    second = now.replace(microsecond=0)
    if trigger.trigger_token and trigger.trigger_token != trigger.last_trigger_token:
        return DueRun(f"requested ({SNAPSHOT_NOW_ANNOTATION}={trigger.trigger_token})",
                      second)
    if trigger.suspended:
        return None
    if trigger.last_scheduled_time is None and not trigger.published_since_created:
        return DueRun("nothing published by this policy yet", second)
    since = trigger.last_scheduled_time or trigger.created
    due = due_scheduled_time(trigger.schedule, since, now)
    if due is None:
        return None
    return DueRun(f"scheduled for {due.strftime('%Y-%m-%dT%H:%M:%SZ')}", due)


@dataclass(frozen=True)
class Published:
    shard: int
    name: str
    created_at: dt.datetime


def snapshots_to_delete(snapshots: Sequence[Published], keep_last: int,
                        max_age: dt.timedelta | None, now: dt.datetime) -> list[Published]:
    """Per shard: the newest is always kept; of the rest, those beyond ``keep_last`` or older
    than ``max_age`` go."""
    doomed = []
    for shard in sorted({s.shard for s in snapshots}):
        newest_first = sorted((s for s in snapshots if s.shard == shard),
                              key=lambda s: (s.created_at, s.name), reverse=True)
        for rank, snapshot in enumerate(newest_first[1:], start=1):
            too_old = max_age is not None and now - snapshot.created_at > max_age
            if rank >= keep_last or too_old:
                doomed.append(snapshot)
    return doomed


def _newer(version: Any, device_version: Any) -> bool:
    if version is None or device_version is None:
        return True  # unversioned files are always sent
    return bool(version > device_version)


def partial_files(server: Manifest, device: Manifest) -> list[str] | None:
    """Shard-relative files a device with manifest ``device`` needs to reach ``server``,
    or None when it is already there."""
    if _same_versions(server, device):
        return None
    files = []
    for segment, entry in sorted(server.items()):
        have = device.get(segment, {}).get("file_versions") if segment in device else None
        changed = [path for path, version in sorted(entry.get("file_versions", {}).items())
                   if have is None or path not in have or _newer(version, have[path])]
        required = [*PARTIAL_SEGMENT_FILES, SEGMENT_MANIFEST_FILE]
        files += [f"segments/{segment}/{path}" for path in sorted({*changed, *required})]
    return files


def _same_versions(server: Manifest, device: Manifest) -> bool:
    if server.keys() != device.keys():
        return False
    return all(server[s].get("segment_version") == device[s].get("segment_version")
               and server[s].get("file_versions") == device[s].get("file_versions")
               for s in server)


@dataclass(frozen=True)
class RoutedPoint:
    point_id: int | str
    collection: str
    vector: Any
    payload: dict[str, Any]


@dataclass(frozen=True)
class Rejection:
    point_id: Any
    reason: str


# Changes since the publishing shard was last indexed sit in an appendable segment that
# devices search by brute force: cheap up to a few thousand points or a tenth of the shard.
UNINDEXED_SHARE = 0.1
UNINDEXED_FLOOR = 1_000


def publishing_shard_needs_indexing(unindexed: int, points: int) -> bool:
    """Whether this run seals the changed points into an indexed segment. The partial after
    such a run carries that new segment, not the whole shard."""
    return unindexed > max(UNINDEXED_FLOOR, UNINDEXED_SHARE * points)


_ROUTE_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check_id(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("id must be an unsigned integer or a UUID")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("id must be an unsigned integer or a UUID")
        return value
    return str(uuid.UUID(value))


def _check_vector(vector: Any, layout: Mapping[str, int]) -> None:
    named = vector if isinstance(vector, dict) else {"": vector}
    for name, values in named.items():
        if name not in layout:
            raise ValueError(f"unknown vector {name!r}; expected {sorted(layout)}")
        if not isinstance(values, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ValueError(f"vector {name!r} must be a list of numbers")
        if len(values) != layout[name]:
            raise ValueError(f"vector {name!r} has {len(values)} dimensions, expected "
                             f"{layout[name]}")
    if set(named) != set(layout):
        raise ValueError(f"vectors {sorted(set(layout) - set(named))} missing")


def _target(upload: UploadSpec, payload: Mapping[str, Any]) -> str:
    if upload.collection:
        return upload.collection
    route = upload.route_by
    assert route is not None  # the CRD requires collection or routeBy
    value = payload.get(route.field)
    if value is None or isinstance(value, bool) or not _ROUTE_VALUE.match(str(value)):
        raise ValueError(f"payload field {route.field!r} missing or not a plain value")
    return route.template.replace("{" + route.field + "}", str(value))


def route_points(points: Sequence[Any], upload: UploadSpec, layout: Mapping[str, int],
                 allowed: frozenset[str]) -> tuple[list[RoutedPoint], list[Rejection]]:
    """Validates a device batch and picks each point's collection. Only ``allowed``
    collections (owned by AlbumCollections, never a master) may receive points."""
    routed, rejected = [], []
    for point in points:
        raw_id = point.get("id") if isinstance(point, dict) else None
        try:
            if not isinstance(point, dict):
                raise ValueError("a point must be an object")
            point_id = _check_id(raw_id)
            _check_vector(point.get("vector"), layout)
            payload = point.get("payload") or {}
            if not isinstance(payload, dict):
                raise ValueError("payload must be an object")
            target = _target(upload, payload)
            if target not in allowed:
                raise ValueError(f"collection {target} is not an allowed upload target")
        except ValueError as exc:
            rejected.append(Rejection(raw_id, str(exc)))
            continue
        routed.append(RoutedPoint(point_id, target, point["vector"], payload))
    return routed, rejected
