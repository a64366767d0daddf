"""Advances one MasterMerge build by one step; the phase and checkpoint live in status.

Each call reads the status, does one step of the current phase (plan, verify, swap; while
Copying, read the checkpoint of the continuous copy that runs between steps) and returns the
status to write. A crash between steps loses at most the current step, which is repeated:
upserts are idempotent by ID, the copy resumes from the checkpoint in status, and the swap is
guarded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from album_operator.adapters.metrics import QDRANT_WRITES
from album_operator.adapters.qdrant import collections as qdrant_collections
from album_operator.adapters.qdrant.catchup import catch_up_step
from album_operator.adapters.qdrant.connection import QdrantEngine
from album_operator.adapters.qdrant.copier import (
    PAGES_PER_CHUNK,
    ContinuousCopy,
    CopyPart,
    CopyPlan,
    SourceCheckpoint,
)
from album_operator.adapters.qdrant.merge import (
    SourceReader,
    alias_target,
    aliases,
    collection_names,
    decode_offset,
    delete_alias,
    encode_offset,
    restamp,
    scan_sources,
    swap_alias,
    versioned_collections,
)
from album_operator.adapters.tenancy import collection_access
from album_operator.core.catchup import IdSet, PassTally, after_pass
from album_operator.core.claims import stamp_is_stale, stamped_by
from album_operator.core.collection_plan import plan_collection
from album_operator.core.collections import (
    DesiredCollection,
    ObservedCollection,
)
from album_operator.core.conditions import ConditionUpdate, merge_conditions
from album_operator.core.idstreams import (
    CollisionScan,
    IdRange,
    OutOfOrder,
    collision_message,
)
from album_operator.core.merge import (
    TERMINAL,
    MergeFacts,
    StepOutcome,
    TriggerState,
    alias_read_back,
    build_digest,
    bulk_load_collection,
    checkpoint_due,
    copy_range_points,
    copy_rate,
    deletion_refusal,
    failed_build_retry_at,
    indexing_outcome,
    master_collection,
    masters_to_delete,
    may_swap,
    merge_building,
    merge_ready,
    next_phase,
    next_version,
    owned_masters,
    parse_version,
    rebuild_reason,
    source_check_due,
    sources_fingerprint,
    target_name,
)
from album_operator.core.merge_plan import (
    SourceCount,
    build_plan,
    measured_rate,
    planned_condition,
)
from album_operator.core.schedule import next_scheduled_time, schedule_problem
from album_operator.core.timeutil import parse_rfc3339, rfc3339
from album_operator.core.vectors import cosine_names, distance_names
from album_operator.models.common import LabelSelector
from album_operator.models.master_merge import MasterMergeSpec
from album_operator.reconcilers.merge_verification import config_differences, verify_master
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services

KIND = "MasterMerge"
log = logging.getLogger(__name__)
REBUILD_ANNOTATION = "albumops.io/rebuild"
# Upserts in flight per source on a server: the next page is scrolled while they run.
UPSERTS_PER_STREAM = 2
# Points a catch-up step compares before it writes its progress to status.
RANGE_MIN_PAGES = PAGES_PER_CHUNK
"""A copy range is at least one chunk of pages: a range's last page is cut at its end."""
CATCH_UP_POINTS_PER_STEP = 20_000
# A catch-up pass that repairs more than this many points is followed by another, up to
# CATCH_UP_MAX_PASSES: writes that landed during a long copy are caught by the first pass,
# those that landed during the first pass by the second.
CATCH_UP_QUIET_POINTS = 256
CATCH_UP_MAX_PASSES = 3


