"""MasterMerge decisions as pure functions: names, triggers, phases, progress, retention.

The reconciler (``reconcilers/master_merge.py``) executes them; ID-set decisions live in
``core/idstreams.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from album_operator.core.claims import stamped_by
from album_operator.core.collections import DesiredCollection, ObservedCollection, Owner
from album_operator.core.conditions import ConditionUpdate
from album_operator.core.engine import EngineCapabilities
from album_operator.core.idstreams import PointId
from album_operator.core.retry import backoff_seconds
from album_operator.core.schedule import first_slot_since
from album_operator.models.collection_settings import (
    HnswConfig,
    OptimizersConfig,
    PayloadIndex,
    QuantizationConfig,
    VectorParams,
)
from album_operator.models.master_merge import MasterMergeSpec, TargetOverrides

Phase = Literal[
    "Pending", "Planning", "Copying", "Indexing", "CatchingUp", "Verifying", "Swapping",
    "Succeeded", "Failed"
]
StepOutcome = Literal["done", "more", "failed"]

# The only transitions a build may make; everything else is a bug.
TRANSITIONS: Mapping[Phase, Phase] = {
    "Pending": "Planning",
    "Planning": "Copying",
    "Copying": "Indexing",
    "Indexing": "CatchingUp",
    "CatchingUp": "Verifying",
    "Verifying": "Swapping",
    "Swapping": "Succeeded",
}
TERMINAL: frozenset[Phase] = frozenset({"Succeeded", "Failed"})


def next_phase(phase: Phase, outcome: StepOutcome) -> Phase:
    """Where a build goes after one step of ``phase`` ended with ``outcome``."""
    if phase in TERMINAL:
        raise ValueError(f"a {phase} build takes no more steps")
    if outcome == "failed":
        return "Failed"
    if outcome == "more":
        return phase
    return TRANSITIONS[phase]


def target_name(prefix: str, version: int) -> str:
    return f"{prefix}_v{version}"


def parse_version(prefix: str, name: str) -> int | None:
    match = re.fullmatch(re.escape(prefix) + r"_v([1-9][0-9]*)", name)
    return int(match.group(1)) if match else None


def next_version(prefix: str, existing: Iterable[str]) -> int:
    """One past the highest version of this prefix that exists or ever existed."""
    versions = [v for v in (parse_version(prefix, n) for n in existing) if v is not None]
    return max(versions, default=0) + 1


_NOT_BUILD_SETTINGS = {"rollback_to", "suspend", "schedule", "retention", "deletion_policy",
                       "dry_run", "rebuild_on_source_change"}


def build_digest(spec: MasterMergeSpec) -> str:
    """Identifies what a build depends on; rollback, suspend, schedule and retention do not
    start a rebuild when they change."""
    relevant = spec.model_dump(mode="json", exclude=_NOT_BUILD_SETTINGS)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TriggerState:
    spec_digest: str
    last_built_digest: str | None
    rebuild_token: str | None
    last_rebuild_token: str | None
    schedule: str | None
    last_scheduled_time: dt.datetime | None
    schedule_since: dt.datetime
    suspended: bool
    building: bool
    pinned: bool = False
    dry_run: bool = False
    retry_at: dt.datetime | None = None
    """When the last build failed: the time it may be tried again."""
    sources_changed: bool = False
    """The sources or their counts differ from the last build's (when they were read)."""
    source_trigger_at: dt.datetime | None = None
    """With rebuildOnSourceChange: the earliest time it may start a build."""


def rebuild_reason(state: TriggerState, now: dt.datetime) -> str | None:
    """Why a new build should start now, or None. A running build is never interrupted, and
    none starts while suspended, in a dry run, or while rollbackTo pins the alias."""
    if state.suspended or state.building or state.pinned or state.dry_run:
        return None
    if state.last_built_digest is None:
        return "no master has been built yet"
    if state.spec_digest != state.last_built_digest:
        return "the build settings changed"
    if state.rebuild_token and state.rebuild_token != state.last_rebuild_token:
        return f"rebuild requested (albumops.io/rebuild={state.rebuild_token})"
    if state.schedule:
        due = first_slot_since(state.schedule, state.last_scheduled_time,
                               state.schedule_since, now)
        if due is not None:
            return f"scheduled for {due.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    if state.retry_at is not None and now >= state.retry_at:
        return "retrying the failed build"
    if state.retry_at is not None and state.sources_changed:
        return "retrying the failed build: its sources changed"
    if state.source_trigger_at is not None and state.sources_changed \
            and now >= state.source_trigger_at:
        return "the sources changed"
    return None


