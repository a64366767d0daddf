"""One step of an EdgeSnapshotPolicy: register it with the endpoint, publish when a run is
due, apply retention, and report. Decisions come from ``core/edge.py``."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from album_operator.adapters.edge import shardbuild
from album_operator.adapters.edge.endpoint import PolicyAccess, token_digest
from album_operator.adapters.edge.server_source import ServerSnapshots, ShardUnavailable
from album_operator.adapters.edge.store import PolicyStore, SnapshotFile
from album_operator.adapters.kube import SecretUnavailable
from album_operator.adapters.metrics import (
    EDGE_BYTES_SAVED,
    EDGE_PARTIALS,
    EDGE_PUBLISHED_BYTES,
    EDGE_SNAPSHOT_CREATED,
)
from album_operator.adapters.qdrant import collections as qdrant_collections
from album_operator.adapters.qdrant.connection import QdrantEngine, QdrantError
from album_operator.adapters.qdrant.merge import alias_target
from album_operator.adapters.tenancy import collection_access
from album_operator.core.conditions import ConditionUpdate, find, merge_conditions
from album_operator.core.edge import (
    SNAPSHOT_NOW_ANNOTATION,
    SNAPSHOTS_MISSING,
    DueRun,
    LostSnapshots,
    Published,
    RunTrigger,
    due_run,
    lost_snapshots,
    parse_duration,
    snapshot_name,
    snapshots_to_delete,
)
from album_operator.core.schedule import next_scheduled_time, schedule_problem
from album_operator.core.tenancy import OwnerStamp
from album_operator.core.timeutil import parse_rfc3339, rfc3339
from album_operator.models.edge_snapshot_policy import EdgeSnapshotPolicySpec
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services

KIND = "EdgeSnapshotPolicy"
# A token is a password: a short one is guessable, and redacting its characters from every
# error text would mangle them; such a device is refused.
MIN_DEVICE_TOKEN_LENGTH = 16
BUILD_SHARD = 0  # a Build source publishes the whole (filtered) collection as one shard


class PolicyProblem(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    collection: str
    layout: dict[str, shardbuild.VectorLayout]
    metadata: Mapping[str, Any]


def policy_store(services: Services, ref: ResourceRef) -> PolicyStore:
    return PolicyStore(Path(services.config.snapshot_root) / ref.namespace / ref.name)


async def _resolve(engine: QdrantEngine, name: str) -> Target:
    concrete = await asyncio.to_thread(alias_target, engine, name) or name
    observed = await qdrant_collections.describe(engine, concrete)
    if observed is None:
        raise PolicyProblem("CollectionMissing", f"collection or alias {name} does not exist")
    return Target(concrete, {n: shardbuild.VectorLayout(v.size, v.distance)
                             for n, v in observed.vectors.items()}, observed.metadata)


async def _device_tokens(ref: ResourceRef, spec: EdgeSnapshotPolicySpec, services: Services
                         ) -> tuple[frozenset[str], list[str]]:
    digests, missing = set(), []
    for device in spec.devices:
        try:
            data = await services.kube.read_secret(ref.namespace, device.token_secret_ref)
            token = data.get("token")
        except SecretUnavailable as exc:
            missing.append(f"device {device.name}: {exc}")
            continue
        if token and len(token) >= MIN_DEVICE_TOKEN_LENGTH:
            digests.add(token_digest(token))
        elif token:
            missing.append(f"device {device.name}: the token in Secret {ref.namespace}/"
                           f"{device.token_secret_ref} is shorter than "
                           f"{MIN_DEVICE_TOKEN_LENGTH} characters")
        else:
            missing.append(f"device {device.name}: Secret {ref.namespace}/"
                           f"{device.token_secret_ref} has no key 'token'")
    return frozenset(digests), missing


async def _routed_targets(ref: ResourceRef, services: Services, engine: QdrantEngine
                         ) -> frozenset[str]:
    """Collections that AlbumCollections of this namespace hold: the stamp in Qdrant names
    the resource itself, so one that lost its claim to another namespace's is never a
    target, and masters never qualify."""
    held = set()
    for item in await services.kube.list_custom("albumcollections", ref.namespace):
        name = item["spec"].get("collectionName") or f"album_{item['spec']['year']}"
        observed = await qdrant_collections.describe(engine, name)
        stamp = OwnerStamp.from_metadata(observed.metadata) if observed else None
        if stamp is not None and stamp.uid == item["metadata"]["uid"]:
            held.add(name)
    return frozenset(held)


async def _upload_targets(ref: ResourceRef, spec: EdgeSnapshotPolicySpec, services: Services,
                          engine: QdrantEngine) -> frozenset[str]:
    """Where device points may go; a fixed target of another tenant's is refused whole."""
    if spec.upload is None:
        return frozenset()
    if spec.upload.collection is None:
        return await _routed_targets(ref, services, engine)
    name = spec.upload.collection
    observed = await qdrant_collections.describe(engine, name)
    if observed is None:
        return frozenset()  # devices' points are refused, one by one, until it exists
    decision = await collection_access(services.kube, ref.namespace, name, observed.metadata,
                                       "Write")
    if not decision.allowed:
        raise PolicyProblem(decision.reason, f"upload.collection: {decision.message}")
    return frozenset({name})