class BuildFailed(Exception):
    """A build cannot go on; ``reason`` is the status reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def label_selector(selector: LabelSelector) -> str:
    terms = [f"{k}={v}" for k, v in sorted(selector.match_labels.items())]
    for req in selector.match_expressions:
        values = ",".join(req.values)
        terms.append({"In": f"{req.key} in ({values})", "NotIn": f"{req.key} notin ({values})",
                      "Exists": req.key, "DoesNotExist": f"!{req.key}"}[req.operator])
    return ",".join(terms)


async def resolve_sources(ref: ResourceRef, spec: MasterMergeSpec, services: Services
                          ) -> list[str]:
    sources = list(spec.sources or [])
    if spec.source_selector is not None:
        items = await services.kube.list_custom("albumcollections", ref.namespace,
                                                label_selector(spec.source_selector))
        items.sort(key=lambda item: (item["spec"]["year"], item["metadata"]["name"]))
        for item in items:
            name = item["spec"].get("collectionName") or f"album_{item['spec']['year']}"
            if name not in sources:
                sources.append(name)
    return sources


def _trigger_state(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any],
                   now: dt.datetime, fingerprint: str | None = None) -> TriggerState:
    build = status.get("currentBuild") or {}
    last = status.get("lastScheduledTime")
    since = status.get("scheduleSince")
    retry = status.get("nextRetryTime") if build.get("phase") == "Failed" else None
    return TriggerState(
        spec_digest=build_digest(spec),
        last_built_digest=status.get("lastBuiltDigest"),
        rebuild_token=ref.annotations.get(REBUILD_ANNOTATION),
        last_rebuild_token=status.get("lastRebuildToken"),
        schedule=spec.schedule,
        last_scheduled_time=parse_rfc3339(last) if last else None,
        schedule_since=parse_rfc3339(since) if since else now,
        suspended=spec.suspend,
        building=bool(build) and build.get("phase") not in TERMINAL,
        pinned=spec.rollback_to is not None,
        retry_at=parse_rfc3339(retry) if retry else None,
        dry_run=spec.dry_run,
        sources_changed=fingerprint is not None and fingerprint != status.get(
            "sourcesFingerprint"),
        source_trigger_at=_source_trigger_at(spec, build),
    )


def _source_trigger_at(spec: MasterMergeSpec, build: dict[str, Any]) -> dt.datetime | None:
    trigger = spec.rebuild_on_source_change
    if trigger is None or not build.get("startedAt"):
        return None
    return parse_rfc3339(build["startedAt"]) + dt.timedelta(
        seconds=trigger.min_interval_seconds)


async def _sources_fingerprint(ref: ResourceRef, spec: MasterMergeSpec, services: Services,
                               engine: QdrantEngine) -> str:
    counts: list[tuple[str, int | None]] = []
    for source in await resolve_sources(ref, spec, services):
        found = await qdrant_collections.describe(engine, source)
        counts.append((source, found.points_count if found else None))
    return sources_fingerprint(counts)


async def _fingerprint_if_due(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any],
                              services: Services, engine: QdrantEngine, moment: dt.datetime
                              ) -> str | None:
    """The sources' fingerprint, when a trigger needs it: a failed build waiting for its
    retry, or rebuildOnSourceChange."""
    build = status.get("currentBuild") or {}
    wanted = spec.rebuild_on_source_change is not None or build.get("phase") == "Failed"
    if not source_check_due(wanted, services.source_checks.get(ref.uid), moment):
        return None
    services.source_checks[ref.uid] = moment
    return await _sources_fingerprint(ref, spec, services, engine)


def _observe_schedule(spec: MasterMergeSpec, status: dict[str, Any], moment: dt.datetime
                      ) -> dict[str, Any]:
    """Remembers when the current schedule was first seen, and when it fires next."""
    status = {k: v for k, v in status.items()
              if k not in ("observedSchedule", "scheduleSince", "nextScheduledTime")}
    if not spec.schedule or schedule_problem(spec.schedule, moment):
        return status
    previous_since = status.get("scheduleSince") if spec.schedule == _seen_schedule(status) \
        else None
    since = previous_since or rfc3339(moment)
    status.update(observedSchedule=spec.schedule, scheduleSince=since)
    if not spec.suspend:
        last = status.get("lastScheduledTime")
        after = max(parse_rfc3339(since), parse_rfc3339(last) if last else moment, moment)
        status["nextScheduledTime"] = rfc3339(next_scheduled_time(spec.schedule, after))
    return status


def _seen_schedule(status: dict[str, Any]) -> str | None:
    value = status.get("observedSchedule")
    return value if isinstance(value, str) else None


def _owned_masters(engine: QdrantEngine, ref: ResourceRef, spec: MasterMergeSpec
                   ) -> list[str]:
    """This resource's masters as Qdrant's owner stamps say, oldest first (``stamped_by``:
    by namespace and name, so a resource applied again owns what its earlier self built)."""
    prefix = spec.target_prefix or spec.alias
    return owned_masters(versioned_collections(engine, prefix), prefix, ref.owner())


def _adopt_masters(engine: QdrantEngine, ref: ResourceRef, spec: MasterMergeSpec
                   ) -> list[str]:
    """``_owned_masters``, with the stamps an earlier incarnation of this resource wrote
    (another uid) rewritten with this one's, so checks against the live owner's uid
    (tenancy: an EdgeSnapshotPolicy publishing a master) see the owner that exists."""
    prefix = spec.target_prefix or spec.alias
    stamps = versioned_collections(engine, prefix)
    owner = ref.owner()
    owned = owned_masters(stamps, prefix, owner)
    for name in owned:
        if stamp_is_stale(stamps[name], owner):
            restamp(engine, name, owner.metadata())
    return owned


async def _delete_master(engine: QdrantEngine, ref: ResourceRef, name: str) -> str | None:
    """Deletes a master unless an alias points at it (``core.merge.deletion_refusal``, on
    the aliases as Qdrant lists them right now); returns the refusal, or None once deleted."""
    refusal = deletion_refusal(name, await asyncio.to_thread(aliases, engine))
    if refusal is not None:
        log.warning("MasterMerge %s/%s: %s", ref.namespace, ref.name, refusal)
        return refusal
    await qdrant_collections.delete(engine, name)
    return None


async def _delete_masters(engine: QdrantEngine, ref: ResourceRef, names: list[str],
                          owned: list[str]) -> list[str]:
    """Deletes ``names`` one by one (each behind the alias rule), removing each deleted one
    from ``owned``; returns the refusals."""
    refusals = []
    for name in names:
        refusal = await _delete_master(engine, ref, name)
        if refusal is None:
            owned.remove(name)
        else:
            refusals.append(refusal)
    return refusals


async def _start_build(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any],
                       engine: QdrantEngine, reason: str, now: str) -> dict[str, Any]:
    """A new build, named one version past every master this resource ever had. A master
    of an earlier failed attempt (kept for inspection) goes now, so retries never pile up."""
    prefix = spec.target_prefix or spec.alias
    owned = await asyncio.to_thread(_adopt_masters, engine, ref, spec)
    await _delete_masters(engine, ref, _failed_masters(status, owned), owned)
    version = next_version(prefix, owned + [h["name"] for h in status.get("history", [])])
    changes: dict[str, Any] = {
        "currentBuild": {"name": target_name(prefix, version), "version": version,
                         "phase": "Planning", "trigger": reason, "startedAt": now,
                         "sources": []},
        "phase": "Planning", "progress": "0/0", "masters": owned,
        "lastBuiltGeneration": ref.generation,
        "lastBuiltDigest": build_digest(spec),
        "lastRebuildToken": ref.annotations.get(REBUILD_ANNOTATION),
        "verification": None, "nextRetryTime": None,
        **await _adopted_alias(spec, status, owned, engine),
    }
    if reason.startswith("scheduled for "):
        changes["lastScheduledTime"] = reason.removeprefix("scheduled for ")
    conditions = _conditions(status, ref.generation, now, ConditionUpdate(
        "Verified", "Unknown", "NotVerifiedYet", f"{changes['currentBuild']['name']} is "
        "not verified yet"))
    return {**status, **changes, "conditions": conditions}


async def _adopted_alias(spec: MasterMergeSpec, status: dict[str, Any], owned: list[str],
                         engine: QdrantEngine) -> dict[str, Any]:
    """A resource without an alias target in status (new, or applied again) that finds the
    alias on one of its masters records it: it serves that master while it builds."""
    if status.get("aliasTarget"):
        return {}
    current = await asyncio.to_thread(alias_target, engine, spec.alias)
    return {"aliasTarget": current} if current in owned else {}


def _failed_builds(status: dict[str, Any]) -> set[str]:
    return {h["name"] for h in status.get("history", []) if h.get("result") == "Failed"}


def _failed_masters(status: dict[str, Any], owned: list[str]) -> list[str]:
    failed = _failed_builds(status)
    return [name for name in owned if name in failed and name != status.get("aliasTarget")]


def _vector_layout(observed: ObservedCollection) -> dict[str, tuple[int, str]]:
    return {name: (v.size, v.distance) for name, v in observed.vectors.items()}


async def _describe_sources(sources: list[str], engine: QdrantEngine
                            ) -> dict[str, ObservedCollection]:
    observed = {}
    for source in sources:
        found = await qdrant_collections.describe(engine, source)
        if found is None:
            raise BuildFailed("SourceMissing", f"source collection {source} does not exist")
        observed[source] = found
    return observed


async def _final_master(ref: ResourceRef, spec: MasterMergeSpec, build: dict[str, Any],
                        engine: QdrantEngine) -> DesiredCollection:
    """The master as it must be once built; the first source is the settings template."""
    first = build["sources"][0]["name"]
    template = (await _describe_sources([first], engine))[first]
    return master_collection(build["name"], template, spec.target_overrides,
                             ref.owner().metadata())


@dataclass(frozen=True)
class _Resolved:
    sources: list[str]
    observed: dict[str, ObservedCollection]
    scan: CollisionScan
    ranges: dict[str, list[IdRange]]
    final: DesiredCollection


async def _resolve(ref: ResourceRef, spec: MasterMergeSpec, target: str, services: Services,
                   engine: QdrantEngine) -> _Resolved:
    """Everything a build is planned from; reads only."""
    sources = await resolve_sources(ref, spec, services)
    if not sources:
        raise BuildFailed("NoSources", "no source collections matched")
    await _refuse_alias_clash(spec.alias, sources, engine)
    observed = await _describe_sources(sources, engine)
    await _refuse_foreign_sources(ref, observed, services)
    layouts = {s: _vector_layout(o) for s, o in observed.items()}
    if len({tuple(sorted(layout.items())) for layout in layouts.values()}) > 1:
        detail = "; ".join(f"{s}: {layout}" for s, layout in layouts.items())
        raise BuildFailed("IncompatibleSources",
                          f"sources disagree on vector names, sizes or distances: {detail}")
    streams = spec.copy_settings.parallelism if engine.capabilities.parallel_writes else 1
    every = copy_range_points(sum(o.points_count for o in observed.values()), streams,
                              spec.copy_settings.batch_size * RANGE_MIN_PAGES)
    scan, ranges = await asyncio.to_thread(scan_sources, SourceReader(engine), sources, every)
    final = master_collection(target, observed[sources[0]], spec.target_overrides,
                              ref.owner().metadata())
    return _Resolved(sources, observed, scan, ranges, final)


def _range_status(id_range: IdRange) -> dict[str, Any]:
    bounds = {"from": encode_offset(id_range.start), "until": encode_offset(id_range.until)}
    return {**{k: v for k, v in bounds.items() if v is not None},
            "expected": id_range.expected, "copied": 0, "done": False}


def _ranges_of(source: dict[str, Any]) -> list[dict[str, Any]]:
    """A source's ranges in status; a build planned before ranges has one, the source."""
    return source.get("ranges") or [{
        "expected": source.get("total", 0), "copied": source.get("copied", 0),
        "done": source.get("done", False),
        **({"nextOffset": source["nextOffset"]} if source.get("nextOffset") else {})}]


