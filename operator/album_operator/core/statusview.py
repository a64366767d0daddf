"""What ``album-operator status`` prints: one resource's story on one screen, or a table of
every resource in a namespace. Pure: the caller reads the object, its events, Qdrant and the
clock, and this module only decides the words."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from album_operator.core.merge_plan import plan_message
from album_operator.core.timeutil import parse_rfc3339
from album_operator.models.kinds import ALL_KINDS, KindInfo

PROGRESS_BAR_WIDTH = 24
EVENTS_SHOWN = 10
MESSAGE_WIDTH = 100


class UnknownKind(ValueError):
    """A KIND/NAME argument whose kind is none of the operator's three."""


def resolve_kind(word: str) -> KindInfo:
    """The kind named by ``word``: its kind, plural, singular or short name, any case,
    optionally with the group (``mastermerges.albumops.io``)."""
    wanted = word.lower().split(".", 1)[0]
    for info in ALL_KINDS:
        if wanted in {info.kind.lower(), info.plural, info.singular, *info.short_names}:
            return info
    known = ", ".join(info.singular for info in ALL_KINDS)
    raise UnknownKind(f"unknown kind {word!r}: expected one of {known} (or their short names)")


def parse_target(target: str) -> tuple[KindInfo, str]:
    kind, slash, name = target.partition("/")
    if not slash or not name:
        raise UnknownKind(f"{target!r}: expected KIND/NAME, e.g. mastermerge/album-master")
    return resolve_kind(kind), name


@dataclass(frozen=True)
class EventLine:
    type: str
    reason: str
    message: str
    time: str | None
    count: int = 1


@dataclass(frozen=True)
class CollectionFacts:
    name: str
    exists: bool
    points: int | None = None
    health: str | None = None


@dataclass(frozen=True)
class QdrantFacts:
    """What Qdrant itself says about the collections a resource names."""

    where: str
    problem: str | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    collections: Sequence[CollectionFacts] = ()


@dataclass(frozen=True)
class QdrantQuestion:
    """Which collections and aliases a resource's story needs from Qdrant."""

    collections: tuple[str, ...]
    aliases: tuple[str, ...]