def _publish_build(access: PolicyAccess, spec: EdgeSnapshotPolicySpec,
                   ref: ResourceRef, run: DueRun, now: str) -> str:
    name = snapshot_name(ref.name, BUILD_SHARD, run.scheduled_for)
    with access.lock:
        if access.store.find(name) is not None:
            return f"{name} already published; adopted"
        layout = {n: shardbuild.VectorLayout(int(v["size"]), str(v["distance"]))
                  for n, v in access.vectors.items()}
        result = shardbuild.sync_shard(access.engine, access.collection, access.store.work,
                                       layout, spec.edge_config, spec.filter)
        manifest = shardbuild.manifest(access.store.work)
        published = access.store.publish(BUILD_SHARD, name, access.collection, manifest, now,
                                          rfc3339(run.scheduled_for))
    indexed = "; changes indexed" if result.indexed else ""
    verb = "built" if result.rebuilt else f"updated ({result.upserted} upserted, " \
        f"{result.deleted} deleted{indexed})"
    return (f"published {published.name} ({published.size_bytes} bytes, {result.points} "
            f"points; shard {verb})")


def _publish_server(server: ServerSnapshots) -> str:
    made = [server.create(shard)["name"] for shard in server.shards]
    return f"Qdrant created {', '.join(made)}"


def _published(access: PolicyAccess) -> list[SnapshotFile]:
    if access.server is None:
        return access.store.snapshots()
    return [SnapshotFile(s["shard"], s["name"], s["collection"], int(s["sizeBytes"] or 0),
                         s["sha256"] or "", s["createdAt"] or "", None)
            for s in access.server.list_published()]


def _apply_retention(access: PolicyAccess, spec: EdgeSnapshotPolicySpec, now: dt.datetime
                     ) -> int:
    snapshots = _published(access)
    max_age = parse_duration(spec.retention.max_age) if spec.retention.max_age else None
    doomed = snapshots_to_delete(
        [Published(s.shard, s.name, parse_rfc3339(s.created_at)) for s in snapshots
         if s.created_at], spec.retention.keep_last, max_age, now)
    for snapshot in doomed:
        if access.server is not None:
            access.server.delete(snapshot.shard, snapshot.name)
        else:
            with access.lock:
                access.store.delete(snapshot.name)
    return len(doomed)


@dataclass(frozen=True)
class KubeFacts:
    """What a policy may do, from Kubernetes: device token digests, whether it may publish
    its collection, and its upload targets."""

    token_digests: frozenset[str]
    missing_tokens: tuple[str, ...]
    upload_targets: frozenset[str]
    spec_digest: str
    read_at: dt.datetime