def _plan_of(spec: MasterMergeSpec, resolved: _Resolved, status: dict[str, Any], now: str,
             ref: ResourceRef) -> dict[str, Any]:
    counts = [SourceCount(s, resolved.observed[s].points_count) for s in resolved.sources]
    plan = build_plan(counts, resolved.scan, resolved.final,
                      measured_rate(status.get("history", [])))
    return {**plan, "digest": _plan_digest(ref, spec), "plannedAt": now}


def _plan_digest(ref: ResourceRef, spec: MasterMergeSpec) -> str:
    return f"{build_digest(spec)}/{ref.annotations.get(REBUILD_ANNOTATION) or ''}"


def _refuse_collisions(spec: MasterMergeSpec, scan: CollisionScan) -> None:
    if scan.colliding_ids and spec.id_conflict_policy == "Fail":
        raise BuildFailed("IdCollision", collision_message(scan))


async def _plan(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any],
                build: dict[str, Any], services: Services, engine: QdrantEngine, now: str
                ) -> dict[str, Any]:
    """The plan, then the target created unindexed; returns the status with both."""
    resolved = await _resolve(ref, spec, build["name"], services, engine)
    plan = _plan_of(spec, resolved, status, now, ref)
    status = {**status, "plan": plan,
              "conditions": _conditions(status, ref.generation, now,
                                        planned_condition(plan, None))}
    _refuse_collisions(spec, resolved.scan)
    await _create_target(ref, resolved.final, engine)
    observed = resolved.observed
    return {**status, "currentBuild": {
        **build, "sources": [{"name": s, "total": observed[s].points_count, "copied": 0,
                              "done": False,
                              "ranges": [_range_status(r) for r in resolved.ranges[s]]}
                             for s in resolved.sources],
        "expectedPoints": resolved.scan.distinct,
        "pointsToCopy": sum(observed[s].points_count for s in resolved.sources),
        "copyStartedAt": rfc3339(services.clock())}}  # after the scan: the rate is the copy's


