"""MasterMerge end to end: nine year collections -> a verified master behind its alias."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest
import requests
from qdrant_client import models as qm

from album_operator.adapters.qdrant.connection import QdrantPool
from album_operator.runner import OperatorThread
from tests.conftest import ServerTarget, sibling_namespace
from tests.faultproxy import FaultProxy
from tests.helpers import Kubectl, condition, wait_for

pytestmark = pytest.mark.cluster
T = TypeVar("T")
YEARS = range(2017, 2026)
DIM = 512
PER_YEAR = 40



def prefix(namespace: str) -> str:
    return namespace.replace("-", "_")


def year_collections(kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
                     size: int = DIM) -> list[str]:
    names = [f"{prefix(namespace)}_{year}" for year in YEARS]
    for year, name in zip(YEARS, names, strict=True):
        kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                       "metadata": {"name": f"album-{year}", "labels": {"album": "photos"}},
                       "spec": {"year": year, "collectionName": name,
                                "vectors": {"size": size, "distance": "Cosine"}}}, namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollections", "--all",
                "--timeout=60s", namespace=namespace)
    rng = np.random.default_rng(3)
    for year, name in zip(YEARS, names, strict=True):
        vectors = rng.normal(size=(PER_YEAR, size))
        points = [qm.PointStruct(id=year * 1000 + i, vector=vectors[i].tolist(),
                                 payload={"year": year, "i": i}) for i in range(PER_YEAR)]
        qdrant(lambda c, n=name, p=points: c.upsert(n, p, wait=True))
    return names


def merge(name: str, alias: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "albumops.io/v1alpha1", "kind": "MasterMerge",
            "metadata": {"name": name},
            "spec": {"alias": alias, "sourceSelector": {"matchLabels": {"album": "photos"}},
                     "verify": {"sampleQueries": 8}, "retention": {"keepPrevious": 1},
                     **spec}}


def wait_phase(kubectl: Kubectl, namespace: str, phase: str, build: str | None = None,
               timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = kubectl.get("mastermerge", "master", namespace)
        status = obj.get("status", {})
        current = status.get("currentBuild") or {}
        if status.get("phase") == phase and (build is None or current.get("name") == build):
            return obj
        return None
    return wait_for(check, timeout, what=f"phase {phase} {build or ''}")


def snapshot(qdrant: Callable[..., Any], collection: str) -> dict[Any, tuple[Any, Any]]:
    """IDs -> (payload, L2-normalised vector) of every point in a collection."""
    records = qdrant(lambda c: c.scroll(collection, limit=10_000, with_payload=True,
                                        with_vectors=True)[0])
    return {r.id: (r.payload, np.asarray(r.vector) / np.linalg.norm(r.vector))
            for r in records}


def assert_unchanged(before: dict[str, dict[Any, tuple[Any, Any]]],
                     qdrant: Callable[..., Any]) -> None:
    """Same IDs and payloads exactly; vectors within float32 precision (local mode returns
    float64 or float32 copies depending on what was read before)."""
    for collection, points in before.items():
        now = snapshot(qdrant, collection)
        assert now.keys() == points.keys(), collection
        for pid, (payload, vector) in points.items():
            assert now[pid][0] == payload
            assert np.allclose(now[pid][1], vector, atol=1e-6)


def alias_of(qdrant: Callable[..., Any], alias: str) -> str | None:
    aliases = qdrant(lambda c: c.get_aliases().aliases)
    return next((a.collection_name for a in aliases if a.alias_name == alias), None)


def test_a_master_is_built_verified_and_put_behind_its_alias(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    sources = year_collections(kubectl, namespace, qdrant)
    before = {s: snapshot(qdrant, s) for s in sources}
    alias = f"{prefix(namespace)}_master"
    kubectl.apply(merge("master", alias), namespace)
    obj = wait_phase(kubectl, namespace, "Succeeded")
    kubectl.run("wait", "--for=condition=Ready", "mastermerge/master", "--timeout=10s",
                namespace=namespace)
    first = obj["status"]["aliasTarget"]
    assert first == f"{alias}_v1"
    assert alias_of(qdrant, alias) == first
    verification = obj["status"]["verification"]
    assert verification["passed"]
    assert verification["configMatches"]
    assert verification["expectedCount"] == verification["actualCount"] == 9 * PER_YEAR
    assert verification["sampledQueries"] == 8
    assert condition(obj, "Verified")["status"] == "True"  # type: ignore[index]
    events = kubectl.run("get", "events", "--field-selector",
                         "involvedObject.kind=MasterMerge,involvedObject.name=master",
                         "-o", "jsonpath={.items[*].reason}", namespace=namespace).stdout
    assert {"Copying", "Indexing", "Verifying", "Swapping", "Succeeded"} <= set(events.split())
    build = obj["status"]["currentBuild"]
    assert build["pointsPerSecond"] > 0
    assert build["etaSeconds"] == 0
    assert [s["copied"] for s in build["sources"]] == [PER_YEAR] * 9
    expected = {year * 1000 + i for year in YEARS for i in range(PER_YEAR)}
    ids = {r.id for r in qdrant(lambda c: c.scroll(alias, limit=10_000)[0])}
    assert ids == expected
    probe = qdrant(lambda c: c.retrieve(sources[4], [2021 * 1000 + 7], with_vectors=True))[0]
    through_alias = [h.id for h in qdrant(lambda c: c.query_points(
        alias, query=probe.vector, limit=10).points)]
    per_source = [(h.id, h.score) for s in sources for h in qdrant(
        lambda c, s=s: c.query_points(s, query=probe.vector, limit=10).points)]
    union = [pid for pid, _ in sorted(per_source, key=lambda x: -x[1])[:10]]
    assert through_alias == union
    assert_unchanged(before, qdrant)

    # A requested rebuild moves the alias; retention keeps one previous master.
    kubectl.run("annotate", "mastermerge/master", "albumops.io/rebuild=2", namespace=namespace)
    wait_phase(kubectl, namespace, "Succeeded", build=f"{alias}_v2")
    assert alias_of(qdrant, alias) == f"{alias}_v2"
    kubectl.run("annotate", "--overwrite", "mastermerge/master", "albumops.io/rebuild=3",
                namespace=namespace)
    wait_phase(kubectl, namespace, "Succeeded", build=f"{alias}_v3")
    assert alias_of(qdrant, alias) == f"{alias}_v3"
    assert qdrant(lambda c: c.collection_exists(f"{alias}_v2"))
    assert not qdrant(lambda c: c.collection_exists(f"{alias}_v1"))

    # Rollback moves the alias back to a kept master.
    kubectl.run("patch", "mastermerge/master", "--type=merge", "-p",
                json.dumps({"spec": {"rollbackTo": f"{alias}_v2"}}), namespace=namespace)
    wait_for(lambda: alias_of(qdrant, alias) == f"{alias}_v2", timeout=30, what="rollback")
    assert_unchanged(before, qdrant)


def test_an_id_collision_fails_the_build_and_leaves_the_alias_alone(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    sources = year_collections(kubectl, namespace, qdrant)
    qdrant(lambda c: c.upsert(sources[0], [qm.PointStruct(
        id=2018 * 1000 + 3, vector=[0.1] * DIM, payload={"dup": True})], wait=True))
    alias = f"{prefix(namespace)}_master"
    kubectl.apply(merge("master", alias), namespace)
    obj = wait_phase(kubectl, namespace, "Failed")
    build = obj["status"]["currentBuild"]
    assert build["failureReason"] == "IdCollision"
    assert "2018003" in build["message"]
    assert alias_of(qdrant, alias) is None

    # The cause fixed in the spec: the failed build is retried for it, and succeeds.
    kubectl.run("patch", "mastermerge/master", "--type=merge", "-p",
                json.dumps({"spec": {"idConflictPolicy": "PreferLater"}}), namespace=namespace)
    obj = wait_phase(kubectl, namespace, "Succeeded")
    retried = obj["status"]["currentBuild"]
    assert retried["name"] != build["name"]
    assert retried["trigger"] == "the build settings changed"
    assert alias_of(qdrant, alias) == retried["name"]


def test_incompatible_sources_are_refused(kubectl: Kubectl, namespace: str,
                                          qdrant: Callable[..., Any]) -> None:
    name, other = f"{prefix(namespace)}_odd", f"{prefix(namespace)}_even"
    for year, collection, vectors in ((2017, name, {"size": 8, "distance": "Dot"}),
                                      (2018, other, {"size": 16, "distance": "Cosine"})):
        kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                       "metadata": {"name": f"album-{year}"},
                       "spec": {"year": year, "collectionName": collection,
                                "vectors": vectors}}, namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollections", "--all",
                "--timeout=60s", namespace=namespace)
    alias = f"{prefix(namespace)}_master"
    kubectl.apply({**merge("master", alias), "spec": {"alias": alias,
                                                      "sources": [name, other]}}, namespace)
    obj = wait_phase(kubectl, namespace, "Failed")
    assert obj["status"]["currentBuild"]["failureReason"] == "IncompatibleSources"
    assert alias_of(qdrant, alias) is None


def test_an_alias_that_is_a_source_or_a_collection_is_refused_before_anything_is_copied(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    sources = year_collections(kubectl, namespace, qdrant)
    # A selector resolves to the alias (the API server cannot see that).
    clash = sources[-1]
    kubectl.apply(merge("master", clash), namespace)
    obj = wait_phase(kubectl, namespace, "Failed")
    assert obj["status"]["currentBuild"]["failureReason"] == "AliasIsSource"
    assert clash in obj["status"]["currentBuild"]["message"]
    assert not qdrant(lambda c: c.collection_exists(f"{clash}_v1"))
    kubectl.run("delete", "mastermerge", "master", "--timeout=60s", namespace=namespace)

    # The alias names a collection that is no source: an alias can never replace it.
    taken = f"{prefix(namespace)}_taken"
    qdrant(lambda c: c.create_collection(taken, vectors_config=qm.VectorParams(
        size=DIM, distance=qm.Distance.COSINE)))
    kubectl.apply(merge("master", taken), namespace)
    obj = wait_phase(kubectl, namespace, "Failed")
    build = obj["status"]["currentBuild"]
    assert build["failureReason"] == "AliasIsCollection"
    assert f"{taken} is a collection" in build["message"]
    assert not qdrant(lambda c: c.collection_exists(f"{taken}_v1"))
    assert qdrant(lambda c: c.count(taken, exact=True).count) == 0
    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["status"] == "False"


def test_deletion_policy_delete_removes_the_alias_and_the_masters_not_the_sources(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    sources = year_collections(kubectl, namespace, qdrant)
    alias = f"{prefix(namespace)}_master"
    kubectl.apply(merge("master", alias, deletionPolicy="Delete"), namespace)
    wait_phase(kubectl, namespace, "Succeeded")
    assert alias_of(qdrant, alias) == f"{alias}_v1"
    kubectl.run("delete", "mastermerge", "master", "--timeout=60s", namespace=namespace)
    assert alias_of(qdrant, alias) is None
    assert not qdrant(lambda c: c.collection_exists(f"{alias}_v1"))
    assert all(qdrant(lambda c, s=s: c.collection_exists(s)) for s in sources)


def test_an_operator_stopped_mid_copy_resumes_and_the_alias_never_shows_a_half_build(
        kubectl: Kubectl, qdrant_pool: QdrantPool, qdrant: Callable[..., Any]) -> None:
    import threading
    import uuid

    from album_operator.config import OperatorConfig

    namespace = f"mergecrash-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", namespace)
    config = OperatorConfig(namespaces=(namespace,), resync_seconds=2.0,
                            merge_step_seconds=0.5, merge_checkpoint_seconds=0.5,
                            retry_backoff_seconds=1.0, health_port=None)
    alias = f"{prefix(namespace)}_master"
    seen: list[str | None] = []
    polling = threading.Event()

    def poll_alias() -> None:
        while not polling.is_set():
            seen.append(alias_of(qdrant, alias))
            polling.wait(0.02)

    first = OperatorThread(config, qdrant_pool).start()
    try:
        year_collections(kubectl, namespace, qdrant)
        poller = threading.Thread(target=poll_alias, daemon=True)
        poller.start()
        # throttled, so that the copy is still under way when the operator stops (360 points:
        # about 4.5 s of copying)
        kubectl.apply(merge("master", alias, copy={"batchSize": 10, "maxPointsPerSecond": 80}),
                      namespace)

        def copying_started() -> bool:
            build = kubectl.get("mastermerge", "master", namespace).get("status", {}).get(
                "currentBuild") or {}
            return build.get("phase") == "Copying" and build.get("copiedPoints", 0) > 0
        wait_for(copying_started, timeout=60, interval=0.05, what="the copy to be under way")
    finally:
        first.stop()
    stopped = kubectl.get("mastermerge", "master", namespace)["status"]
    assert stopped["phase"] == "Copying"
    assert stopped["currentBuild"]["copiedPoints"] < len(YEARS) * PER_YEAR
    assert alias_of(qdrant, alias) is None, "a half-copied master is never behind the alias"
    with OperatorThread(config, qdrant_pool):
        obj = wait_for(lambda: kubectl.get("mastermerge", "master", namespace)
                       if kubectl.get("mastermerge", "master", namespace)["status"].get(
                           "phase") == "Succeeded" else None, timeout=120,
                       what="the resumed build to succeed")
    polling.set()
    poller.join()
    assert obj["status"]["verification"]["passed"]
    assert obj["status"]["currentBuild"]["name"] == f"{alias}_v1"
    assert set(seen) <= {None, f"{alias}_v1"}
    assert seen[-1] == f"{alias}_v1"
    assert qdrant(lambda c: c.count(alias, exact=True).count) == len(YEARS) * PER_YEAR


@pytest.mark.qdrant_server
def test_on_a_server_the_master_is_loaded_unindexed_then_indexed_and_green(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    sources = year_collections(kubectl, namespace, qdrant)
    alias = f"{prefix(namespace)}_master"
    kubectl.apply(merge("master", alias, copy={"batchSize": 64, "parallelism": 4},
                        targetOverrides={"hnsw": {"m": 24}}), namespace)
    obj = wait_phase(kubectl, namespace, "Succeeded")
    master = obj["status"]["aliasTarget"]
    info = qdrant(lambda c: c.get_collection(master))
    assert info.config.hnsw_config.m == 24  # restored after the unindexed load
    assert info.status.value == "green"
    assert obj["status"]["verification"]["configMatches"]
    assert info.points_count == sum(
        qdrant(lambda c, s=s: c.count(s, exact=True).count) for s in sources)


def scrape(url: str, metric: str, namespace: str) -> float:
    """The value of one labelled sample of this test's merge from a real /metrics scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url, timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == metric and sample.labels.get("namespace") == namespace
               and sample.labels.get("name") == "master")


