"""Status that never lies: each kind walked through failure, fix and recovery on the real API
server, the whole status checked after every step (issue #14's defects, one behaviour each).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from croniter import croniter
from prometheus_client import REGISTRY
from qdrant_client import models as qm

from album_operator.adapters.qdrant.connection import QdrantPool
from album_operator.config import OperatorConfig
from album_operator.core.health import READY_REASONS, assess
from album_operator.runner import OperatorThread
from album_operator_dev.localcluster.cluster import free_port
from tests.helpers import Kubectl, condition, reconcile_now, wait_for
from tests.integration.test_edge_snapshot_policy import (
    TOKEN,
    policy,
    seed_collection,
    token_secret,
)
from tests.integration.test_master_merge import alias_of, merge, wait_phase, year_collections
from tests.unit.test_health_lua import run_health

pytestmark = pytest.mark.cluster
DIM = 8
PER_SOURCE = 30


def prefix(namespace: str) -> str:
    return namespace.replace("-", "_")


def album(name: str, year: int, collection: str) -> dict[str, Any]:
    return {"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
            "metadata": {"name": name},
            "spec": {"year": year, "collectionName": collection,
                     "vectors": {"size": DIM, "distance": "Cosine"}}}


def seed(qdrant: Callable[..., Any], collection: str, base: int) -> None:
    vectors = np.random.default_rng(base).normal(size=(PER_SOURCE, DIM))
    points = [qm.PointStruct(id=base + i, vector=vectors[i].tolist(), payload={"i": i})
              for i in range(PER_SOURCE)]
    qdrant(lambda c: c.upsert(collection, points, wait=True))


def assert_truthful(obj: dict[str, Any]) -> None:
    """What holds after every step of every walk."""
    status = obj.get("status") or {}
    generation = obj["metadata"]["generation"]
    assert status.get("observedGeneration") == generation, status
    for cond in status.get("conditions", []):
        assert cond["observedGeneration"] == generation, cond
    build = status.get("currentBuild") or {}
    if build.get("phase") != "Failed":
        assert "failureReason" not in build, build
    if "progress" in status:
        copied, total = (int(n) for n in status["progress"].split("/"))
        assert copied <= total, status["progress"]


def assert_gitops_health(obj: dict[str, Any]) -> None:
    """The shipped Argo CD health check, run by Lua on the object as the API server returned
    it, says what the catalogue says of its Ready reason."""
    ready = condition(obj, "Ready")
    assert ready is not None, obj.get("status")
    health = READY_REASONS[obj["kind"]][ready["reason"]].health
    assert run_health(obj) == {"status": health, "message": assess(obj)[1]}, ready
    assert assess(obj)[0] == health


def lookup(obj: dict[str, Any], path: str) -> Any:
    """``status.history.0.points`` or ``Ready.reason`` (a condition by type)."""
    head, _, rest = path.partition(".")
    node: Any = condition(obj, head) if head[:1].isupper() else obj[head]
    for part in rest.split(".") if rest else []:
        if node is None:
            return None
        node = node[int(part)] if isinstance(node, list) else node.get(part)
    return node


@dataclass
class Step:
    what: str
    act: Callable[[], None]
    until: dict[str, Any]
    expect: dict[str, Any] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    fields: tuple[str, ...] | None = None
    """Every status field the step leaves, when given: nothing else may be there."""


def walk(kubectl: Kubectl, kind: str, name: str, namespace: str,
         steps: list[Step]) -> list[dict[str, Any]]:
    """Runs the steps in order; the object as each step left it."""
    seen = []
    for step in steps:
        step.act()

        def reached(step: Step = step) -> dict[str, Any] | None:
            obj = kubectl.get(kind, name, namespace)
            if (obj.get("status") or {}).get("observedGeneration") != \
                    obj["metadata"]["generation"]:
                return None
            ok = all(lookup(obj, p) == v for p, v in step.until.items())
            return obj if ok else None
        obj = wait_for(reached, 90, interval=0.3, what=f"{step.what}: {step.until}")
        assert_truthful(obj)
        assert_gitops_health(obj)
        for path, value in step.expect.items():
            actual = value(lookup(obj, path)) if callable(value) else lookup(obj, path)
            assert actual is True if callable(value) else actual == value, \
                f"{step.what}: {path} = {lookup(obj, path)!r}"
        for path in step.absent:
            assert lookup(obj, path) is None, f"{step.what}: {path} should be gone"
        if step.fields is not None:
            assert sorted(obj["status"]) == sorted(step.fields), f"{step.what}: {obj['status']}"
        seen.append(obj)
    return seen


def patch_spec(kubectl: Kubectl, kind: str, name: str, namespace: str,
               spec: dict[str, Any]) -> Callable[[], None]:
    def act() -> None:
        kubectl.run("patch", f"{kind}/{name}", "--type=merge", "-p",
                    json.dumps({"spec": spec}), namespace=namespace)
    return act


def test_master_merge_walks_through_failure_fix_and_recovery_and_status_tells_the_truth(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
        caplog: pytest.LogCaptureFixture) -> None:
    base = prefix(namespace)
    alias, late = f"{base}_master", f"{base}_2019"
    for year in (2017, 2018):
        kubectl.apply(album(f"album-{year}", year, f"{base}_{year}"), namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollections", "--all",
                "--timeout=60s", namespace=namespace)
    for i, year in enumerate((2017, 2018)):
        seed(qdrant, f"{base}_{year}", (i + 1) * 1000)
    total = 3 * PER_SOURCE

    def create_late_source() -> None:
        kubectl.apply(album("album-2019", 2019, late), namespace)
        kubectl.run("wait", "--for=condition=Ready", "albumcollection/album-2019",
                    "--timeout=60s", namespace=namespace)
        seed(qdrant, late, 3000)

    merge = {"apiVersion": "albumops.io/v1alpha1", "kind": "MasterMerge",
             "metadata": {"name": "master"},
             "spec": {"alias": alias, "sources": [f"{base}_2017", f"{base}_2018", late],
                      "verify": {"sampleQueries": 4}, "retention": {"keepPrevious": 1}}}

    def patch(spec: dict[str, Any]) -> Callable[[], None]:
        return patch_spec(kubectl, "mastermerge", "master", namespace, spec)

    next_three = croniter("0 3 * * *", dt.datetime.now(dt.UTC)).get_next(dt.datetime)
    # The build that succeeds, once the late source exists: the backoff may retry (and fail)
    # again before it does, so its number is read from the history, not assumed.
    built_master: dict[str, Any] = {}

    def retried_until_built(history: list[dict[str, Any]]) -> bool:
        succeeded, *failed = history
        built_master.update(name=succeeded["name"], failed_before=len(failed))
        return (succeeded["result"], succeeded["points"]) == ("Succeeded", total) and \
            bool(failed) and all((b["result"], b["points"]) == ("Failed", 0) for b in failed)

    def is_the_built_master(name: str) -> bool:
        return bool(name == built_master["name"])

    built = ("aliasTarget", "conditions", "currentBuild", "failedBuildsInARow", "history",
             "lastBuiltDigest", "lastBuiltGeneration", "lastSwapTime", "masters",
             "observedGeneration", "phase", "plan", "progress", "sourcesFingerprint",
             "verification")
    caplog.set_level(logging.INFO)
    seen = walk(kubectl, "mastermerge", "master", namespace, [
        Step("a source is missing", lambda: kubectl.apply(merge, namespace),
             until={"status.phase": "Failed"},
             expect={"Ready.status": "False", "Ready.reason": "SourceMissing",
                     "status.currentBuild.failureReason": "SourceMissing",
                     "status.history.0.points": 0, "status.history.0.result": "Failed",
                     "status.failedBuildsInARow": 1, "Building.status": "False",
                     "Planned.status": "False", "Planned.reason": "SourceMissing",
                     "status.nextRetryTime": lambda v: isinstance(v, str)},
             absent=("status.verification", "status.aliasTarget", "status.plan"),
             fields=("conditions", "currentBuild", "failedBuildsInARow", "history",
                     "lastBuiltDigest", "lastBuiltGeneration", "masters", "nextRetryTime",
                     "observedGeneration", "phase", "progress", "sourcesFingerprint")),
        Step("the source appears: the failed build is retried without a spec change",
             create_late_source, until={"status.phase": "Succeeded"},
             expect={"Ready.status": "True", "Ready.reason": "Ready",
                     "status.history": retried_until_built,
                     "status.aliasTarget": is_the_built_master,
                     "status.currentBuild.message":
                         lambda m: m == f"alias {alias} -> {built_master['name']}",
                     "status.progress": f"{total}/{total}", "status.failedBuildsInARow": 0,
                     "status.verification.passed": True, "Verified.status": "True",
                     "Planned.status": "True", "status.plan.distinctPoints": total,
                     "status.masters": lambda v: v == [built_master["name"]]},
             absent=("status.currentBuild.failureReason", "status.nextRetryTime"),
             fields=built),
        Step("suspended", patch({"suspend": True}), until={"Ready.reason": "Suspended"},
             expect={"Ready.status": "False", "status.aliasTarget": is_the_built_master},
             absent=("status.nextScheduledTime",), fields=built),
        Step("a rollback target that does not exist", patch(
            {"suspend": False, "rollbackTo": f"{alias}_v9"}),
             until={"Ready.reason": "RollbackTargetMissing"},
             expect={"Ready.status": "False", "status.aliasTarget": is_the_built_master},
             fields=built),
        Step("rollbackTo cleared: nothing stale stays", patch({"rollbackTo": None}),
             until={"Ready.reason": "Ready"}, expect={"Ready.status": "True"}, fields=built),
        Step("a schedule that never matches a date", patch({"schedule": "0 0 31 2 *"}),
             until={"Ready.reason": "InvalidSchedule"},
             expect={"Ready.status": "False", "status.history.0.name": is_the_built_master},
             absent=("status.nextScheduledTime",), fields=built),
        Step("a valid schedule: no build for a slot before it existed",
             patch({"schedule": "0 3 * * *"}), until={"Ready.reason": "Ready"},
             expect={"status.nextScheduledTime": next_three.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "status.history.0.name": is_the_built_master, "status.phase": "Succeeded"},
             fields=(*built, "nextScheduledTime", "observedSchedule", "scheduleSince")),
    ])
    events = kubectl.events("master", namespace)
    warnings = [e["reason"] for e in events if e["type"] == "Warning"]
    # one Warning per failed attempt: each names its own next retry time
    assert warnings.count("SourceMissing") == built_master["failed_before"], warnings
    assert "RollbackTargetMissing" in warnings
    assert "InvalidSchedule" in warnings
    failure = lookup(seen[0], "status.currentBuild.message")
    assert failure, seen[0]["status"]
    second_build = [e["message"] for e in events
                    if e["type"] == "Normal" and built_master["name"] in e["message"]]
    assert second_build, [e["message"] for e in events]
    assert not [m for m in second_build if failure in m], (failure, second_build)
    assert_no_traceback(caplog, namespace)


def assert_no_traceback(caplog: pytest.LogCaptureFixture, namespace: str) -> None:
    """A failure the operator knows (a bad schedule, a missing source) is a condition and a
    log line, never a stack trace."""
    logged = [r for r in caplog.records if namespace in r.getMessage()]
    assert [r for r in logged if "InvalidSchedule" in r.getMessage()], \
        "the operator's log lines of this namespace reach the test"
    traced = [r.getMessage() for r in logged if r.exc_info or r.exc_text]
    assert not traced, traced


@pytest.mark.parametrize("kind", ["MasterMerge", "EdgeSnapshotPolicy"])
def test_a_cron_expression_out_of_range_is_refused_by_the_api_server(
        kubectl: Kubectl, namespace: str, operator: Any, kind: str) -> None:
    manifest = ({"apiVersion": "albumops.io/v1alpha1", "kind": "MasterMerge",
                 "metadata": {"name": "bad-cron"},
                 "spec": {"sources": ["a_2017"], "schedule": "99 99 * * *"}}
                if kind == "MasterMerge" else
                policy("bad-cron", "album_2025", "kiosk-token", schedule="99 99 * * *"))
    refused = kubectl.run("apply", "-f", "-", check=False, namespace=namespace,
                          stdin=json.dumps(manifest))
    assert refused.returncode != 0
    assert "spec.schedule" in refused.stderr
    assert "should match" in refused.stderr


def test_collection_name_cannot_be_set_after_creation(
        kubectl: Kubectl, namespace: str, operator: Any) -> None:
    base = prefix(namespace)
    manifest = album("album-2020", 2020, f"{base}_2020")
    del manifest["spec"]["collectionName"]
    manifest["spec"]["year"] = 2020
    kubectl.apply(manifest, namespace)
    refused = kubectl.run("patch", "albumcollection/album-2020", "--type=merge", "-p",
                          json.dumps({"spec": {"collectionName": f"{base}_other"}}),
                          namespace=namespace, check=False)
    assert refused.returncode != 0
    assert "collectionName cannot be set after creation" in refused.stderr
    # the name already in use may be written down explicitly
    kubectl.run("patch", "albumcollection/album-2020", "--type=merge", "-p",
                json.dumps({"spec": {"collectionName": "album_2020"}}), namespace=namespace)


def test_edge_policy_with_an_impossible_schedule_says_so_and_recovers(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    collection = seed_collection(kubectl, namespace, qdrant)
    kubectl.apply(token_secret("kiosk-token", TOKEN), namespace)
    name = "edge-" + "x" * 235  # the longest name a file name can still be made from

    def patch(spec: dict[str, Any]) -> Callable[[], None]:
        return patch_spec(kubectl, "edgesnapshotpolicy", name, namespace, spec)

    manifest = policy(name, collection, "kiosk-token", schedule="0 0 31 2 *")
    walk(kubectl, "edgesnapshotpolicy", name, namespace, [
        Step("a schedule that never matches a date", lambda: kubectl.apply(manifest, namespace),
             until={"Ready.reason": "InvalidSchedule"},
             expect={"Ready.status": "False"}, absent=("status.nextRun",),
             fields=("bytesPublished", "bytesSaved", "conditions", "observedGeneration",
                     "partialRequestsServed", "snapshotCount", "snapshots")),
        Step("fixed, and a 240-character name publishes", patch({"schedule": "* * * * *"}),
             until={"Ready.reason": "Ready"},
             expect={"status.snapshotCount": 1, "status.lastRun.result": "Succeeded",
                     "status.nextRun": lambda v: isinstance(v, str)},
             fields=("bytesPublished", "bytesSaved", "conditions", "lastRun",
                     "lastScheduledTime", "nextRun", "observedGeneration",
                     "partialRequestsServed", "snapshotCount", "snapshots")),
    ])
    warnings = [e["reason"] for e in kubectl.events(name, namespace) if e["type"] == "Warning"]
    assert warnings == ["InvalidSchedule"], warnings
    assert_no_traceback(caplog, namespace)


def unreachable_qdrant_secret(kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("create", "secret", "generic", "nowhere",
                f"--from-literal=url=http://127.0.0.1:{free_port()}",
                "--from-literal=apiKey=an-api-key-nobody-may-see", namespace=namespace)


def test_a_master_merge_whose_qdrant_is_unreachable_says_so_without_the_api_key(
        kubectl: Kubectl, namespace: str, operator: Any) -> None:
    unreachable_qdrant_secret(kubectl, namespace)
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "MasterMerge",
                   "metadata": {"name": "master"},
                   "spec": {"alias": f"{prefix(namespace)}_master", "sources": ["a_2017"],
                            "connection": {"secretRef": {"name": "nowhere"}}}}, namespace)

    def reported() -> dict[str, Any] | None:
        obj = kubectl.get("mastermerge", "master", namespace)
        ready = condition(obj, "Ready")
        return obj if ready and ready["reason"] == "QdrantUnavailable" else None
    obj = wait_for(reported, 60, what="Ready=False QdrantUnavailable")
    assert_truthful(obj)
    assert "Connection refused" in condition(obj, "Ready")["message"]  # type: ignore[index]
    assert "an-api-key-nobody-may-see" not in json.dumps(obj)
    # Two more failing attempts: the status is not rewritten while unchanged.
    for _ in range(2):
        after = reconcile_now(kubectl, "mastermerge", "master", namespace)
        assert after["status"] == obj["status"]
    annotations = after["metadata"].get("annotations", {})
    assert not [a for a in annotations if a.startswith("albumops.io/") and
                a.endswith(("step", "update", "create", "resume"))], annotations


def test_a_server_policy_that_published_nothing_is_deleted_at_once_without_qdrant(
        kubectl: Kubectl, namespace: str, operator: Any) -> None:
    unreachable_qdrant_secret(kubectl, namespace)
    kubectl.apply(token_secret("kiosk-token", TOKEN), namespace)
    kubectl.apply(policy("edge", "album_2025", "kiosk-token", source="Server",
                         connection={"secretRef": {"name": "nowhere"}}), namespace)

    def reported() -> dict[str, Any] | None:
        obj = kubectl.get("edgesnapshotpolicy", "edge", namespace)
        ready = condition(obj, "Ready")
        return obj if ready and ready["reason"] == "QdrantUnavailable" else None
    assert_truthful(wait_for(reported, 60, what="Ready=False QdrantUnavailable"))
    assert series_of("edge", namespace), "albumops_resource_ready is set while it exists"
    kubectl.run("delete", "edgesnapshotpolicy/edge", "--timeout=30s", namespace=namespace)
    reasons = [e["reason"] for e in kubectl.events("edge", namespace)]
    assert "FinalizerReleased" not in reasons, "nothing to wait for: nothing was published"
    assert not series_of("edge", namespace), "a deleted resource's metric series are removed"


def series_of(name: str, namespace: str) -> list[str]:
    """The operator's metric samples labelled with this resource (it runs in this process)."""
    return [f"{metric.name}{sample.labels}" for metric in REGISTRY.collect()
            for sample in metric.samples
            if sample.labels.get("name") == name and sample.labels.get("namespace") == namespace]