async def _dry_run(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any],
                   services: Services, engine: QdrantEngine, now: str) -> dict[str, Any]:
    """Plans what the next build would do and creates nothing; planned again only when the
    spec or the rebuild annotation changes (a plan scans every source's IDs)."""
    if (status.get("plan") or {}).get("digest") == _plan_digest(ref, spec):
        return _settle(ref, spec, status, now)
    prefix = spec.target_prefix or spec.alias
    owned = await asyncio.to_thread(_owned_masters, engine, ref, spec)
    target = target_name(prefix, next_version(
        prefix, owned + [h["name"] for h in status.get("history", [])]))
    try:
        resolved = await _resolve(ref, spec, target, services, engine)
    except BuildFailed as failure:
        plan = {"digest": _plan_digest(ref, spec), "plannedAt": now, "target": target}
        condition = planned_condition(None, (failure.reason, str(failure)))
    else:
        plan = _plan_of(spec, resolved, status, now, ref)
        condition = planned_condition(plan, None)
        if resolved.scan.colliding_ids and spec.id_conflict_policy == "Fail":
            condition = planned_condition(None, ("IdCollision", collision_message(resolved.scan)))
    status = {**status, "plan": plan, "masters": owned,
              "conditions": _conditions(status, ref.generation, now, condition)}
    return _settle(ref, spec, status, now)


async def _refuse_foreign_sources(ref: ResourceRef, observed: dict[str, ObservedCollection],
                                  services: Services) -> None:
    """Sources must belong to this namespace (or be shared with it by their owner): nothing
    of another tenant's is read."""
    for source, collection in observed.items():
        decision = await collection_access(services.kube, ref.namespace, source,
                                           collection.metadata, "Read")
        if not decision.allowed:
            raise BuildFailed(decision.reason, decision.message)


async def _refuse_alias_clash(alias: str, sources: list[str], engine: QdrantEngine) -> None:
    """The alias must be free to point at a master: not a source (a selector can resolve to
    one, which the CRD cannot see), not an existing collection (an alias never replaces one).
    """
    if alias in sources:
        raise BuildFailed("AliasIsSource", f"the alias {alias} names one of the sources; "
                          "choose another alias")
    if alias in await asyncio.to_thread(collection_names, engine):
        raise BuildFailed("AliasIsCollection", f"{alias} is a collection, and an alias cannot "
                          "replace a collection; choose another alias or rename the collection")