def test_metrics_move_during_a_merge(kubectl: Kubectl, namespace: str,
                                     qdrant: Callable[..., Any]) -> None:
    from album_operator.adapters.metrics import serve
    from album_operator_dev.localcluster.cluster import free_port

    port = free_port()
    serve(port)
    url = f"http://127.0.0.1:{port}/metrics"
    year_collections(kubectl, namespace, qdrant)
    alias = f"{prefix(namespace)}_master"
    # throttled: about 3 s of copying, long enough to see the counter move
    kubectl.apply(merge("master", alias, copy={"batchSize": 8, "maxPointsPerSecond": 120}),
                  namespace)
    copying = wait_phase(kubectl, namespace, "Copying")
    building, ready = condition(copying, "Building"), condition(copying, "Ready")
    assert building is not None
    assert (building["status"], building["reason"]) == ("True", "Copying")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "Building")
    seen = [scrape(url, "albumops_merge_points_copied_total", namespace)]
    wait_for(lambda: scrape(url, "albumops_merge_points_copied_total", namespace) > seen[0],
             30, what="points copied to grow while copying")
    wait_phase(kubectl, namespace, "Succeeded")
    assert scrape(url, "albumops_merge_points_copied_total", namespace) == 9 * PER_YEAR
    assert scrape(url, "albumops_merge_verifications_total", namespace) == 1
    assert scrape(url, "albumops_merge_last_swap_timestamp_seconds", namespace) > 0
    assert "albumops_reconcile_duration_seconds_count" in requests.get(url, timeout=10).text