async def _kube_facts(ref: ResourceRef, spec: EdgeSnapshotPolicySpec, services: Services,
                      engine: QdrantEngine, target: Target) -> KubeFacts:
    """Re-read at most once per resync interval (or when devices, upload or the collection's
    owner change), so a policy with many devices does not read every Secret at every tick.
    A refusal raises ``PolicyProblem`` and is never cached."""
    digest = hashlib.sha256(json.dumps(
        [spec.model_dump(mode="json", include={"devices", "upload"}), target.collection,
         dict(target.metadata)], sort_keys=True, default=str).encode()).hexdigest()
    cached = services.edge_facts.get(ref.uid)
    now = services.clock()
    if (isinstance(cached, KubeFacts) and cached.spec_digest == digest
            and (now - cached.read_at).total_seconds() < services.config.resync_seconds):
        return cached
    services.edge_facts.pop(ref.uid, None)
    decision = await collection_access(services.kube, ref.namespace, target.collection,
                                       target.metadata, "Read")
    if not decision.allowed:
        raise PolicyProblem(decision.reason, decision.message)
    digests, missing = await _device_tokens(ref, spec, services)
    targets = await _upload_targets(ref, spec, services, engine)
    facts = KubeFacts(digests, tuple(missing), targets, digest, now)
    services.edge_facts[ref.uid] = facts
    return facts


def _locate(server: ServerSnapshots, spec: EdgeSnapshotPolicySpec) -> None:
    """Routes each wanted shard to a peer that holds it (placement read afresh each step,
    so a moved shard or a restarted peer is followed)."""
    plan = server.locate(spec.shards, spec.shard_keys)
    if plan.missing:
        raise PolicyProblem("ShardsNotFound", f"{server.collection} has no "
                            f"{', '.join(plan.missing)}")
    if plan.unavailable:
        raise PolicyProblem("ShardsUnavailable", "; ".join(plan.unavailable))
    if not plan.routes:
        raise PolicyProblem("ShardsNotFound", f"{server.collection} has no shards to publish")


async def _server(engine: QdrantEngine, spec: EdgeSnapshotPolicySpec, collection: str,
                  previous: PolicyAccess | None, services: Services, ref: ResourceRef
                  ) -> ServerSnapshots | None:
    if spec.source != "Server":
        return None
    old = previous.server if previous is not None else None
    if old is not None and old.collection == collection and \
            old.identity == engine.settings.identity():
        server = old
    else:
        server = ServerSnapshots(engine.settings, collection)
        counters = services.edge.counters(ref.namespace, ref.name)

        def record(sent: int, full: int) -> None:
            saved = max(full - sent, 0)
            counters.record(saved)
            EDGE_PARTIALS.labels(ref.namespace, ref.name).inc()
            EDGE_BYTES_SAVED.labels(ref.namespace, ref.name).inc(saved)
        server.on_partial = record
    await asyncio.to_thread(_locate, server, spec)
    return server


async def register(ref: ResourceRef, spec: EdgeSnapshotPolicySpec, services: Services,
                   engine: QdrantEngine) -> tuple[PolicyAccess, list[str]]:
    target = await _resolve(engine, spec.collection)
    facts = await _kube_facts(ref, spec, services, engine, target)
    previous = services.edge.get(ref.namespace, ref.name)
    access = PolicyAccess(
        namespace=ref.namespace, name=ref.name, token_digests=facts.token_digests,
        store=policy_store(services, ref), engine=engine, collection=target.collection,
        vectors={n: {"size": v.size, "distance": v.distance}
                 for n, v in target.layout.items()},
        upload=spec.upload, allowed_targets=facts.upload_targets,
        server=await _server(engine, spec, target.collection, previous, services, ref))
    services.edge.put(access)
    return access, list(facts.missing_tokens)