async def _create_target(ref: ResourceRef, final: DesiredCollection, engine: QdrantEngine
                         ) -> None:
    existing = await qdrant_collections.describe(engine, final.name)
    if existing is not None:
        if not stamped_by(existing.metadata, ref.owner()):
            raise BuildFailed("Conflict", f"{final.name} exists and is not owned by this merge")
        return  # a restarted operator adopts the target it was building
    loading = bulk_load_collection(final, engine.capabilities)
    for action in plan_collection(loading, None, engine.capabilities).actions:
        await qdrant_collections.apply(engine, action)


def _copy_key(ref: ResourceRef, build: dict[str, Any]) -> str:
    return f"{ref.uid}/{build['name']}"


def _copy_plan(spec: MasterMergeSpec, build: dict[str, Any], engine: QdrantEngine) -> CopyPlan:
    """On a server ``parallelism`` sources at once, each scrolling its next page while its
    upserts are in flight; on the embedded engine (calls serialised) one at a time."""
    parallel = engine.capabilities.parallel_writes
    return CopyPlan(
        target=build["name"], batch_size=spec.copy_settings.batch_size,
        streams=spec.copy_settings.parallelism if parallel else 1,
        upserts_per_stream=UPSERTS_PER_STREAM if parallel else 1, deferred_writes=parallel,
        max_points_per_second=spec.copy_settings.max_points_per_second,
        parts={CopyPart(source["name"], number): _range_checkpoint(id_range)
               for source in build["sources"]
               for number, id_range in enumerate(_ranges_of(source))})


def _range_checkpoint(id_range: dict[str, Any]) -> SourceCheckpoint:
    start = id_range.get("nextOffset") or id_range.get("from")
    return SourceCheckpoint(id_range["copied"], decode_offset(start), id_range["done"],
                            decode_offset(id_range.get("until")), id_range.get("expected", 0))


def _running_copy(ref: ResourceRef, spec: MasterMergeSpec, build: dict[str, Any],
                  engine: QdrantEngine, services: Services) -> ContinuousCopy:
    """The build's copy, started from the checkpoint in status when none runs (a new build,
    an operator restart, a copy that failed and was reported at the previous step)."""
    key = _copy_key(ref, build)
    copy = services.copies.get(key)
    if copy is not None and copy.error is not None:
        services.copies.forget(key)
        raise copy.error
    if copy is None or not (copy.running or copy.done):
        copy = services.copies.start(key, engine, _copy_plan(spec, build, engine))
    return copy


async def _copy(ref: ResourceRef, spec: MasterMergeSpec, build: dict[str, Any],
                engine: QdrantEngine, services: Services, moment: dt.datetime
                ) -> tuple[dict[str, Any], bool]:
    """Reads the continuous copy's checkpoint into the build every few seconds (and when it
    is done); the copy itself runs between steps."""
    copy = _running_copy(ref, spec, build, engine, services)
    checkpoint = copy.checkpoint()
    finished = all(point.done for point in checkpoint.values())
    every = services.config.merge_checkpoint_seconds
    if not finished and not checkpoint_due(copy.reported_at, moment, every):
        return build, False
    copy.reported_at = moment
    if finished:
        services.copies.forget(_copy_key(ref, build))
    return _with_checkpoint(build, checkpoint, moment), finished


def _with_checkpoint(build: dict[str, Any], checkpoint: dict[CopyPart, SourceCheckpoint],
                     moment: dt.datetime) -> dict[str, Any]:
    sources = []
    for source in build["sources"]:
        ranges = [_range_with(id_range, checkpoint.get(CopyPart(source["name"], number)))
                  for number, id_range in enumerate(_ranges_of(source))]
        kept = {k: v for k, v in source.items() if k not in ("nextOffset", "ranges")}
        sources.append({**kept, "copied": sum(r["copied"] for r in ranges),
                        "done": all(r["done"] for r in ranges), "ranges": ranges})
    copied = sum(s["copied"] for s in sources)
    started = build.get("copyStartedAt")
    rate = copy_rate(copied, build.get("pointsToCopy", 0),
                     parse_rfc3339(started) if started else None, moment)
    measured = {"pointsPerSecond": rate.points_per_second, "etaSeconds": rate.eta_seconds}
    return {**build, "sources": sources, "copiedPoints": copied,
            **{k: v for k, v in measured.items() if v is not None}}


def _range_with(id_range: dict[str, Any], point: SourceCheckpoint | None) -> dict[str, Any]:
    if point is None:
        return id_range
    updated = {k: v for k, v in id_range.items() if k != "nextOffset"}
    updated.update(copied=point.copied, done=point.done)
    if point.next_offset is not None:  # absent rather than null: list items are not merged
        updated["nextOffset"] = encode_offset(point.next_offset)
    return updated


