"""EdgeSnapshotPolicy decisions as pure functions: when to run, names, retention, manifest
diffs for partial snapshots, and validation of points uploaded by devices."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from album_operator.core.edge_points import (
    Layout,
    PointId,
    PointRejected,
    Vector,
    check_vector,
    echo_id,
    parse_point,
)
from album_operator.core.schedule import due_scheduled_time
from album_operator.models.edge_snapshot_policy import UploadSpec

SNAPSHOT_NOW_ANNOTATION = "albumops.io/snapshot-now"
# Files every segment of a partial snapshot carries, changed or not.
PARTIAL_SEGMENT_FILES = ("segment.json", "version.info")
SEGMENT_MANIFEST_FILE = "segment_manifest.json"
Manifest = Mapping[str, Mapping[str, Any]]


SNAPSHOT_NAME_PREFIX_MAX = 64


def snapshot_name(policy: str, shard: int, scheduled_for: dt.datetime) -> str:
    """Deterministic per scheduled time, so a retried run adopts what it already made.

    A policy name may be 253 characters and a file name only 255 bytes with its suffixes,
    so a long name is cut and a digest of the whole keeps it unique."""
    prefix = policy
    if len(policy) > SNAPSHOT_NAME_PREFIX_MAX:
        digest = hashlib.sha256(policy.encode()).hexdigest()[:12]
        prefix = f"{policy[:SNAPSHOT_NAME_PREFIX_MAX - 13]}-{digest}"
    return f"{prefix}-shard{shard}-{scheduled_for.strftime('%Y%m%dT%H%M%SZ')}.tar"


_DURATION_PART = re.compile(r"([0-9]+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``7d``, ``168h``, ``1d12h``: the CRD's duration pattern."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return dt.timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


@dataclass(frozen=True)
class Published:
    shard: int
    name: str
    created_at: dt.datetime


@dataclass(frozen=True)
class LostSnapshots:
    names: tuple[str, ...]
    """The newest recorded snapshot of each shard that lost it (empty: named earlier)."""
    why: str


# The Ready reason while recorded snapshots are missing: kept by the status until a run
# republishes, since the status's own list is rewritten from what is present.
SNAPSHOTS_MISSING = "SnapshotsMissing"


def lost_snapshots(recorded: Sequence[Published], present: Sequence[Published],
                   where: str, reported_missing: bool) -> LostSnapshots | None:
    """What a policy's status says it published and ``where`` (this replica's disk, or
    Qdrant) no longer has: per shard, the newest recorded snapshot when nothing present is
    as new (older ones may have gone by retention). ``reported_missing``: the previous step
    found snapshots missing and no run has republished them since."""
    names = []
    for shard in sorted({s.shard for s in recorded}):
        newest = max((s for s in recorded if s.shard == shard), key=lambda s: s.created_at)
        if not any(p.shard == shard and p.created_at >= newest.created_at for p in present):
            names.append(newest.name)
    if names:
        return LostSnapshots(tuple(names), f"the status records {', '.join(names)}, which "
                             f"{where} does not have")
    if reported_missing:
        return LostSnapshots((), f"snapshots recorded earlier are still missing from {where}")
    return None


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
    lost: LostSnapshots | None = None
    """Snapshots the status records that are no longer where they are served from."""

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
    if trigger.lost is not None:
        return DueRun(f"republishing: {trigger.lost.why}", second)
    since = trigger.last_scheduled_time or trigger.created
    due = due_scheduled_time(trigger.schedule, since, now)
    if due is None:
        return None
    return DueRun(f"scheduled for {due.strftime('%Y-%m-%dT%H:%M:%SZ')}", due)


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
    index: int
    """The point's position in the device's batch."""
    point_id: PointId
    collection: str
    vector: Vector
    payload: dict[str, Any]


@dataclass(frozen=True)
class Rejection:
    index: int
    point_id: PointId | None
    """The ID as the device sent it when it is usable in an answer (see ``echo_id``)."""
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


def upload_target(upload: UploadSpec, payload: Mapping[str, Any]) -> str:
    """The collection a point goes to: ``upload.collection``, or ``routeBy``'s template
    filled with the payload field (a plain value of letters, digits, ``_`` and ``-``)."""
    if upload.collection:
        return upload.collection
    route = upload.route_by
    assert route is not None  # the CRD requires collection or routeBy
    value = payload.get(route.field)
    if value is None or isinstance(value, bool | dict | list) or not _ROUTE_VALUE.match(
            str(value)):
        raise PointRejected(f"payload field {route.field!r} missing or not a plain value")
    return route.template.replace("{" + route.field + "}", str(value))


def upload_targets(points: Sequence[Any], upload: UploadSpec) -> set[str]:
    """The collections a batch's routable points name: the layouts to read before
    :func:`route_points`."""
    targets = set()
    for point in points:
        payload = point.get("payload") if isinstance(point, dict) else None
        try:
            targets.add(upload_target(upload, payload if isinstance(payload, dict) else {}))
        except PointRejected:
            continue
    return targets


def route_points(points: Sequence[Any], upload: UploadSpec,
                 layouts: Mapping[str, Layout | None], allowed: frozenset[str]
                 ) -> tuple[list[RoutedPoint], list[Rejection]]:
    """Validates a device batch point by point (``core/edge_points.py``'s rules) and picks
    each point's collection. Only ``allowed`` collections (owned by AlbumCollections, never a
    master) may receive points; a point's vectors must fit its target's layout
    (``layouts[target]``, None: the collection does not exist)."""
    routed, rejected = [], []
    for index, raw in enumerate(points):
        try:
            point = parse_point(raw)
            target = upload_target(upload, point.payload)
            if target not in allowed:
                raise PointRejected(f"collection {target} is not an allowed upload target")
            layout = layouts.get(target)
            if layout is None:
                raise PointRejected(f"collection {target} does not exist")
            check_vector(point.vector, layout)
        except PointRejected as exc:
            raw_id = raw.get("id") if isinstance(raw, dict) else None
            rejected.append(Rejection(index, echo_id(raw_id), str(exc)))
            continue
        routed.append(RoutedPoint(index, point.id, target, point.vector, point.payload))
    return routed, rejected