class SourceWriter:
    """Keeps writing into two sources, as the album service does while a master is rebuilt:
    new points into one, new versions of existing points into the other. Remembers when each
    write was acknowledged."""

    def __init__(self, qdrant: Callable[..., Any], new_into: str, overwrite_in: str,
                 overwrite_ids: list[int]) -> None:
        import threading

        self._qdrant, self._new_into, self._overwrite_in = qdrant, new_into, overwrite_in
        self._overwrite_ids = overwrite_ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.acknowledged: list[tuple[Any, str, int, int]] = []  # (when, collection, id, seq)
        self._rng = np.random.default_rng(11)

    def __enter__(self) -> SourceWriter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import datetime as dt

        seq = 0
        while not self._stop.is_set():
            for collection, pid in ((self._new_into, 9_000_000 + seq),
                                    (self._overwrite_in,
                                     self._overwrite_ids[seq % len(self._overwrite_ids)])):
                point = qm.PointStruct(id=pid, vector=self._rng.normal(size=DIM).tolist(),
                                       payload={"seq": seq, "writer": True})
                self._qdrant(lambda c, n=collection, p=point: c.upsert(n, [p], wait=True))
                self.acknowledged.append((dt.datetime.now(dt.UTC), collection, pid, seq))
            seq += 1
            self._stop.wait(0.05)

    def latest_before(self, moment: Any) -> dict[int, int]:
        """ID -> seq of the last write of each point acknowledged before ``moment``."""
        return {pid: seq for when, _, pid, seq in self.acknowledged if when < moment}