async def _index(ref: ResourceRef, spec: MasterMergeSpec, build: dict[str, Any],
                 engine: QdrantEngine) -> StepOutcome:
    """Restores the settings deferred for the load, then waits for the master to be green."""
    final = await _final_master(ref, spec, build, engine)
    observed = await qdrant_collections.describe(engine, final.name)
    if observed is None:
        raise BuildFailed("TargetMissing", f"{final.name} disappeared while indexing")
    plan = plan_collection(final, observed, engine.capabilities,
                           owned_indexes=frozenset(i.field for i in final.payload_indexes))
    for action in plan.actions:
        await qdrant_collections.apply(engine, action)
    outcome = indexing_outcome([*plan.drift, *plan.immutable_mismatches], observed.status)
    if outcome == "failed":
        raise BuildFailed("IndexingFailed", f"{final.name} is {observed.status}")
    return outcome


async def _catch_up(ref: ResourceRef, spec: MasterMergeSpec, build: dict[str, Any],
                    engine: QdrantEngine, now: str) -> tuple[dict[str, Any], StepOutcome]:
    """One step of the current catch-up pass; at a pass's end, another pass or the snapshot
    that Verifying checks. A pass reads every source after its ``passStartedAt``, so every
    write acknowledged before the final pass started is in the master."""
    state = build.get("catchUp") or {"passStartedAt": now}
    final = await _final_master(ref, spec, build, engine)
    step = await asyncio.to_thread(
        catch_up_step, engine, [s["name"] for s in build["sources"]], build["name"],
        decode_offset(state.get("after")), spec.copy_settings.batch_size,
        cosine_names(final.vectors), CATCH_UP_POINTS_PER_STEP)
    tally = _pass_tally(state).add(step.tally)
    repaired = state.get("repairedTotal", 0) + step.tally.repaired
    started = state["passStartedAt"]
    if not step.finished:
        return {**build, "catchUp": _catch_up_status(tally, repaired, step.after, started)
                }, "more"
    if after_pass(tally, CATCH_UP_QUIET_POINTS, CATCH_UP_MAX_PASSES) == "another pass":
        following = PassTally(number=tally.number + 1)
        return {**build, "catchUp": _catch_up_status(following, repaired, None, now)}, "more"
    caught_up = {**_catch_up_status(tally, repaired, None, started),
                 "snapshot": tally.ids.encode()}
    return {**build, "catchUp": caught_up}, "done"


def _pass_tally(state: dict[str, Any]) -> PassTally:
    return PassTally(number=state.get("passNumber", 1), compared=state.get("compared", 0),
                     missing=state.get("missing", 0), changed=state.get("changed", 0),
                     removed=state.get("removed", 0), ids=IdSet.decode(state.get("ids")))


def _catch_up_status(tally: PassTally, repaired: int, after: Any, started: str
                     ) -> dict[str, Any]:
    status: dict[str, Any] = {
        "passNumber": tally.number, "passStartedAt": started, "compared": tally.compared,
        "missing": tally.missing, "changed": tally.changed, "removed": tally.removed,
        "repairedTotal": repaired, "ids": tally.ids.encode()}
    if after is not None:
        status["after"] = encode_offset(after)
    return status


async def _verify(ref: ResourceRef, spec: MasterMergeSpec, build: dict[str, Any],
                  engine: QdrantEngine) -> dict[str, Any]:
    final = await _final_master(ref, spec, build, engine)
    observed = await qdrant_collections.describe(engine, final.name)
    config_problems = config_differences(final, observed, engine.capabilities)
    snapshot = (build.get("catchUp") or {}).get("snapshot")
    return await asyncio.to_thread(
        verify_master, spec.verify, SourceReader(engine),
        [s["name"] for s in build["sources"]], build["name"], cosine_names(final.vectors),
        config_problems, build.get("version", 0),
        IdSet.decode(snapshot) if snapshot else None, distance_names(final.vectors))


async def _swap(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any], target: str,
                engine: QdrantEngine, now: str) -> tuple[dict[str, Any], list[str]]:
    """Moves the alias to ``target`` if it points nowhere or at one of this resource's
    masters (``may_swap``), then applies retention; returns the status changes and the
    deletions retention was refused. The swap stands once Qdrant acknowledged it; a read of
    the alias afterwards that disagrees is recorded (``aliasReadBack``) and read again,
    never taken for a failed swap."""
    current = await asyncio.to_thread(alias_target, engine, spec.alias)
    if current == target:  # a repeated step after the swap already happened
        return {"aliasTarget": target, "lastSwapTime": status.get("lastSwapTime") or now,
                "aliasReadBack": None}, []
    owned = await asyncio.to_thread(_adopt_masters, engine, ref, spec)
    if not may_swap(current, owned):
        raise BuildFailed("Conflict", f"alias {spec.alias} points at {current}, which is not "
                          f"a master of this MasterMerge ({ref.namespace}/{ref.name}); not "
                          "moving it")
    if await qdrant_collections.describe(engine, target) is None:
        raise BuildFailed("TargetMissing", f"{target} disappeared before the swap")
    await asyncio.to_thread(swap_alias, engine, spec.alias, target)
    seen = await asyncio.to_thread(alias_target, engine, spec.alias)
    refusals = await _apply_retention(ref, spec, status, target, owned, engine)
    return {"aliasTarget": target, "lastSwapTime": now, "masters": owned,
            "aliasReadBack": alias_read_back(seen, target)}, refusals