def sources_fingerprint(counts: Sequence[tuple[str, int | None]]) -> str:
    """Identifies the resolved sources and their point counts (None: the source is missing)."""
    return hashlib.sha256(json.dumps(list(counts)).encode()).hexdigest()[:16]


SOURCE_CHECK_SECONDS = 10.0


def source_check_due(wanted: bool, last: dt.datetime | None, now: dt.datetime) -> bool:
    """Source counts are read for a trigger only when one needs them, every 10 s at most."""
    return wanted and (last is None or (now - last).total_seconds() >= SOURCE_CHECK_SECONDS)


RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 3600.0


def failed_build_retry_at(finished: dt.datetime, failures_in_a_row: int,
                          base: float = RETRY_BASE_SECONDS) -> dt.datetime:
    """A failed build is tried again after ``base`` (30 s), doubling per failure in a row
    up to an hour: the cause (a missing source, a server that was down) may be gone."""
    delay = backoff_seconds(failures_in_a_row, base, RETRY_CAP_SECONDS)
    return finished + dt.timedelta(seconds=delay)


@dataclass(frozen=True)
class MergeFacts:
    """What the Ready and Building conditions are computed from, after a step."""

    alias: str
    alias_target: str | None
    build_name: str | None
    build_phase: str | None
    build_message: str = ""
    failure_reason: str | None = None
    suspended: bool = False
    dry_run: bool = False
    rollback_problem: tuple[str, str] | None = None
    rolled_back_to: str | None = None
    schedule_problem: str | None = None
    next_retry: str | None = None
    alias_read_back: str | None = None
    """After an acknowledged swap, what a read of the alias returned that disagrees."""


def merge_ready(facts: MergeFacts) -> ConditionUpdate:
    """Ready says whether the alias serves the master the spec asks for, and if not, why."""
    serving = f"alias {facts.alias} -> {facts.alias_target}"
    if facts.schedule_problem:
        return ConditionUpdate("Ready", "False", "InvalidSchedule", facts.schedule_problem)
    if facts.rollback_problem:
        return ConditionUpdate("Ready", "False", *facts.rollback_problem)
    if facts.alias_read_back is not None:
        seen = facts.alias_read_back or "no alias"
        return ConditionUpdate("Ready", "False", "SwapNotConfirmed", (
            f"Qdrant acknowledged moving alias {facts.alias} to {facts.alias_target}, but a "
            f"read of the alias returned {seen} (a lagging peer or a proxy?); the swap "
            "stands, and the alias is read again until it agrees"))
    if facts.rolled_back_to:
        return ConditionUpdate("Ready", "True", "RolledBack", f"{serving} (rollback)")
    if facts.suspended:
        where = serving if facts.alias_target else f"no master behind {facts.alias}"
        return ConditionUpdate("Ready", "False", "Suspended",
                               f"rebuilds and alias changes are suspended; {where}")
    if facts.dry_run and not facts.alias_target and facts.build_phase in (None, *TERMINAL):
        return ConditionUpdate("Ready", "False", "DryRun", "dry run: planned only, nothing is "
                               "built (see the Planned condition and status.plan)")
    if facts.build_phase == "Failed":
        message = f"build {facts.build_name} failed: {facts.build_message}"
        if facts.alias_target:
            message += f"; {serving} still"
        if facts.next_retry:
            message += f"; retrying at {facts.next_retry}"
        return ConditionUpdate("Ready", "False", facts.failure_reason or "Failed", message)
    if facts.build_phase is not None and facts.build_phase not in TERMINAL:
        building = f"building {facts.build_name} ({facts.build_phase})"
        if facts.alias_target:
            return ConditionUpdate("Ready", "True", "Ready", f"{serving}; {building}")
        return ConditionUpdate("Ready", "False", "Building",
                               f"no master behind {facts.alias} yet; {building}")
    if facts.alias_target:
        return ConditionUpdate("Ready", "True", "Ready", serving)
    return ConditionUpdate("Ready", "False", "Pending", "no master has been built yet")