async def register_listed(body: Mapping[str, Any], services: Services) -> str | None:
    """Registers a policy as listed from the API with the snapshot endpoint, without a run:
    what a replica that starts working serves before its first step. Returns why it could
    not (it is then not served, and its next step reports the problem)."""
    ref = ResourceRef.from_body(KIND, body)
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    try:
        spec = EdgeSnapshotPolicySpec.model_validate(dict(body.get("spec") or {}))
    except ValidationError:
        return f"{ref.namespace}/{ref.name}: invalid spec"
    async with services.locks.hold(ref.uid):
        try:
            engine = await services.engine_for(ref.namespace, spec.connection)
            await register(ref, spec, services, engine)
        except (PolicyProblem, SecretUnavailable, QdrantError) as exc:
            services.edge.withdraw(ref.namespace, ref.name)
            problem = _problem(exc)
            return f"{ref.namespace}/{ref.name}: {problem.reason}: {problem}"
    return None


def _trigger(ref: ResourceRef, spec: EdgeSnapshotPolicySpec, status: dict[str, Any],
             published: list[SnapshotFile], now: dt.datetime, lost: LostSnapshots | None
             ) -> RunTrigger:
    last = status.get("lastScheduledTime")
    return RunTrigger(
        schedule=spec.schedule,
        last_scheduled_time=parse_rfc3339(last) if last else None,
        created=parse_rfc3339(ref.created) if ref.created else now,
        trigger_token=ref.annotations.get(SNAPSHOT_NOW_ANNOTATION),
        last_trigger_token=status.get("lastTriggerToken"),
        suspended=spec.suspend,
        published_times=tuple(parse_rfc3339(s.created_at) if s.created_at else None
                              for s in published),
        lost=lost)


def _dated(shard: int, name: str, created_at: str | None) -> Published | None:
    return Published(shard, name, parse_rfc3339(created_at)) if created_at else None


def _lost(status: dict[str, Any], present: list[SnapshotFile], access: PolicyAccess,
          republished: bool) -> LostSnapshots | None:
    """What the status records as published and this replica cannot serve: a Build
    policy's files on an emptyDir lost on restart, or on another replica's disk before a
    failover; a Server policy's shard snapshots deleted from Qdrant."""
    recorded = [_dated(int(s["shard"]), str(s["name"]), s.get("createdAt"))
                for s in status.get("snapshots") or []]
    where = ("this replica's disk" if access.server is None
             else f"Qdrant (collection {access.collection})")
    published = find(status.get("conditions") or [], "Published") or {}
    return lost_snapshots(
        [r for r in recorded if r is not None],
        [p for p in (_dated(s.shard, s.name, s.created_at) for s in present) if p is not None],
        where, reported_missing=published.get("reason") == SNAPSHOTS_MISSING
        and not republished)


def _backing_off(status: dict[str, Any], now: dt.datetime, backoff_s: float) -> bool:
    last = status.get("lastRun") or {}
    if last.get("result") != "Failed" or not last.get("time"):
        return False
    return (now - parse_rfc3339(last["time"])).total_seconds() < backoff_s


async def _run(ref: ResourceRef, spec: EdgeSnapshotPolicySpec, access: PolicyAccess,
               run: DueRun, now: dt.datetime) -> dict[str, Any]:
    started = time.monotonic()
    try:
        if access.server is not None:
            message = await asyncio.to_thread(_publish_server, access.server)
        else:
            message = await asyncio.to_thread(_publish_build, access, spec, ref, run,
                                               rfc3339(now))
        deleted = await asyncio.to_thread(_apply_retention, access, spec, now)
        result = "Succeeded"
        if deleted:
            message += f"; retention deleted {deleted}"
    except (QdrantError, OSError, RuntimeError) as exc:
        result, message = "Failed", f"{run.reason}: {exc}"
    changes: dict[str, Any] = {
        "lastRun": {"time": rfc3339(now), "result": result, "message": message[:4000],
                    "durationSeconds": round(time.monotonic() - started, 3)},
        "lastTriggerToken": ref.annotations.get(SNAPSHOT_NOW_ANNOTATION),
        # the schedule counts on from here, so a catch-up or manual run is not repeated
        "lastScheduledTime": rfc3339(run.scheduled_for)}
    return changes