async def _apply_retention(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any],
                           serving: str, owned: list[str], engine: QdrantEngine) -> list[str]:
    """Deletes the masters retention lets go (never the one serving, nor the newest
    verified); ``owned`` keeps the rest. Returns the deletions refused."""
    prefix = spec.target_prefix or spec.alias
    doomed = masters_to_delete(owned, prefix, {serving}, _failed_builds(status),
                               spec.retention.keep_previous)
    return await _delete_masters(engine, ref, doomed, owned)


def _conditions(status: dict[str, Any], generation: int, now: str,
                *updates: ConditionUpdate) -> list[dict[str, Any]]:
    return merge_conditions(status.get("conditions", []), updates, now, generation)


def _finish(status: dict[str, Any], build: dict[str, Any], result: str, now: str,
            message: str, reason: str, retry_base: float) -> dict[str, Any]:
    build = {**build, "phase": result, "finishedAt": now, "message": message}
    if result == "Failed":
        build["failureReason"] = reason
    record = {"name": build["name"], "startedAt": build.get("startedAt"), "finishedAt": now,
              "points": build.get("copiedPoints", 0), "result": result}
    if build.get("pointsPerSecond"):
        record["pointsPerSecond"] = build["pointsPerSecond"]
    failures = (status.get("failedBuildsInARow") or 0) + 1 if result == "Failed" else 0
    retry = (rfc3339(failed_build_retry_at(parse_rfc3339(now), failures, retry_base))
             if result == "Failed" else None)
    return {**status, "currentBuild": build, "phase": result,
            "history": [record, *status.get("history", [])][:64],
            "failedBuildsInARow": failures, "nextRetryTime": retry}


def _progress(build: dict[str, Any]) -> str:
    copied = build.get("copiedPoints", 0)
    # Points written into a source during the copy are copied too: the total grows to match.
    return f"{copied}/{max(build.get('pointsToCopy', 0), copied)}"


async def step_master_merge(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any],
                            services: Services) -> dict[str, Any]:
    """One step of the build state machine. Returns the whole status after it."""
    moment = services.clock()
    now = rfc3339(moment)
    status = _observe_schedule(spec, status, moment)
    problem = schedule_problem(spec.schedule, moment) if spec.schedule else None
    if problem:
        return _settle(ref, spec, status, now, schedule_problem=problem)
    engine = await services.engine_for(ref.namespace, spec.connection)
    if status.get("aliasReadBack") is not None:
        status = await _read_alias_again(spec, status, engine)
    build = status.get("currentBuild")
    if (not build or build.get("phase") in TERMINAL) and spec.dry_run:
        return await _dry_run(ref, spec, status, services, engine, now)
    if not build or build.get("phase") in TERMINAL:
        fingerprint = await _fingerprint_if_due(ref, spec, status, services, engine, moment)
        reason = rebuild_reason(_trigger_state(ref, spec, status, moment, fingerprint), moment)
        if reason is None:
            return await _settle_idle(ref, spec, status, engine, now)
        status = await _start_build(ref, spec, status, engine, reason, now)
        status["sourcesFingerprint"] = fingerprint or await _sources_fingerprint(
            ref, spec, services, engine)
        return _settle(ref, spec, status, now)
    try:
        status = await _advance(ref, spec, status, dict(build), services, engine, moment)
    except OutOfOrder as exc:
        status = _finish(status, build, "Failed", now, str(exc), "UnorderedScroll",
                         services.config.merge_retry_seconds)
    except BuildFailed as failure:
        if build.get("phase") == "Planning":
            status = {**status, "conditions": _conditions(status, ref.generation, now,
                      planned_condition(None, (failure.reason, str(failure))))}
        status = _finish(status, build, "Failed", now, str(failure), failure.reason,
                         services.config.merge_retry_seconds)
    return _settle(ref, spec, status, now)


async def _read_alias_again(spec: MasterMergeSpec, status: dict[str, Any],
                            engine: QdrantEngine) -> dict[str, Any]:
    """After a swap whose read-back disagreed: reads the alias again, until it agrees."""
    seen = await asyncio.to_thread(alias_target, engine, spec.alias)
    return {**status, "aliasReadBack": alias_read_back(seen, status.get("aliasTarget"))}