def merge_building(facts: MergeFacts) -> ConditionUpdate:
    phase = facts.build_phase
    if phase is not None and phase not in TERMINAL:
        return ConditionUpdate("Building", "True", phase, f"{facts.build_name}: {phase}")
    if phase is None:
        return ConditionUpdate("Building", "False", "Idle", "no build yet")
    return ConditionUpdate("Building", "False", phase, f"{facts.build_name}: {phase}")


def owned_masters(stamps: Mapping[str, Mapping[str, Any]], prefix: str, owner: Owner
                  ) -> list[str]:
    """The masters ``owner`` built, oldest first: collections named ``<prefix>_v<N>``
    (``stamps``: each one's Qdrant metadata) whose owner stamp names it (``stamped_by``), so a
    resource applied again owns its earlier self's masters."""
    owned = [name for name, metadata in stamps.items()
             if parse_version(prefix, name) is not None and stamped_by(metadata, owner)]
    return sorted(owned, key=lambda name: parse_version(prefix, name) or 0)


def may_swap(alias_target: str | None, owned: Collection[str]) -> bool:
    """The alias moves only from nowhere or from one of this resource's masters, as Qdrant's
    owner stamps say (never as status says: a tenant can write status): an alias another
    resource or a person moved it to elsewhere is not taken."""
    return alias_target is None or alias_target in owned


def alias_read_back(seen: str | None, swapped_to: str | None) -> str | None:
    """What status records of a read of the alias after a swap Qdrant acknowledged: None
    when it agrees, else what it returned ("" for no alias). A read that disagrees is a
    lagging peer or a proxy, never a failed swap: Qdrant acknowledges alias changes
    atomically, and the alias is read again until it agrees."""
    return None if seen == swapped_to else (seen or "")


def deletion_refusal(collection: str, aliases: Mapping[str, str]) -> str | None:
    """Why ``collection`` must not be deleted, or None. ``aliases`` (alias -> collection) is
    read right before the delete: Qdrant drops the aliases of a deleted collection, so
    deleting what an alias points at would leave its readers with nothing. The one rule
    before every collection delete the MasterMerge reconciler does."""
    behind = sorted(alias for alias, target in aliases.items() if target == collection)
    if not behind:
        return None
    return (f"{collection} was not deleted: alias {', '.join(behind)} points at it (a "
            "collection behind an alias is never deleted)")


def masters_to_delete(owned: Iterable[str], prefix: str, serving: Collection[str],
                      failed: Collection[str], keep_previous: int) -> list[str]:
    """Masters built by this resource that retention removes, oldest first.

    Never removed, whatever ``keep_previous`` and a rollback say: the masters ``serving``
    behind the alias, and the newest verified master (the newest that is not a ``failed``
    build's; during a rollback it is newer than the alias target). Of the rest, the
    ``keep_previous`` newest stay for rollback.
    """
    versioned = sorted((version, name) for name in owned
                       if (version := parse_version(prefix, name)) is not None)
    verified = [name for _, name in versioned if name not in failed]
    protected = {*serving, *verified[-1:]}
    rest = [name for _, name in versioned if name not in protected]
    return rest[:max(len(rest) - keep_previous, 0)]


def top_k_overlap(expected: Sequence[PointId], actual: Sequence[PointId]) -> float:
    """Share of the expected top-k IDs that the actual top-k also returned."""
    if not expected:
        return 1.0
    return len(set(expected) & set(actual)) / len(expected)


def ranked_union(hits: Iterable[tuple[float, PointId, int]], higher_is_better: bool,
                 left_out: Collection[PointId] = (),
                 holder: Mapping[PointId, int] | None = None) -> list[PointId]:
    """The IDs of several sources' hits (score, ID, source index) as one search over their
    union would rank them, each once; ``left_out`` IDs are dropped, and so is the hit of a
    source that does not hold the version ``holder`` names for a shared ID."""
    holder = holder or {}
    ranked: list[PointId] = []
    seen: set[PointId] = set()
    for _, pid, index in sorted(hits, key=lambda hit: hit[0], reverse=higher_is_better):
        if pid in left_out or pid in seen or holder.get(pid, index) != index:
            continue
        seen.add(pid)
        ranked.append(pid)
    return ranked


@dataclass(frozen=True)
class CopyRate:
    points_per_second: float | None
    eta_seconds: int | None