def _status(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body.get("status") or {}


def _spec(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body.get("spec") or {}


def _unique(names: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for name in names if name))


def qdrant_question(info: KindInfo, body: Mapping[str, Any]) -> QdrantQuestion:
    spec, status = _spec(body), _status(body)
    if info.kind == "AlbumCollection":
        return QdrantQuestion(_unique([status.get("collectionName")]), ())
    if info.kind == "MasterMerge":
        build = status.get("currentBuild") or {}
        sources = [source.get("name") for source in build.get("sources") or []]
        return QdrantQuestion(
            _unique([status.get("aliasTarget"), build.get("name"),
                     *(sources or spec.get("sources") or [])]),
            _unique([spec.get("alias") or "album_master"]))
    upload = spec.get("upload") or {}
    return QdrantQuestion(_unique([spec.get("collection"), upload.get("collection")]),
                          _unique([spec.get("collection")]))


def age(since: str | None, now: dt.datetime) -> str:
    """``5s``, ``3m``, ``2h``, ``4d``: kubectl's short ages; ``-`` when unknown."""
    if not since:
        return "-"
    try:
        seconds = int((now - parse_rfc3339(since)).total_seconds())
    except ValueError:
        return "-"
    if seconds < 0:
        return f"in {age_of(-seconds)}"
    return age_of(seconds)


def when(moment: str | None, now: dt.datetime) -> str:
    """``in 3m`` for a future moment, ``5s ago`` for a past one."""
    text = age(moment, now)
    return text if text == "-" or text.startswith("in ") else f"{text} ago"


def age_of(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _one_line(text: str, width: int = MESSAGE_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell; the last column is never padded."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    lines = []
    for row in (header, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append((indent + "  ".join([*cells, str(row[-1])])).rstrip())
    return lines


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return {}


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def progress_bar(done: int, total: int) -> str:
    share = min(done / total, 1.0) if total > 0 else 0.0
    filled = round(share * PROGRESS_BAR_WIDTH)
    return f"[{'#' * filled}{'-' * (PROGRESS_BAR_WIDTH - filled)}] {share:.0%}"


def summary(info: KindInfo, body: Mapping[str, Any], now: dt.datetime) -> str:
    """One phrase of what the resource is doing, for the namespace table."""
    status = _status(body)
    if info.kind == "AlbumCollection":
        return f"{status.get('collectionName') or '-'}: {_count(status.get('pointsCount'))} points"
    if info.kind == "MasterMerge":
        build = status.get("currentBuild")
        if build:
            copied, total = build.get("copiedPoints", 0), build.get("pointsToCopy", 0)
            share = "" if build.get("phase") == "Failed" else (
                " " + progress_bar(copied, total).split()[-1])
            return f"{build.get('name')}: {build.get('phase')}{share}"
        return f"{_spec(body).get('alias') or 'album_master'} -> {status.get('aliasTarget') or '-'}"
    last = status.get("lastRun") or {}
    return (f"{status.get('snapshotCount', 0)} snapshots, last run "
            f"{last.get('result', '-')} {when(last.get('time'), now)}")


def overview(rows: Sequence[tuple[KindInfo, Mapping[str, Any]]], now: dt.datetime,
             with_namespace: bool) -> list[str]:
    """The namespace table: one line per resource."""
    if not rows:
        return ["no AlbumCollections, MasterMerges or EdgeSnapshotPolicies found"]
    header = [*(["NAMESPACE"] if with_namespace else []), "KIND", "NAME", "READY", "REASON",
              "AGE", "NOW"]
    lines = []
    for info, body in rows:
        meta, ready = body.get("metadata") or {}, _ready(_status(body))
        lines.append([*([meta.get("namespace", "")] if with_namespace else []), info.kind,
                      meta.get("name", ""), ready.get("status", "Unknown"),
                      ready.get("reason", "-"), age(meta.get("creationTimestamp"), now),
                      summary(info, body, now)])
    return table(header, lines, indent="")


def story(info: KindInfo, body: Mapping[str, Any], events: Sequence[EventLine],
          qdrant: QdrantFacts, now: dt.datetime) -> list[str]:
    """One resource on one screen: conditions, what it is doing, Qdrant's side, events."""
    sections = [_header(info, body, now), _conditions(_status(body), now),
                _kind_section(info, body, now), _qdrant(qdrant), _events(events, now)]
    lines: list[str] = []
    for section in sections:
        if section:
            lines.extend([*section, ""])
    return lines[:-1]


def _header(info: KindInfo, body: Mapping[str, Any], now: dt.datetime) -> list[str]:
    meta, status = body.get("metadata") or {}, _status(body)
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    stale = "" if generation == observed else " (not yet reconciled)"
    lines = [f"{info.kind} {meta.get('namespace')}/{meta.get('name')}",
             f"  age {age(meta.get('creationTimestamp'), now)}, generation {generation}, "
             f"observed {observed if observed is not None else '-'}{stale}"]
    if meta.get("deletionTimestamp"):
        lines.append(f"  being deleted since {when(meta['deletionTimestamp'], now)} "
                     f"(finalizers: {', '.join(meta.get('finalizers') or []) or 'none'})")
    return lines


def _conditions(status: Mapping[str, Any], now: dt.datetime) -> list[str]:
    conditions = status.get("conditions") or []
    if not conditions:
        return ["Conditions", "  none yet: the operator has not written status (is it running?)"]
    rows = [[c.get("type", ""), c.get("status", ""), c.get("reason", ""),
             age(c.get("lastTransitionTime"), now), _one_line(c.get("message", ""))]
            for c in conditions]
    return ["Conditions", *table(["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], rows)]


def _kind_section(info: KindInfo, body: Mapping[str, Any], now: dt.datetime) -> list[str]:
    if info.kind == "AlbumCollection":
        return _album_collection(_status(body), now)
    if info.kind == "MasterMerge":
        return _master_merge(_spec(body), _status(body), now)
    return _edge_policy(_status(body), now)


def _album_collection(status: Mapping[str, Any], now: dt.datetime) -> list[str]:
    lines = ["Collection",
             f"  {status.get('collectionName') or '-'} on the {status.get('engine') or '?'} "
             f"engine: {_count(status.get('pointsCount'))} points, "
             f"{_count(status.get('indexedVectorsCount'))} indexed, "
             f"{_count(status.get('segmentsCount'))} segments, "
             f"Qdrant status {status.get('qdrantStatus') or '-'}",
             f"  last sync {when(status.get('lastSyncTime'), now)}, "
             f"recreated {status.get('recreations', 0)} times"]
    if status.get("drift"):
        lines.append(f"  drift: {', '.join(status['drift'])}")
    if status.get("ignoredSettings"):
        lines.append(f"  ignored by this engine: {', '.join(status['ignoredSettings'])}")
    return lines


def _master_merge(spec: Mapping[str, Any], status: Mapping[str, Any],
                  now: dt.datetime) -> list[str]:
    alias = spec.get("alias") or "album_master"
    lines = [f"Alias {alias} -> {status.get('aliasTarget') or '(none yet)'}, "
             f"last swap {when(status.get('lastSwapTime'), now)}",
             f"  masters kept (rollbackTo values): {', '.join(status.get('masters') or []) or '-'}"]
    if status.get("nextScheduledTime"):
        lines.append(f"  next scheduled build {when(status['nextScheduledTime'], now)} "
                     f"({status['nextScheduledTime']})")
    if status.get("nextRetryTime"):
        lines.append(f"  failed {status.get('failedBuildsInARow', 0)} times in a row; next "
                     f"retry {when(status['nextRetryTime'], now)}")
    if status.get("plan") and status["plan"].get("sources"):
        lines.append(f"  plan ({when(status['plan'].get('plannedAt'), now)}): "
                     f"{_one_line(plan_message(status['plan']), 200)}")
    build = status.get("currentBuild")
    return lines + (_build(build, now) if build else _last_build(status, now))


def _build(build: Mapping[str, Any], now: dt.datetime) -> list[str]:
    copied, total = build.get("copiedPoints", 0), build.get("pointsToCopy", 0)
    rate, eta = build.get("pointsPerSecond"), build.get("etaSeconds")
    speed = f", {rate:,.0f} points/s" if rate else ""
    remaining = f", about {age_of(int(eta))} left" if eta is not None else ""
    lines = ["", f"Build {build.get('name')}: {build.get('phase')}, "
             f"started {when(build.get('startedAt'), now)}"
             + (f", trigger {build['trigger']}" if build.get("trigger") else ""),
             f"  {progress_bar(copied, total)} {copied:,} / {total:,} points{speed}{remaining}"]
    if build.get("catchUp"):
        lines.append(_catch_up(build["catchUp"], now))
    if build.get("message"):
        lines.append(f"  {_one_line(build['message'])}")
    sources = build.get("sources") or []
    if sources:
        rows = [[s.get("name", ""), f"{s.get('copied', 0):,} / {s.get('total', 0):,}",
                 _copy_state(s)] for s in sources]
        lines.extend(table(["SOURCE", "COPIED", "STATE"], rows))
    return lines


def _copy_state(source: Mapping[str, Any]) -> str:
    if source.get("done"):
        return "done"
    bar = progress_bar(source.get("copied", 0), source.get("total", 0))
    ranges = source.get("ranges") or []
    if len(ranges) < 2:
        return bar
    return f"{bar}, {sum(1 for r in ranges if r.get('done'))}/{len(ranges)} ranges done"


def _catch_up(state: Mapping[str, Any], now: dt.datetime) -> str:
    line = (f"  catch-up pass {state.get('passNumber', 1)}, started "
            f"{when(state.get('passStartedAt'), now)}: {state.get('compared', 0):,} points "
            f"compared, {state.get('missing', 0):,} missing, {state.get('changed', 0):,} "
            f"changed, {state.get('removed', 0):,} removed")
    snapshot = state.get("snapshot")
    if snapshot:
        line += f"; caught up at {snapshot.get('count', 0):,} points"
    return line


def _last_build(status: Mapping[str, Any], now: dt.datetime) -> list[str]:
    history = status.get("history") or []
    if not history:
        return ["  no build yet"]
    last = history[-1]
    verification = status.get("verification") or {}
    verified = ("verified" if verification.get("passed")
                else f"verification: {_one_line(verification.get('message') or '-')}")
    return [f"  last build {last.get('name')}: {last.get('result')} "
            f"{when(last.get('finishedAt'), now)}, {_count(last.get('points'))} points, "
            f"{verified}"]


def _edge_policy(status: Mapping[str, Any], now: dt.datetime) -> list[str]:
    last = status.get("lastRun") or {}
    lines = ["Publication",
             f"  last run {last.get('result', '-')} {when(last.get('time'), now)} "
             f"({last.get('durationSeconds', 0):.1f}s)"
             + (f": {_one_line(last['message'])}" if last.get("message") else ""),
             f"  next run {when(status.get('nextRun'), now)}; "
             f"{status.get('snapshotCount', 0)} snapshots, "
             f"{_count(status.get('bytesPublished', 0))} bytes published; "
             f"{status.get('partialRequestsServed', 0)} partials served"]
    snapshots = status.get("snapshots") or []
    if snapshots:
        rows = [[str(s.get("shard", "")), s.get("name", ""), _count(s.get("sizeBytes")),
                 age(s.get("createdAt"), now)] for s in snapshots[:EVENTS_SHOWN]]
        lines.extend(table(["SHARD", "SNAPSHOT", "BYTES", "AGE"], rows))
    return lines


def _qdrant(facts: QdrantFacts) -> list[str]:
    lines = [f"Qdrant ({facts.where})"]
    if facts.problem:
        return [*lines, f"  {facts.problem}"]
    existing = {c.name for c in facts.collections if c.exists}
    aliases = {alias: target for alias, target in facts.aliases.items()
               if target or alias not in existing}  # a plain collection is no missing alias
    for alias, target in aliases.items():
        lines.append(f"  alias {alias} -> {target or '(no such alias)'}")
    rows = [[c.name, "yes" if c.exists else "NO", _count(c.points), c.health or "-"]
            for c in facts.collections if c.exists or not aliases.get(c.name)]
    if rows:
        lines.extend(table(["COLLECTION", "EXISTS", "POINTS", "HEALTH"], rows))
    return lines


def _events(events: Sequence[EventLine], now: dt.datetime) -> list[str]:
    if not events:
        return ["Events", "  none (events expire after an hour)"]
    newest = sorted(events, key=lambda e: e.time or "", reverse=True)[:EVENTS_SHOWN]
    rows = [[age(e.time, now), e.type, e.reason,
             (f"(x{e.count}) " if e.count > 1 else "") + _one_line(e.message)]
            for e in newest]
    return ["Events (newest first)", *table(["AGE", "TYPE", "REASON", "MESSAGE"], rows)]