def test_a_writer_during_the_build_ends_in_a_verified_master_holding_its_earlier_writes(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    import datetime as dt

    sources = year_collections(kubectl, namespace, qdrant)
    alias = f"{prefix(namespace)}_master"
    overwritten = [2018 * 1000 + i for i in range(PER_YEAR)]
    with SourceWriter(qdrant, sources[0], sources[1], overwritten) as writer:
        # throttled, so that the writer lands points in copied and not yet copied ranges
        kubectl.apply(merge("master", alias, copy={"batchSize": 16, "maxPointsPerSecond": 120}),
                      namespace)
        obj = wait_phase(kubectl, namespace, "Succeeded", timeout=180)
    status = obj["status"]
    assert status["verification"]["passed"], status["verification"]
    catch_up = status["currentBuild"]["catchUp"]
    assert catch_up["repairedTotal"] > 0, "the writer's points reached the master by catch-up"
    final_pass = dt.datetime.fromisoformat(catch_up["passStartedAt"].replace("Z", "+00:00"))
    promised = writer.latest_before(final_pass)
    assert len(promised) > 2 * 5, "the writer wrote throughout the copy"
    master = {r.id: r.payload for r in qdrant(lambda c: c.retrieve(
        alias, list(promised), with_payload=True))}
    missing = [pid for pid in promised if pid not in master]
    assert not missing, f"written before the final catch-up but not in the master: {missing}"
    stale = {pid: (master[pid].get("seq"), seq) for pid, seq in promised.items()
             if master[pid].get("seq", -1) < seq}
    assert not stale, f"points older in the master than their last earlier write: {stale}"
    new_points = {pid for _, c, pid, _ in writer.acknowledged if c == sources[0]}
    assert qdrant(lambda c: c.count(sources[0], exact=True).count) == PER_YEAR + len(new_points)
    assert qdrant(lambda c: c.count(alias, exact=True).count) == catch_up["snapshot"]["count"]


def test_a_dry_run_reports_its_plan_creates_nothing_and_then_builds_what_it_planned(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    sources = year_collections(kubectl, namespace, qdrant)
    shared = [2018 * 1000 + i for i in range(3)]  # 2018's IDs, now in 2017 too
    qdrant(lambda c: c.upsert(sources[0], [qm.PointStruct(
        id=i, vector=[0.1] * DIM, payload={"shared": True}) for i in shared], wait=True))
    alias = f"{prefix(namespace)}_master"
    before = {c.name for c in qdrant(lambda c: c.get_collections().collections)}
    kubectl.apply(merge("master", alias, dryRun=True, idConflictPolicy="PreferLater"),
                  namespace)
    kubectl.run("wait", "--for=condition=Planned", "mastermerge/master", "--timeout=60s",
                namespace=namespace)
    obj = kubectl.get("mastermerge", "master", namespace)
    plan = obj["status"]["plan"]
    assert [s["name"] for s in plan["sources"]] == sources
    assert [s["points"] for s in plan["sources"]] == [PER_YEAR + 3] + [PER_YEAR] * 8
    assert (plan["pointsToCopy"], plan["distinctPoints"], plan["collidingIds"]) == (
        9 * PER_YEAR + 3, 9 * PER_YEAR, 3)
    assert plan["collisionExamples"][0] == f"{shared[0]} ({sources[0]} & {sources[1]})"
    assert plan["target"] == f"{alias}_v1"
    assert plan["vectors"] == {"(unnamed)": f"{DIM} Cosine Float32"}
    assert plan["estimatedDiskBytes"] > 9 * PER_YEAR * DIM * 4
    assert "expectedCopySeconds" not in plan, "no build has measured a rate yet"
    assert condition(obj, "Ready")["reason"] == "DryRun"  # type: ignore[index]
    assert "3 IDs in more than one source" in condition(obj, "Planned")["message"]  # type: ignore[index]
    assert "currentBuild" not in obj["status"]
    assert {c.name for c in qdrant(lambda c: c.get_collections().collections)} == before
    assert alias_of(qdrant, alias) is None

    kubectl.run("patch", "mastermerge/master", "--type=merge", "-p",
                json.dumps({"spec": {"dryRun": False}}), namespace=namespace)
    built = wait_phase(kubectl, namespace, "Succeeded")
    assert built["status"]["aliasTarget"] == plan["target"]
    assert qdrant(lambda c: c.count(alias, exact=True).count) == plan["distinctPoints"]
    kubectl.run("patch", "mastermerge/master", "--type=merge", "-p",
                json.dumps({"spec": {"dryRun": True}}), namespace=namespace)
    kubectl.run("annotate", "mastermerge/master", "albumops.io/rebuild=plan-again",
                namespace=namespace)

    def replanned() -> dict[str, Any] | None:
        found = kubectl.get("mastermerge", "master", namespace)["status"].get("plan") or {}
        return found if found.get("target") == f"{alias}_v2" else None
    again = wait_for(replanned, 60, what="a plan for the next build")
    assert again["expectedCopySeconds"] >= 1, "the rate the first build measured"
    assert again["measuredPointsPerSecond"] > 0
    assert alias_of(qdrant, alias) == f"{alias}_v1", "a dry run moves nothing"


def test_a_merge_deleted_and_applied_again_adopts_its_alias_and_earlier_masters(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    """A GitOps replace or a backup restore: the same namespace and name, a new uid, no
    status; deletionPolicy Retain (the default) left the alias and the masters."""
    year_collections(kubectl, namespace, qdrant)
    alias = f"{prefix(namespace)}_master"
    manifest = merge("master", alias)
    kubectl.apply(manifest, namespace)
    before = wait_phase(kubectl, namespace, "Succeeded", build=f"{alias}_v1")
    kubectl.run("delete", "mastermerge", "master", "--timeout=60s", namespace=namespace)
    assert alias_of(qdrant, alias) == f"{alias}_v1", "retained"

    kubectl.apply(manifest, namespace)
    obj = wait_phase(kubectl, namespace, "Succeeded", build=f"{alias}_v2")
    assert obj["metadata"]["uid"] != before["metadata"]["uid"]
    status = obj["status"]
    assert [h["result"] for h in status["history"]] == ["Succeeded"]
    assert status["aliasTarget"] == alias_of(qdrant, alias) == f"{alias}_v2"
    assert status["masters"] == [f"{alias}_v1", f"{alias}_v2"], "v1 kept (keepPrevious 1)"
    stamp = qdrant(lambda c: c.get_collection(f"{alias}_v1").config.metadata)
    assert stamp["albumops.io/owner-uid"] == obj["metadata"]["uid"]
    assert stamp["albumops.io/owner"] == f"{namespace}/master"
    kubectl.run("wait", "--for=condition=Ready", "mastermerge/master", "--timeout=30s",
                namespace=namespace)

    # Another namespace's MasterMerge of the same name never takes the alias.
    other = sibling_namespace(kubectl, namespace)
    source = f"{prefix(other)}_2017"
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                   "metadata": {"name": "album-2017"},
                   "spec": {"year": 2017, "collectionName": source,
                            "vectors": {"size": DIM, "distance": "Cosine"}}}, other)
    kubectl.run("wait", "--for=condition=Ready", "albumcollection/album-2017",
                "--timeout=60s", namespace=other)
    qdrant(lambda c: c.upsert(source, [qm.PointStruct(id=i, vector=[0.1 + i] * DIM)
                                       for i in range(5)], wait=True))
    kubectl.apply({**merge("master", alias), "spec": {
        "alias": alias, "sources": [source], "targetPrefix": f"{prefix(other)}_master"}}, other)
    refused = wait_phase(kubectl, other, "Failed")["status"]["currentBuild"]
    assert refused["failureReason"] == "Conflict"
    assert refused["message"] == (f"alias {alias} points at {alias}_v2, which is not a master "
                                  f"of this MasterMerge ({other}/master); not moving it")
    assert alias_of(qdrant, alias) == f"{alias}_v2"
    kubectl.run("delete", "mastermerge", "master", "--timeout=60s", namespace=other)


@pytest.mark.qdrant_server
def test_a_stale_read_of_the_alias_after_the_swap_never_fails_the_build_nor_drops_it(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
        qdrant_server_target: ServerTarget) -> None:
    """The merge reaches Qdrant through a proxy that answers the first read of the alias
    list after the swap with the list from before it, as a lagging peer behind a
    load-balanced Service does; every other request goes to the server as it is."""
    import threading

    year_collections(kubectl, namespace, qdrant)
    alias = f"{prefix(namespace)}_master"
    with FaultProxy(qdrant_server_target.url) as proxy:
        kubectl.run("create", "secret", "generic", "proxied", f"--from-literal=url={proxy.url}",
                    f"--from-literal=apiKey={qdrant_server_target.api_key}",
                    namespace=namespace)
        kubectl.apply(merge("master", alias, connection={"secretRef": {"name": "proxied"}}),
                      namespace)
        wait_phase(kubectl, namespace, "Succeeded", build=f"{alias}_v1")
        proxy.stale_alias_reads_after_swap(times=1)
        seen: list[str | None] = []
        polling = threading.Event()

        def poll_alias() -> None:
            while not polling.is_set():
                seen.append(alias_of(qdrant, alias))
                polling.wait(0.02)
        poller = threading.Thread(target=poll_alias, daemon=True)
        poller.start()
        try:
            kubectl.run("annotate", "mastermerge/master", "albumops.io/rebuild=2",
                        namespace=namespace)
            obj = wait_phase(kubectl, namespace, "Succeeded", build=f"{alias}_v2")
            kubectl.run("wait", "--for=condition=Ready", "mastermerge/master",
                        "--timeout=30s", namespace=namespace)
        finally:
            polling.set()
            poller.join()
        assert proxy.stale_reads_served == 1
        status = kubectl.get("mastermerge", "master", namespace)["status"]
        # before the proxy goes (Retain: deleting touches no Qdrant)
        kubectl.run("delete", "mastermerge", "master", "--timeout=60s", namespace=namespace)
    assert [h["result"] for h in status["history"]] == ["Succeeded", "Succeeded"], \
        "the disagreeing read failed no build"
    assert "aliasReadBack" not in status, "read again, it agreed"
    assert status["aliasTarget"] == alias_of(qdrant, alias) == f"{alias}_v2"
    assert obj["status"]["currentBuild"]["name"] == f"{alias}_v2"
    assert set(seen) <= {f"{alias}_v1", f"{alias}_v2"}, "never no master behind the alias"
    assert seen[-1] == f"{alias}_v2"
    assert qdrant(lambda c: c.count(alias, exact=True).count) == len(YEARS) * PER_YEAR

    def reported() -> list[dict[str, Any]]:
        return [e for e in kubectl.events("master", namespace)
                if e["reason"] == "SwapNotConfirmed" and e["type"] == "Warning"]
    warning = wait_for(reported, 15, what="a SwapNotConfirmed Warning event")[0]
    assert f"alias {alias} to {alias}_v2" in warning["message"]
    assert f"returned {alias}_v1" in warning["message"]