@dataclass(frozen=True)
class Outcome:
    """What one step's run did about lost snapshots, for the conditions."""

    lost: LostSnapshots | None = None
    """Still lost after the step: not republished (suspended, backing off) or it failed."""
    republished: LostSnapshots | None = None
    """Lost at the start of the step, republished by its run."""


def _lost_message(lost: LostSnapshots, spec: EdgeSnapshotPolicySpec,
                  last_run: dict[str, Any]) -> str:
    if spec.suspend:
        return (f"{lost.why}; not republished while spec.suspend is true (set the annotation "
                f"{SNAPSHOT_NOW_ANNOTATION} to republish now)")
    if last_run.get("result") == "Failed":
        return f"{lost.why}; republishing failed, retried with backoff: {last_run['message']}"
    return f"{lost.why}; republishing at the next step"


def _published_condition(spec: EdgeSnapshotPolicySpec, access: PolicyAccess,
                         snapshots: list[SnapshotFile], last_run: dict[str, Any],
                         outcome: Outcome) -> ConditionUpdate:
    if outcome.lost is not None:
        return ConditionUpdate("Published", "False", SNAPSHOTS_MISSING,
                               _lost_message(outcome.lost, spec, last_run))
    if snapshots and outcome.republished is not None:
        return ConditionUpdate("Published", "True", "Republished",
                               f"{outcome.republished.why}: {last_run.get('message')}")
    if snapshots:
        return ConditionUpdate("Published", "True", "Published",
                               f"{len(snapshots)} snapshots of {access.collection}")
    return ConditionUpdate(
        "Published", "False",
        "RunFailed" if last_run.get("result") == "Failed" else "NothingPublished",
        last_run.get("message") or "no run yet")


def _report(spec: EdgeSnapshotPolicySpec, status: dict[str, Any], access: PolicyAccess,
            snapshots: list[SnapshotFile], now: dt.datetime, generation: int,
            missing_tokens: list[str], changes: dict[str, Any], next_run: bool = True,
            outcome: Outcome = Outcome()) -> dict[str, Any]:
    served, saved = access.counters.take()
    total_bytes = sum(s.size_bytes for s in snapshots)
    last_run = changes.get("lastRun") or status.get("lastRun") or {}
    published = _published_condition(spec, access, snapshots, last_run, outcome)
    ready = (ConditionUpdate("Ready", "False", "DeviceSecretMissing",
                             f"device tokens unavailable: {'; '.join(missing_tokens)}")
             if missing_tokens else
             ConditionUpdate("Ready", published.status,
                             "Ready" if published.status == "True" else published.reason,
                             published.message))
    if snapshots:
        EDGE_SNAPSHOT_CREATED.labels(access.namespace, access.name).set(
            parse_rfc3339(snapshots[0].created_at).timestamp())
    EDGE_PUBLISHED_BYTES.labels(access.namespace, access.name).set(total_bytes)
    return {
        # no null fields: the API server drops them, and the list would differ at every step
        "snapshots": [{k: v for k, v in {
            "shard": s.shard, "name": s.name, "collection": s.collection,
            "sizeBytes": s.size_bytes, "sha256": s.sha256, "createdAt": s.created_at,
            "scheduledFor": s.scheduled_for}.items() if v is not None} for s in snapshots],
        "snapshotCount": len(snapshots),
        "bytesPublished": total_bytes,
        # cumulative across operator restarts: the endpoint counts since the last step
        "partialRequestsServed": (status.get("partialRequestsServed") or 0) + served,
        "bytesSaved": (status.get("bytesSaved") or 0) + saved,
        "nextRun": rfc3339(next_scheduled_time(spec.schedule, now))
        if next_run and not spec.suspend else None,
        "conditions": merge_conditions(status.get("conditions", []), [published, ready],
                                       rfc3339(now), generation),
    }


