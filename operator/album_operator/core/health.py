"""What each kind's ``Ready`` condition means for a GitOps tool, by reason (pure).

This is the authoritative catalogue: every reason the operator writes on ``Ready``, per kind,
and the health Argo CD (or any tool reading ``Ready`` the same way) should show for it. The
shipped health check ``gitops/argocd/health.lua`` applies the same rules; its two reason lists
are checked against ``progressing_reasons()`` and ``suspended_reasons()`` by
``tests/unit/test_health_lua.py``, which also runs it on a status for every reason here.

The rules, in order (``assess`` is the same in Python):

1. no status, or no ``Ready`` condition: Progressing (the operator has not reported yet);
2. ``Ready.observedGeneration`` (else ``status.observedGeneration``) below
   ``metadata.generation``: Progressing (the latest spec is not handled yet);
3. ``Ready`` True: Healthy, whatever the reason (a MasterMerge whose latest build failed
   keeps serving the previous master and says so in the reason);
4. ``Ready`` False or Unknown: the reason's health from the catalogue: Progressing or
   Suspended for the reasons listed as such, Degraded for every other reason (one the
   catalogue does not know included).

The message is always the condition's own (``reason: message``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Health = Literal["Healthy", "Progressing", "Suspended", "Degraded"]
HEALTHS: tuple[Health, ...] = ("Healthy", "Progressing", "Suspended", "Degraded")
KINDS = ("AlbumCollection", "MasterMerge", "EdgeSnapshotPolicy")


@dataclass(frozen=True)
class Reason:
    """One ``Ready`` reason: the health it means and, briefly, when it is written."""

    health: Health
    meaning: str


def _degraded(meaning: str) -> Reason:
    return Reason("Degraded", meaning)


# Reasons every kind may write.
COMMON: Mapping[str, Reason] = {
    "Ready": Reason("Healthy", "everything the spec asks for is in place"),
    "InvalidSpec": _degraded("the spec is valid for the API server but cannot be carried out"),
    "InvalidSchedule": _degraded("spec.schedule is not a cron expression that ever fires"),
    "QdrantUnavailable": _degraded("Qdrant could not be reached; retried with backoff"),
    "SecretUnavailable": _degraded("the connection Secret is missing or incomplete"),
    "KubernetesUnavailable": _degraded("the API server could not be reached or refused a call; "
                                       "retried with backoff"),
    "InternalError": _degraded("an unexpected error; retried with backoff"),
    "Suspended": Reason("Suspended", "spec.suspend is true"),
    "Paused": Reason("Suspended", "reconciling is paused"),
}

# Reasons of the tenancy checks (a collection of another namespace, or of no one).
TENANCY: Mapping[str, Reason] = {
    "OwnedByAnotherNamespace": _degraded(
        "the collection belongs to a namespace that does not share it with this one"),
    "NotOwned": _degraded("the collection is not owned by any AlbumCollection or MasterMerge"),
    "OwnerGone": _degraded("the collection's owner stamp names a resource that no longer "
                           "exists"),
}

ALBUM_COLLECTION: Mapping[str, Reason] = {
    **COMMON,
    "InvalidConnection": _degraded("spec.connection cannot be used"),
    "Conflict": _degraded("a collection of that name exists and cannot be adopted"),
    "ImmutableFieldMismatch": _degraded(
        "the collection differs from the spec in a setting Qdrant cannot change"),
    "CollectionNameChanged": _degraded(
        "spec.collectionName was set or changed after the collection was created"),
}

MASTER_MERGE: Mapping[str, Reason] = {
    **COMMON,
    "Succeeded": Reason("Healthy", "the latest build was swapped in"),
    "RolledBack": Reason("Healthy", "the alias points at the master spec.rollbackTo names"),
    "Building": Reason("Progressing", "the first build runs; no master is served yet"),
    "Pending": Reason("Progressing", "no master is built yet, and no build runs (the schedule "
                      "has not come round)"),
    "Failed": _degraded("the latest build failed (its own reason unknown)"),
    "RetryScheduled": _degraded("the latest build failed; it is retried with backoff"),
    "RollbackTargetMissing": _degraded("spec.rollbackTo is not a kept master of this resource"),
    "DryRun": Reason("Suspended", "spec.dryRun is true: the build is planned, nothing built"),
    # a build that failed (status.currentBuild.failureReason says the same)
    "SourceMissing": _degraded("a source collection does not exist"),
    "NoSources": _degraded("no source collection matched"),
    "IncompatibleSources": _degraded("the sources' vector settings differ"),
    "IdCollision": _degraded("two sources hold one point ID (idConflictPolicy Fail)"),
    "Conflict": _degraded("the alias or the next master is not this resource's to move"),
    "TargetMissing": _degraded("the master being built disappeared"),
    "IndexingFailed": _degraded("Qdrant reported the master red while indexing"),
    "VerificationFailed": _degraded("the master failed verification"),
    "SwapNotConfirmed": _degraded("Qdrant acknowledged the alias swap, but a read of the alias "
                                  "returns another collection; read again until it agrees"),
    "UnorderedScroll": _degraded("a source did not return points in ID order"),
    "AliasIsSource": _degraded("the alias names one of the sources"),
    "AliasIsCollection": _degraded("the alias names an existing collection"),
    **TENANCY,
}

EDGE_SNAPSHOT_POLICY: Mapping[str, Reason] = {
    **COMMON,
    "InvalidConnection": _degraded("spec.connection cannot be used"),
    "NothingPublished": Reason("Progressing", "no run has published a snapshot yet"),
    "RunFailed": _degraded("the latest run failed and no snapshot is published"),
    "SnapshotsMissing": _degraded(
        "snapshots the status records are gone from where they are served (an emptyDir lost "
        "on restart, or another replica's disk before a failover); republished at once, "
        "retried with backoff"),
    "DeviceSecretMissing": _degraded("a device token Secret is missing"),
    "CollectionMissing": _degraded("the collection or alias to publish does not exist"),
    "ShardsNotFound": _degraded("the collection has none of the shards asked for"),
    "ShardsUnavailable": _degraded("a shard to publish has no active replica"),
    **TENANCY,
}

READY_REASONS: Mapping[str, Mapping[str, Reason]] = {
    "AlbumCollection": ALBUM_COLLECTION,
    "MasterMerge": MASTER_MERGE,
    "EdgeSnapshotPolicy": EDGE_SNAPSHOT_POLICY,
}


def _reasons_with(health: Health) -> frozenset[str]:
    return frozenset(reason for reasons in READY_REASONS.values()
                     for reason, entry in reasons.items() if entry.health == health)


def progressing_reasons() -> frozenset[str]:
    """Ready=False reasons that mean "wait", across all kinds (one health check serves all
    three, so a reason means the same on each)."""
    return _reasons_with("Progressing")


def suspended_reasons() -> frozenset[str]:
    """Ready=False reasons that mean "paused by the user", across all kinds."""
    return _reasons_with("Suspended")


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = status.get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


def assess(obj: Mapping[str, Any]) -> tuple[Health, str]:
    """The health and message of one resource (a whole object as the API server returns it);
    the same answer as the shipped Lua."""
    status = obj.get("status") or {}
    ready = _ready(status)
    if ready is None:
        return "Progressing", "waiting for the operator's Ready condition"
    detail = f"{ready.get('reason') or ''}: {ready.get('message') or ''}"
    generation = (obj.get("metadata") or {}).get("generation")
    observed = ready.get("observedGeneration", status.get("observedGeneration"))
    if generation is not None and observed is not None and observed < generation:
        return "Progressing", (f"generation {generation} not handled yet (observed "
                               f"{observed}); {detail}")
    if ready.get("status") == "True":
        return "Healthy", detail
    reason = ready.get("reason") or ""
    if reason in progressing_reasons():
        return "Progressing", detail
    if reason in suspended_reasons():
        return "Suspended", detail
    return "Degraded", detail