def test_album_collection_walk_pause_a_hand_deletion_and_a_forged_owner_stamp(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    collection = f"{prefix(namespace)}_2021"

    def annotate(value: str) -> Callable[[], None]:
        def act() -> None:
            kubectl.run("annotate", "--overwrite", "albumcollection/photos", value,
                        namespace=namespace)
        return act

    def delete_by_hand() -> None:
        qdrant(lambda c: c.delete_collection(collection))

    def forge_stamp() -> None:
        qdrant(lambda c: c.update_collection(collection, metadata={
            "albumops.io/owner-uid": "edited-by-hand"}))

    synced = ("collectionName", "conditions", "drift", "engine", "ignoredSettings",
              "indexedVectorsCount", "lastSyncTime", "observedGeneration",
              "ownedPayloadIndexes", "pointsCount", "qdrantStatus", "recreations",
              "segmentsCount", "unmanagedPayloadIndexes")
    walk(kubectl, "albumcollection", "photos", namespace, [
        Step("created", lambda: kubectl.apply(album("photos", 2021, collection), namespace),
             until={"Ready.status": "True"}, expect={"status.pointsCount": 0},
             absent=("status.paused",), fields=synced),
        Step("paused with nothing to do: it shows", annotate("albumops.io/paused=true"),
             until={"status.paused": True},
             expect={"Ready.status": "True",
                     "Synced.message": lambda m: "Paused by albumops.io/paused" in m},
             fields=(*synced, "paused")),
        Step("deleted by hand while paused: no stale count",
             delete_by_hand,
             until={"Synced.reason": "Paused"},
             expect={"status.paused": True},
             absent=("status.pointsCount", "status.qdrantStatus"),
             fields=("collectionName", "conditions", "drift", "engine", "ignoredSettings",
                     "lastSyncTime", "observedGeneration", "ownedPayloadIndexes", "paused",
                     "recreations", "unmanagedPayloadIndexes")),
        Step("unpaused: recreated", annotate("albumops.io/paused-"),
             until={"status.recreations": 1},
             expect={"status.pointsCount": 0, "Synced.reason": "InSync"},
             absent=("status.paused",), fields=synced),
    ])
    forge_stamp()
    adopted = wait_for(lambda: [e["message"] for e in kubectl.events("photos", namespace)
                                if e["reason"] == "Adopted"], 30, what="Adopted event")
    assert "owner stamp" in adopted[0]
    assert "edited-by-hand" in adopted[0]
    assert "without an owner" not in adopted[0]


def test_album_collection_walks_through_an_unreachable_qdrant_a_fix_and_recovery(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    unreachable_qdrant_secret(kubectl, namespace)
    collection = f"{prefix(namespace)}_2022"
    manifest = album("photos", 2022, collection)
    manifest["spec"]["connection"] = {"secretRef": {"name": "nowhere"}}
    seen = walk(kubectl, "albumcollection", "photos", namespace, [
        Step("its Qdrant is unreachable", lambda: kubectl.apply(manifest, namespace),
             until={"Ready.reason": "QdrantUnavailable"},
             expect={"Ready.status": "False",
                     "Ready.message": lambda m: "failed" in m and "127.0.0.1" in m},
             absent=("status.pointsCount", "status.qdrantStatus", "status.lastSyncTime"),
             fields=("collectionName", "conditions", "drift", "engine", "ignoredSettings",
                     "observedGeneration", "ownedPayloadIndexes", "recreations",
                     "unmanagedPayloadIndexes")),
        Step("the connection is removed: the operator's own Qdrant", patch_spec(
            kubectl, "albumcollection", "photos", namespace, {"connection": None}),
             until={"Ready.status": "True"},
             expect={"Ready.reason": "Ready", "Synced.reason": "InSync",
                     "status.pointsCount": 0, "status.collectionName": collection,
                     "status.lastSyncTime": lambda v: isinstance(v, str)},
             fields=("collectionName", "conditions", "drift", "engine", "ignoredSettings",
                     "indexedVectorsCount", "lastSyncTime", "observedGeneration",
                     "ownedPayloadIndexes", "pointsCount", "qdrantStatus", "recreations",
                     "segmentsCount", "unmanagedPayloadIndexes")),
    ])
    assert "an-api-key-nobody-may-see" not in json.dumps(seen)
    assert "QdrantUnavailable" not in json.dumps(seen[-1]["status"])
    reasons = [e["reason"] for e in kubectl.events("photos", namespace)]
    assert reasons.count("QdrantUnavailable") == 1, reasons
    assert "Created" in reasons
    assert qdrant(lambda c: c.collection_exists(collection))


def test_a_cleared_rollback_target_leaves_nothing_stale_across_a_restart(
        kubectl: Kubectl, qdrant_pool: QdrantPool, qdrant: Callable[..., Any]) -> None:
    """rollbackTo names a master that does not exist, the operator stops, the target is
    cleared while nobody watches: the next operator writes Ready from the state it finds,
    and no RollbackTargetMissing survives anywhere in the status."""
    namespace = f"restart-{uuid.uuid4().hex[:8]}"  # outside the session operator's namespaces
    kubectl.run("create", "namespace", namespace)
    config = OperatorConfig(namespaces=(namespace,), resync_seconds=2.0,
                            merge_step_seconds=0.5, retry_backoff_seconds=1.0,
                            health_port=None)
    alias = f"{prefix(namespace)}_master"

    def ready_reason(reason: str) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            obj = kubectl.get("mastermerge", "master", namespace)
            handled = (obj.get("status") or {}).get("observedGeneration") == \
                obj["metadata"]["generation"]
            ready = condition(obj, "Ready")
            return obj if handled and ready and ready["reason"] == reason else None
        return check

    with OperatorThread(config, qdrant_pool):
        year_collections(kubectl, namespace, qdrant)
        kubectl.apply(merge("master", alias), namespace)
        wait_phase(kubectl, namespace, "Succeeded")
        patch_spec(kubectl, "mastermerge", "master", namespace,
                   {"rollbackTo": f"{alias}_v9"})()
        missing = wait_for(ready_reason("RollbackTargetMissing"), 60,
                           what="Ready=False RollbackTargetMissing")
        assert_gitops_health(missing)
    patch_spec(kubectl, "mastermerge", "master", namespace, {"rollbackTo": None})()
    with OperatorThread(config, qdrant_pool):
        obj = wait_for(ready_reason("Ready"), 60, what="Ready=True after the restart")
        assert_truthful(obj)
        assert_gitops_health(obj)
        assert "RollbackTargetMissing" not in json.dumps(obj["status"]), obj["status"]
        assert obj["status"]["aliasTarget"] == f"{alias}_v1"
        assert alias_of(qdrant, alias) == f"{alias}_v1"
        # while an operator still watches (a bare control plane never finishes deleting a
        # namespace: there is no namespace controller)
        kubectl.run("delete", "mastermerges,albumcollections", "--all", "--timeout=60s",
                    namespace=namespace)