def _problem(exc: PolicyProblem | SecretUnavailable | QdrantError) -> PolicyProblem:
    """Every way a step can fail, as a condition reason; shown, then tried again at the
    next step (edge_step_seconds)."""
    if isinstance(exc, PolicyProblem):
        return exc
    if isinstance(exc, SecretUnavailable):
        return PolicyProblem("InvalidConnection", str(exc))
    reason = "ShardsUnavailable" if isinstance(exc, ShardUnavailable) else "QdrantUnavailable"
    return PolicyProblem(reason, str(exc))


def _failed(status: dict[str, Any], problem: PolicyProblem, now: dt.datetime,
            generation: int) -> dict[str, Any]:
    return {**status, "conditions": merge_conditions(status.get("conditions", []), [
        ConditionUpdate("Ready", "False", problem.reason, str(problem))], rfc3339(now),
        generation)}


async def step_policy(ref: ResourceRef, spec: EdgeSnapshotPolicySpec, status: dict[str, Any],
                      services: Services) -> dict[str, Any]:
    """The whole status after one step."""
    now = services.clock()
    try:
        engine = await services.engine_for(ref.namespace, spec.connection)
        access, missing = await register(ref, spec, services, engine)
        published = await asyncio.to_thread(_published, access)
    except (PolicyProblem, SecretUnavailable, QdrantError) as exc:
        # What the endpoint may serve is unknown now: it serves nothing until a step
        # succeeds again, rather than what an older spec or Secret allowed.
        services.edge.withdraw(ref.namespace, ref.name)
        return _failed(status, _problem(exc), now, ref.generation)
    problem = schedule_problem(spec.schedule, now)
    if problem:  # what is published stays served; no run starts until the schedule is fixed
        report = _report(spec, status, access, published, now, ref.generation, missing, {},
                         next_run=False)
        return _failed({**status, **report}, PolicyProblem("InvalidSchedule", problem), now,
                       ref.generation)
    changes: dict[str, Any] = {}
    lost = _lost(status, published, access, republished=False)
    run = due_run(_trigger(ref, spec, status, published, now, lost), now)
    if run is not None and not _backing_off(status, now, services.config.retry_backoff_seconds
                                            * 4):
        changes = await _run(ref, spec, access, run, now)
        published = await asyncio.to_thread(_published, access)
    succeeded = changes.get("lastRun", {}).get("result") == "Succeeded"
    outcome = Outcome(lost=_lost(status, published, access, republished=succeeded) if lost
                      else None, republished=lost if lost and succeeded else None)
    return {**status, **changes, **_report(spec, status, access, published, now,
                                           ref.generation, missing, changes,
                                           outcome=outcome)}


async def delete_policy(ref: ResourceRef, spec: EdgeSnapshotPolicySpec,
                        status: dict[str, Any], services: Services) -> str:
    services.edge.remove(ref.namespace, ref.name)
    services.edge_facts.pop(ref.uid, None)
    store = policy_store(services, ref)
    if spec.deletion_policy == "Retain":
        return f"published snapshots retained in {store.root} (deletionPolicy Retain)"
    if spec.source == "Server":
        if not status.get("snapshots"):  # nothing was published, so Qdrant is not asked
            return "no shard snapshots were published"
        engine = await services.engine_for(ref.namespace, spec.connection)
        try:
            target = await _resolve(engine, spec.collection)
        except PolicyProblem as problem:
            return f"nothing to delete: {problem}"
        server = ServerSnapshots(engine.settings, target.collection)
        try:
            # every shard, wherever it is now; only what this policy made, never others'
            await asyncio.to_thread(server.locate, None, None)
            ours = [s for s in status.get("snapshots") or [] if s["shard"] in server.routes]
            for snapshot in ours:
                await asyncio.to_thread(server.delete, snapshot["shard"], snapshot["name"])
        finally:
            server.close()
        return f"deleted {len(ours)} shard snapshots from Qdrant"
    await asyncio.to_thread(store.remove_all)
    return f"deleted {store.root}"