def _settle(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any], now: str,
            **facts: Any) -> dict[str, Any]:
    """Ready and Building, computed from the status as it now is (never kept from before)."""
    build = status.get("currentBuild") or {}
    current = MergeFacts(
        alias=spec.alias, alias_target=status.get("aliasTarget"),
        build_name=build.get("name"), build_phase=build.get("phase"),
        build_message=build.get("message", ""), failure_reason=build.get("failureReason"),
        suspended=spec.suspend, dry_run=spec.dry_run, next_retry=status.get("nextRetryTime"),
        alias_read_back=status.get("aliasReadBack"), **facts)
    conditions = _conditions(status, ref.generation, now, merge_ready(current),
                             merge_building(current))
    return {**status, "conditions": conditions, "phase": build.get("phase"),
            "progress": _progress(build) if build else None}


async def _advance(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any],
                   build: dict[str, Any], services: Services, engine: QdrantEngine,
                   moment: dt.datetime) -> dict[str, Any]:
    now = rfc3339(moment)
    phase = build["phase"]
    outcome: StepOutcome
    if phase == "Planning":
        status = await _plan(ref, spec, status, build, services, engine, now)
        build, outcome = dict(status["currentBuild"]), "done"
        _running_copy(ref, spec, build, engine, services)  # copying before Copying is written
    elif phase == "Copying":
        build, finished = await _copy(ref, spec, build, engine, services, moment)
        outcome = "done" if finished else "more"
    elif phase == "Indexing":
        outcome = await _index(ref, spec, build, engine)
    elif phase == "CatchingUp":
        build, outcome = await _catch_up(ref, spec, build, engine, now)
    elif phase == "Verifying":
        return await _verified(ref, spec, status, build, engine, now,
                               services.config.merge_retry_seconds)
    else:  # Swapping
        swapped, refusals = await _swap(ref, spec, status, build["name"], engine, now)
        message = "; ".join([f"alias {spec.alias} -> {build['name']}", *refusals])
        return _finish({**status, **swapped}, build, "Succeeded", now, message, "Succeeded",
                       0.0)
    build["phase"] = next_phase(phase, outcome)
    return {**status, "currentBuild": build}


async def _verified(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any],
                    build: dict[str, Any], engine: QdrantEngine, now: str,
                    retry_base: float) -> dict[str, Any]:
    """Verifies the master; the result and the Verified condition are written either way."""
    verification = await _verify(ref, spec, build, engine)
    passed = bool(verification["passed"])
    status = {**status, "verification": verification, "conditions": _conditions(
        status, ref.generation, now, ConditionUpdate(
            "Verified", "True" if passed else "False", "Passed" if passed else "Failed",
            verification["message"] or "all checks passed"))}
    if passed:
        return {**status, "currentBuild": {**build, "phase": next_phase("Verifying", "done")}}
    if spec.verify.on_failure == "Delete":
        await _delete_master(engine, ref, build["name"])
    return _finish(status, build, "Failed", now, verification["message"], "VerificationFailed",
                   retry_base)


async def _settle_idle(ref: ResourceRef, spec: MasterMergeSpec, status: dict[str, Any],
                       engine: QdrantEngine, now: str) -> dict[str, Any]:
    """No build to run: hold the alias where rollbackTo pins it, or leave it be."""
    wanted = spec.rollback_to
    if not wanted or spec.suspend:
        return _settle(ref, spec, status, now)
    if wanted == status.get("aliasTarget"):
        return _settle(ref, spec, status, now, rolled_back_to=wanted)
    prefix = spec.target_prefix or spec.alias
    owned = await asyncio.to_thread(_adopt_masters, engine, ref, spec)
    status = {**status, "masters": owned}
    if parse_version(prefix, wanted) is None or wanted not in owned:
        return _settle(ref, spec, status, now, rollback_problem=(
            "RollbackTargetMissing", f"rollbackTo {wanted} is not a kept master of this "
            f"resource (kept: {', '.join(owned) or 'none'})"))
    try:
        swapped, _ = await _swap(ref, spec, status, wanted, engine, now)  # refusals: logged
    except BuildFailed as failure:
        return _settle(ref, spec, status, now, rollback_problem=(failure.reason, str(failure)))
    return _settle(ref, spec, {**status, **swapped}, now, rolled_back_to=wanted)


async def delete_master_merge(ref: ResourceRef, spec: MasterMergeSpec, services: Services
                              ) -> str:
    """Applies the deletion policy. Delete removes the alias (if it still points at one of
    this resource's masters) and every master this resource built that no alias points at
    (``_delete_master``); Retain keeps both."""
    if spec.deletion_policy == "Retain":
        return "alias and masters retained (deletionPolicy Retain)"
    engine = await services.engine_for(ref.namespace, spec.connection)
    owned = await asyncio.to_thread(_owned_masters, engine, ref, spec)
    alias_removed = await asyncio.to_thread(alias_target, engine, spec.alias) in owned
    if alias_removed:
        QDRANT_WRITES.labels("DeleteAlias").inc()
        await asyncio.to_thread(delete_alias, engine, spec.alias)
    found = len(owned)
    refusals = await _delete_masters(engine, ref, list(owned), owned)
    message = f"deleted {found - len(owned)} masters" + (
        f" and alias {spec.alias}" if alias_removed else "")
    return "; ".join([message, *refusals])