def copy_rate(copied: int, expected: int, started: dt.datetime | None, now: dt.datetime
              ) -> CopyRate:
    """Average rate since the copy started, and the time left at that rate."""
    elapsed = (now - started).total_seconds() if started else 0.0
    if elapsed <= 0 or copied <= 0:
        return CopyRate(None, None)
    rate = copied / elapsed
    return CopyRate(round(rate, 1), math.ceil(max(expected - copied, 0) / rate))


COPY_RANGES_PER_STREAM = 8
"""Ranges per copy stream: enough that the streams finish close together (each takes the
largest range left), few enough that a build's status stays small."""


def copy_range_points(total_points: int, streams: int, min_points: int) -> int | None:
    """Points per copy range, or None to copy each source whole (one stream has nothing
    to balance). ``min_points`` keeps a range at least one chunk of pages."""
    if streams <= 1 or total_points <= 0:
        return None
    return max(min_points, -(-total_points // (streams * COPY_RANGES_PER_STREAM)))


def reads_by_id(applies_sharding: bool, shard_number: int | None) -> bool:
    """Whether a collection is read as a page of IDs and then those points by ID, rather
    than scrolled whole. A scroll of N points asks every shard for N + 1 whole points and
    keeps N of all of them (Qdrant's ``scroll_by``), so on S shards it reads and moves S
    times the points it returns; a scroll of IDs alone is small, and a retrieve by ID reads
    each point once, from the one shard that holds it."""
    return applies_sharding and (shard_number or 1) > 1


def checkpoint_due(last: dt.datetime | None, now: dt.datetime, every_seconds: float) -> bool:
    """A running copy's checkpoint is written every ``every_seconds``, not at every step."""
    return last is None or (now - last).total_seconds() >= every_seconds


def indexing_outcome(settings_to_restore: Sequence[str], collection_status: str
                     ) -> StepOutcome:
    """Indexing ends once the deferred settings are back and the master is green."""
    if collection_status == "red":
        return "failed"
    if settings_to_restore or collection_status != "green":
        return "more"
    return "done"


QDRANT_DEFAULT_HNSW_M = 16


def _inherited_indexes(template: ObservedCollection) -> tuple[PayloadIndex, ...]:
    return tuple(PayloadIndex.model_validate({**index.get("options", {}), "field": name,
                                              "type": index["type"]})
                 for name, index in sorted(template.payload_indexes.items()))


def master_collection(name: str, template: ObservedCollection,
                      overrides: TargetOverrides | None, metadata: Mapping[str, str]
                      ) -> DesiredCollection:
    """The master as it must end up: the sources' vectors and settings, then the overrides.

    HNSW ``m`` is always explicit, so the value deferred during the load can be restored.
    """
    hnsw = (overrides.hnsw if overrides and overrides.hnsw else
            HnswConfig.model_validate(template.hnsw))
    if hnsw.m is None:
        hnsw = hnsw.model_copy(update={"m": QDRANT_DEFAULT_HNSW_M})
    optimizers = (overrides.optimizers if overrides and overrides.optimizers else
                  OptimizersConfig.model_validate(template.optimizers)
                  if template.optimizers else None)
    quantization = (overrides.quantization if overrides and overrides.quantization else
                    QuantizationConfig.model_validate(template.quantization)
                    if template.quantization else None)
    indexes = (tuple(overrides.payload_indexes) if overrides and overrides.payload_indexes
               else _inherited_indexes(template))
    params = template.params
    return DesiredCollection(
        name=name,
        vectors={n: VectorParams.model_validate({"size": v.size, "distance": v.distance,
                                                 "datatype": v.datatype or "Float32",
                                                 "onDisk": v.on_disk})
                 for n, v in template.vectors.items()},
        hnsw=hnsw,
        quantization=quantization,
        optimizers=optimizers,
        on_disk_payload=params.get("onDiskPayload"),
        shard_number=(overrides.shard_number if overrides and overrides.shard_number
                      else params.get("shardNumber")),
        replication_factor=(overrides.replication_factor
                            if overrides and overrides.replication_factor
                            else params.get("replicationFactor")),
        payload_indexes=indexes,
        metadata=metadata,
    )


def bulk_load_collection(final: DesiredCollection, caps: EngineCapabilities
                         ) -> DesiredCollection:
    """The master as created for the copy: on engines that build HNSW graphs, with graph
    building off (``m=0``) so points load without indexing; Indexing restores ``final``."""
    if not caps.applies_hnsw:
        return final
    return replace(final, hnsw=(final.hnsw or HnswConfig()).model_copy(update={"m": 0}))
