"""The MasterMerge reconciler on a real in-memory engine (no Kubernetes): a crash in any
phase (the step's Qdrant effects happened, its status write was lost) repeats that step and
the build still ends with exactly one verified master behind the alias."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.qdrant import copier
from album_operator.adapters.qdrant.connection import (
    ConnectionSettings,
    QdrantEngine,
    QdrantPool,
    open_engine,
)
from album_operator.adapters.qdrant.merge import alias_target, copy_step, point_id
from album_operator.config import OperatorConfig
from album_operator.core.collections import Owner
from album_operator.core.timeutil import rfc3339
from album_operator.models.common import ConnectionSpec
from album_operator.models.master_merge import (
    CopySettings,
    MasterMergeSpec,
    RetentionSettings,
    SourceChangeTrigger,
)
from album_operator.reconcilers import master_merge
from album_operator.reconcilers.master_merge import (
    KIND,
    delete_master_merge,
    step_master_merge,
)
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services
from tests.conftest import ENGINES, ServerTarget, engine_under_test
from tests.faultproxy import FaultProxy

SOURCES = {"album_2017": range(0, 90), "album_2018": range(1000, 1070),
           "album_2019": range(5000, 5110)}
SPEC = MasterMergeSpec.model_validate({
    "sources": list(SOURCES), "alias": "album_master", "copy": {"batchSize": 8},
    "verify": {"samplePoints": 40, "sampleQueries": 5}})
# A year no other test writes on the shared server: the missing-source retry creates it late.
LATE_SOURCE = "album_2012"
REF = ResourceRef(KIND, "photos", "master", "uid-merge", 1, "2026-01-01T00:00:00Z", {})
PINNED = "album_pinned"
"""An alias a person made, by hand, to one of the masters."""


class OwnersKube:
    """The Kubernetes side of ownership: the AlbumCollections that stamped the sources."""

    def __init__(self, live: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.live = live

    async def get_custom(self, plural: str, namespace: str, name: str
                         ) -> dict[str, Any] | None:
        return self.live.get((namespace, name)) if plural == "albumcollections" else None


def owner_stamp(namespace: str, collection: str) -> dict[str, str]:
    return Owner("AlbumCollection", namespace, collection.replace("_", "-"),
                 f"uid-{collection}").metadata()


LIVE_OWNERS = {("photos", name.replace("_", "-")): {"metadata": {"uid": f"uid-{name}"}}
               for name in SOURCES}


class MergeServices(Services):
    def __init__(self, engine: QdrantEngine) -> None:
        super().__init__(config=OperatorConfig(), pool=QdrantPool(ConnectionSettings()),
                         kube=OwnersKube(dict(LIVE_OWNERS)))  # type: ignore[arg-type]
        self.engine = engine
        self.now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        self.clock = self.tick

    def tick(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now

    async def engine_for(self, namespace: str, connection: ConnectionSpec | None
                         ) -> QdrantEngine:
        return self.engine


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[QdrantEngine]:
    """A real engine (in memory, or the test server) holding the three sources."""
    with engine_under_test(request, owned, aliases=("album_master", PINNED)) as engine:
        rng = np.random.default_rng(8)

        def seed(client: QdrantClient) -> None:
            for name, ids in SOURCES.items():
                client.create_collection(name, vectors_config=qm.VectorParams(
                    size=8, distance=qm.Distance.COSINE), metadata=owner_stamp("photos", name))
                client.upsert(name, [qm.PointStruct(id=i, vector=rng.normal(size=8).tolist(),
                                                    payload={"source": name, "i": i})
                                     for i in ids])
        engine.call(seed)
        yield engine


def owned(name: str) -> bool:
    """This test's collections (a shared test server holds other tests' too)."""
    return name in SOURCES or name == LATE_SOURCE or name.startswith(
        ("album_master_v", "elsewhere_master_v"))


def collections(engine: QdrantEngine) -> set[str]:
    return {c.name for c in engine.call(lambda c: c.get_collections().collections)
            if owned(c.name)}


def count_of(name: str) -> Callable[[QdrantClient], int]:
    """A call for ``engine.call``: the exact number of points in collection ``name``."""
    def count(client: QdrantClient) -> int:
        return client.count(name, exact=True).count
    return count


def build(services: MergeServices, crash_in: str | None) -> tuple[dict[str, Any], list[str]]:
    return build_with(services, SPEC, {}, crash_in)


def build_with(services: MergeServices, spec: MasterMergeSpec, status: dict[str, Any],
               crash_in: str | None = None, ref: ResourceRef = REF
               ) -> tuple[dict[str, Any], list[str]]:
    phases: list[str] = []
    crashed = False
    for _ in range(500):
        phase = (status.get("currentBuild") or {}).get("phase")
        after = asyncio.run(step_master_merge(ref, spec, status, services))
        if phase == crash_in and not crashed:
            crashed = True  # the operator died before writing this step's status,
            services.copies.stop_all()  # and its running copy with it
            continue
        # settled: a finished build that a step leaves as it is (Indexing may also repeat
        # unchanged while the server turns the master green)
        if after == status:
            if after.get("phase") in ("Succeeded", "Failed"):
                return status, phases
            time.sleep(0.05)  # the server is still indexing; ask again shortly
        status = after
        phases.append(status["phase"])
    raise AssertionError(f"the build did not settle: {phases[-5:]}")


@pytest.mark.parametrize("crash_in", [None, "Planning", "Copying", "Indexing", "CatchingUp",
                                      "Verifying", "Swapping"])
def test_a_crash_in_any_phase_repeats_the_step_and_ends_with_one_verified_master(
        engine: QdrantEngine, crash_in: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(master_merge, "CATCH_UP_POINTS_PER_STEP", 50)  # several steps
    monkeypatch.setattr(master_merge, "RANGE_MIN_PAGES", 1)  # ranges of 17 points
    services = MergeServices(engine)
    status, phases = build(services, crash_in)
    assert status["phase"] == "Succeeded", status.get("currentBuild")
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [
        "Planning", "Copying", "Indexing", "CatchingUp", "Verifying", "Swapping", "Succeeded"]
    assert phases.count("CatchingUp") >= 5, "a pass of 270 points in steps of about 50"
    catch_up = status["currentBuild"]["catchUp"]
    assert (catch_up["passNumber"], catch_up["repairedTotal"]) == (1, 0)
    assert catch_up["snapshot"]["count"] == sum(len(ids) for ids in SOURCES.values())
    assert status["aliasTarget"] == "album_master_v1"
    assert status["verification"]["passed"]
    assert status["verification"]["configMatches"]
    assert alias_target(engine, "album_master") == "album_master_v1"
    total = sum(len(ids) for ids in SOURCES.values())
    assert engine.call(lambda c: c.count("album_master_v1", exact=True).count) == total
    assert collections(engine) == {*SOURCES, "album_master_v1"}  # no second, half-built one
    for name, ids in SOURCES.items():
        assert engine.call(count_of(name)) == len(ids)
    build_status = status["currentBuild"]
    assert [s["copied"] >= s["total"] for s in build_status["sources"]] == [True] * 3
    assert build_status["copiedPoints"] >= total  # a repeated copy step may count twice
    ranges = [r for s in build_status["sources"] for r in s["ranges"]]
    assert sum(r["expected"] for r in ranges) == total
    assert all(r["done"] and r["copied"] >= r["expected"] for r in ranges)
    # a server copies two streams side by side, in ranges of ceil(270 / (2 * 8)) = 17
    # points: 6 + 5 + 7 ranges of sources of 90, 70 and 110 points
    assert len(ranges) == (18 if engine.capabilities.parallel_writes else 3)


@pytest.mark.parametrize(("stamped", "live_uid", "reason", "message"), [
    ("other", "uid-album_2018", "OwnedByAnotherNamespace",
     "collection album_2018 belongs to namespace other, which does not share it with photos "
     "for reading"),
    ("photos", None, "OwnerGone", "collection album_2018 carries the owner stamp of a "
     "resource in namespace photos that no longer exists"),
    (None, None, "NotOwned", "collection album_2018 is not owned by any AlbumCollection or "
     "MasterMerge; adopt it with an AlbumCollection in photos to read it"),
])
def test_a_source_that_is_not_this_namespaces_is_never_read(
        engine: QdrantEngine, stamped: str | None, live_uid: str | None, reason: str,
        message: str) -> None:
    metadata: dict[str, Any] = owner_stamp(stamped, "album_2018") if stamped else {
        "albumops.io/owner-uid": ""}
    engine.call(lambda c: c.update_collection("album_2018", metadata=metadata))
    services = MergeServices(engine)
    kube = services.kube
    assert isinstance(kube, OwnersKube)
    kube.live.pop(("photos", "album-2018"))
    if stamped and live_uid:
        kube.live[(stamped, "album-2018")] = {"metadata": {"uid": live_uid}}
    status, phases = build(services, None)
    assert phases[-1] == "Failed"
    assert status["currentBuild"]["failureReason"] == reason
    assert status["currentBuild"]["message"] == message
    assert collections(engine) == set(SOURCES), "nothing was created, so nothing was copied"


def test_a_failed_verification_is_written_with_its_condition_and_retried_later(
        engine: QdrantEngine) -> None:
    services = MergeServices(engine)
    status: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while status.get("phase") != "Failed" and time.monotonic() < deadline:
        if status.get("phase") == "Verifying":  # a point vanishes from the caught-up master
            engine.call(lambda c: c.delete("album_master_v1", qm.PointIdsList(points=[1001])))
        status = asyncio.run(step_master_merge(REF, SPEC, status, services))
        time.sleep(0.01)  # the copy runs between steps
    assert status["phase"] == "Failed"
    assert status["currentBuild"]["failureReason"] == "VerificationFailed"
    verification = status["verification"]
    assert not verification["passed"]
    assert verification["expectedCount"] == verification["actualCount"] + 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Verified"]["status"], conditions["Verified"]["reason"]) == (
        "False", "Failed")
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
        "False", "VerificationFailed")
    assert "retrying at" in conditions["Ready"]["message"]
    assert status["failedBuildsInARow"] == 1
    assert alias_target(engine, "album_master") is None, "an unverified master is never served"
    # the retry comes after its backoff, removes the failed master and verifies the next one
    services.now = dt.datetime.fromisoformat(status["nextRetryTime"].replace("Z", "+00:00"))
    deadline = time.monotonic() + 60
    while status["phase"] != "Succeeded" and time.monotonic() < deadline:
        status = asyncio.run(step_master_merge(REF, SPEC, status, services))
        time.sleep(0.01)  # the copy runs between steps
    assert status["phase"] == "Succeeded"
    assert status["aliasTarget"] == "album_master_v2"
    assert "failureReason" not in status["currentBuild"]
    assert status["verification"]["passed"]
    assert collections(engine) == {*SOURCES, "album_master_v2"}, "v1 went with the retry"


def test_a_running_copy_is_checkpointed_into_status_every_few_seconds(
        engine: QdrantEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copier, "PAGES_PER_CHUNK", 1)
    real_step = copy_step

    def slow_step(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.02)  # a copy that outlasts several steps, on any machine
        return real_step(*args, **kwargs)

    monkeypatch.setattr(f"{copier.__name__}.copy_step", slow_step)
    spec = SPEC.model_copy(update={"copy_settings": CopySettings(batch_size=16)})
    services = MergeServices(engine)
    status: dict[str, Any] = {}
    written_at: list[dt.datetime] = []
    for _ in range(5000):
        after = asyncio.run(step_master_merge(REF, spec, status, services))
        build = after.get("currentBuild") or {}
        if build.get("phase") == "Copying" and build != (status.get("currentBuild") or {}):
            written_at.append(services.now)
        status = after
        if status["phase"] != "Copying" and written_at:
            break
        time.sleep(0.002)  # one step per tick: the copy runs between steps
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(written_at)]
    assert len(written_at) >= 4, "a copy of several chunks is checkpointed more than once"
    # between entering Copying (the first write, its first checkpoint right after) and the
    # last checkpoint (written as soon as the copy is done): one write every few seconds
    assert min(gaps[1:-1]) >= services.config.merge_checkpoint_seconds
    assert status["currentBuild"]["copiedPoints"] == sum(len(ids) for ids in SOURCES.values())


def test_points_written_into_sources_during_a_build_are_caught_up_and_verified(
        engine: QdrantEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """New IDs, overwrites and deletions in the sources while the build copies and indexes
    are all in the master it verifies; a write after the final catch-up waits for the next
    build and fails nothing."""
    monkeypatch.setattr(master_merge, "CATCH_UP_POINTS_PER_STEP", 50)
    services = MergeServices(engine)
    rng = np.random.default_rng(5)
    expected: dict[int, dict[str, Any]] = {}
    removed: set[int] = set()
    writes = itertools.count()

    def write_during_the_build() -> None:
        n = next(writes)
        new = qm.PointStruct(id=10_000 + n, vector=rng.normal(size=8).tolist(),
                             payload={"source": "album_2017", "seq": n})
        overwrite = qm.PointStruct(id=1000 + n % 70, vector=rng.normal(size=8).tolist(),
                                   payload={"source": "album_2018", "seq": n})
        engine.call(lambda c: c.upsert("album_2017", [new]))
        engine.call(lambda c: c.upsert("album_2018", [overwrite]))
        expected.update({int(new.id): dict(new.payload or {}),
                         int(overwrite.id): dict(overwrite.payload or {})})
        if n < 20:
            engine.call(lambda c: c.delete("album_2019", qm.PointIdsList(points=[5000 + n])))
            removed.add(5000 + n)

    late = qm.PointStruct(id=20_000, vector=[0.3] * 8, payload={"late": True})
    status: dict[str, Any] = {}
    deadline = time.monotonic() + 120
    while status.get("phase") not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        if status.get("phase") in ("Copying", "Indexing"):
            write_during_the_build()
        if status.get("phase") == "Verifying":
            engine.call(lambda c: c.upsert("album_2017", [late]))
        status = asyncio.run(step_master_merge(REF, SPEC, status, services))
        time.sleep(0.01)  # the copy runs between steps
    assert status["phase"] == "Succeeded", status.get("verification")
    assert status["verification"]["passed"]
    assert status["verification"]["changedSinceCatchUp"] >= 1, "the late point is counted"
    catch_up = status["currentBuild"]["catchUp"]
    assert catch_up["repairedTotal"] >= 1
    master = {point_id(r.id): r for r in engine.call(lambda c: c.retrieve(
        "album_master_v1", [*expected, *removed, 20_000], with_payload=True))}
    assert {i: master[i].payload for i in expected if i in master} == expected
    assert not removed & master.keys(), "points deleted from a source left the master too"
    assert 20_000 not in master, "a write after the final catch-up waits for the next build"
    sources_now = sum(engine.call(count_of(name)) for name in SOURCES)
    assert engine.call(count_of("album_master_v1")) == sources_now - 1 == catch_up[
        "snapshot"]["count"]
    new_ids = [i for i in expected if i >= 10_000]
    assert [engine.call(count_of(name)) for name in SOURCES] == [  # the build wrote no source
        90 + len(new_ids) + 1, 70, 110 - len(removed)]


@pytest.mark.parametrize(("policy", "planned"), [("PreferLater", ("True", "Planned")),
                                                 ("Fail", ("False", "IdCollision"))])
def test_a_dry_run_plans_with_true_counts_and_collisions_and_creates_nothing(
        engine: QdrantEngine, policy: str, planned: tuple[str, str]) -> None:
    engine.call(lambda c: c.upsert("album_2017", [  # 1000 and 1001 are album_2018's too
        qm.PointStruct(id=i, vector=[0.1] * 8, payload={}) for i in (1000, 1001)]))
    spec = SPEC.model_copy(update={"dry_run": True, "id_conflict_policy": policy})
    services = MergeServices(engine)
    status = asyncio.run(step_master_merge(REF, spec, status={}, services=services))
    plan = status["plan"]
    assert plan["sources"] == [{"name": "album_2017", "points": 92},
                               {"name": "album_2018", "points": 70},
                               {"name": "album_2019", "points": 110}]
    assert (plan["pointsToCopy"], plan["distinctPoints"], plan["collidingIds"]) == (272, 270, 2)
    assert plan["collisionExamples"] == ["1000 (album_2017 & album_2018)",
                                         "1001 (album_2017 & album_2018)"]
    assert plan["target"] == "album_master_v1"
    assert plan["estimatedDiskBytes"] == 270 * (64 + 8 * 4 + 2 * 16 * 4)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Planned"]["status"], conditions["Planned"]["reason"]) == planned
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "DryRun")
    assert "currentBuild" not in status
    assert collections(engine) == set(SOURCES), "a dry run creates nothing"
    again = asyncio.run(step_master_merge(REF, spec, status, services))
    assert again["plan"] == plan, "planned once per spec, not at every resync"
    if policy == "Fail":
        return
    spec = spec.model_copy(update={"dry_run": False})
    status, _ = build_with(services, spec, again)
    assert status["phase"] == "Succeeded", status["currentBuild"].get("message")
    assert status["aliasTarget"] == plan["target"]
    assert status["plan"]["distinctPoints"] == 270
    assert engine.call(count_of("album_master_v1")) == 270


def test_a_failed_build_is_retried_as_soon_as_its_missing_source_appears(
        engine: QdrantEngine) -> None:
    spec = SPEC.model_copy(update={"sources": [*SOURCES, LATE_SOURCE]})
    services = MergeServices(engine)
    status, _ = build_with(services, spec, {})
    assert (status["phase"], status["currentBuild"]["failureReason"]) == (
        "Failed", "SourceMissing")
    retry_at = status["nextRetryTime"]
    services.now += dt.timedelta(seconds=11)  # past the 10 s between source checks
    assert asyncio.run(step_master_merge(REF, spec, status, services))["phase"] == "Failed", \
        "nothing changed: the build waits for its backoff"
    engine.call(lambda c: c.create_collection(
        LATE_SOURCE, vectors_config=qm.VectorParams(size=8, distance=qm.Distance.COSINE),
        metadata=owner_stamp("photos", LATE_SOURCE)))
    assert isinstance(services.kube, OwnersKube)
    services.kube.live[("photos", LATE_SOURCE.replace("_", "-"))] = {
        "metadata": {"uid": f"uid-{LATE_SOURCE}"}}
    services.now += dt.timedelta(seconds=11)
    status = asyncio.run(step_master_merge(REF, spec, status, services))
    assert status["currentBuild"]["trigger"] == "retrying the failed build: its sources changed"
    assert rfc3339(services.now) < retry_at, "before the backoff would have retried it"
    status, _ = build_with(services, spec, status)
    assert status["phase"] == "Succeeded"


def test_rebuild_on_source_change_waits_for_a_change_and_its_interval(
        engine: QdrantEngine) -> None:
    spec = SPEC.model_copy(update={"rebuild_on_source_change": SourceChangeTrigger(
        min_interval_seconds=600)})
    services = MergeServices(engine)
    status, _ = build_with(services, spec, {})
    assert status["aliasTarget"] == "album_master_v1"
    services.now += dt.timedelta(seconds=700)
    status = asyncio.run(step_master_merge(REF, spec, status, services))
    assert status["currentBuild"]["name"] == "album_master_v1", "the sources did not change"
    engine.call(lambda c: c.upsert("album_2019", [
        qm.PointStruct(id=7777, vector=[0.2] * 8, payload={"new": True})]))
    services.now += dt.timedelta(seconds=11)
    status = asyncio.run(step_master_merge(REF, spec, status, services))
    assert status["currentBuild"]["name"] == "album_master_v2"
    assert status["currentBuild"]["trigger"] == "the sources changed"
    status, _ = build_with(services, spec, status)
    assert status["aliasTarget"] == "album_master_v2"
    assert engine.call(count_of("album_master_v2")) == 271
    engine.call(lambda c: c.upsert("album_2019", [
        qm.PointStruct(id=7778, vector=[0.2] * 8, payload={"new": True})]))
    services.now += dt.timedelta(seconds=60)
    status = asyncio.run(step_master_merge(REF, spec, status, services))
    assert status["currentBuild"]["name"] == "album_master_v2", "not within the interval"


def rebuilt(ref: ResourceRef, token: str) -> ResourceRef:
    """``ref`` with the albumops.io/rebuild annotation set to ``token``."""
    return replace(ref, annotations={"albumops.io/rebuild": token})


def ready(status: dict[str, Any]) -> tuple[str, str, str]:
    found = next(c for c in status["conditions"] if c["type"] == "Ready")
    return found["status"], found["reason"], found["message"]


def owner_uid(engine: QdrantEngine, collection: str) -> str:
    metadata = engine.call(lambda c: c.get_collection(collection).config.metadata) or {}
    return str(metadata.get("albumops.io/owner-uid"))


def test_a_merge_deleted_and_applied_again_adopts_its_alias_and_masters_and_swaps(
        engine: QdrantEngine) -> None:
    services = MergeServices(engine)
    status, _ = build_with(services, SPEC, {})
    assert status["aliasTarget"] == "album_master_v1"
    # deleted (deletionPolicy Retain keeps the alias and v1) and applied again, as a GitOps
    # replace or a backup restore does: a new uid, no status
    again = replace(REF, uid="uid-merge-applied-again")
    status = asyncio.run(step_master_merge(again, SPEC, {}, services))
    assert status["currentBuild"]["name"] == "album_master_v2", "v1 is its own: not reused"
    assert ready(status) == ("True", "Ready", "alias album_master -> album_master_v1; "
                             "building album_master_v2 (Planning)")
    assert owner_uid(engine, "album_master_v1") == again.uid, "adopted: stamped anew"
    status, _ = build_with(services, SPEC, status, ref=again)
    assert status["phase"] == "Succeeded", status["currentBuild"].get("message")
    assert status["aliasTarget"] == "album_master_v2"
    assert alias_target(engine, "album_master") == "album_master_v2"
    assert status["masters"] == ["album_master_v1", "album_master_v2"], "kept for rollback"
    assert [h["result"] for h in status["history"]] == ["Succeeded"]
    # the earlier self's master is a rollback target like any other
    pinned = SPEC.model_copy(update={"rollback_to": "album_master_v1"})
    status = asyncio.run(step_master_merge(again, pinned, status, services))
    assert alias_target(engine, "album_master") == "album_master_v1"
    assert ready(status)[:2] == ("True", "RolledBack")


def test_another_namespaces_merge_of_the_same_name_never_takes_the_alias(
        engine: QdrantEngine) -> None:
    services = MergeServices(engine)
    build_with(services, SPEC, {})
    kube = services.kube
    assert isinstance(kube, OwnersKube)
    for name in SOURCES:  # the sources are shared with it: the build reaches the swap
        key = ("photos", name.replace("_", "-"))
        kube.live[key] = {**kube.live[key], "spec": {"sharedWith": [{"namespace": "elsewhere"}]}}
    elsewhere = ResourceRef(KIND, "elsewhere", "master", "uid-elsewhere", 1,
                            "2026-01-01T00:00:00Z", {})
    spec = SPEC.model_copy(update={"target_prefix": "elsewhere_master"})
    status, phases = build_with(services, spec, {}, ref=elsewhere)
    assert "Swapping" in phases
    assert (status["phase"], status["currentBuild"]["failureReason"]) == ("Failed", "Conflict")
    assert status["currentBuild"]["message"] == (
        "alias album_master points at album_master_v1, which is not a master of this "
        "MasterMerge (elsewhere/master); not moving it")
    assert alias_target(engine, "album_master") == "album_master_v1"
    assert owner_uid(engine, "album_master_v1") == REF.uid


def test_a_master_behind_any_alias_is_never_deleted_by_retention_or_the_deletion_policy(
        engine: QdrantEngine) -> None:
    spec = SPEC.model_copy(update={"retention": RetentionSettings(keep_previous=0),
                                   "deletion_policy": "Delete"})
    services = MergeServices(engine)
    status, _ = build_with(services, spec, {})
    engine.call(lambda c: c.update_collection_aliases(change_aliases_operations=[
        qm.CreateAliasOperation(create_alias=qm.CreateAlias(
            collection_name="album_master_v1", alias_name=PINNED))]))
    status, _ = build_with(services, spec, status, ref=rebuilt(REF, "2"))
    refusal = ("album_master_v1 was not deleted: alias album_pinned points at it (a "
               "collection behind an alias is never deleted)")
    assert status["aliasTarget"] == "album_master_v2"
    assert status["currentBuild"]["message"] == f"alias album_master -> album_master_v2; {refusal}"
    assert status["masters"] == ["album_master_v1", "album_master_v2"]
    assert alias_target(engine, PINNED) == "album_master_v1"

    message = asyncio.run(delete_master_merge(REF, spec, services))
    assert message == f"deleted 1 masters and alias album_master; {refusal}"
    assert collections(engine) == {*SOURCES, "album_master_v1"}
    assert alias_target(engine, "album_master") is None
    assert alias_target(engine, PINNED) == "album_master_v1"


def test_lowering_keep_previous_then_rolling_back_keeps_the_newest_verified_master(
        engine: QdrantEngine) -> None:
    services = MergeServices(engine)
    status, _ = build_with(services, SPEC, {})
    for token in ("2", "3"):
        status, _ = build_with(services, SPEC, status, ref=rebuilt(REF, token))
    assert status["masters"] == ["album_master_v1", "album_master_v2", "album_master_v3"]
    spec = SPEC.model_copy(update={"retention": RetentionSettings(keep_previous=0),
                                   "rollback_to": "album_master_v1"})
    status = asyncio.run(step_master_merge(rebuilt(REF, "3"), spec, status, services))
    assert alias_target(engine, "album_master") == "album_master_v1"
    assert ready(status)[:2] == ("True", "RolledBack")
    assert status["masters"] == ["album_master_v1", "album_master_v3"]
    assert collections(engine) == {*SOURCES, "album_master_v1", "album_master_v3"}


def step_until_finished(services: MergeServices, ref: ResourceRef, spec: MasterMergeSpec,
                        status: dict[str, Any]) -> dict[str, Any]:
    """Steps a build (started by the first step) until it succeeds or fails."""
    status = asyncio.run(step_master_merge(ref, spec, status, services))
    deadline = time.monotonic() + 120
    while status["phase"] not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        time.sleep(0.01)  # the copy runs between steps
        status = asyncio.run(step_master_merge(ref, spec, status, services))
    return status


@pytest.mark.parametrize("engine", ["server"], indirect=True)
def test_a_stale_read_of_the_alias_after_the_swap_is_reported_never_a_failed_build(
        engine: QdrantEngine, qdrant_server_target: ServerTarget) -> None:
    """Between the operator and the server, a proxy answers the first read of the alias
    list after the swap with the list from before it, as a lagging peer behind a
    load-balanced Service does."""
    with FaultProxy(qdrant_server_target.url) as proxy:
        proxied = open_engine(ConnectionSettings(url=proxy.url,
                                                 api_key=qdrant_server_target.api_key))
        try:
            services = MergeServices(proxied)
            status, _ = build_with(services, SPEC, {})
            assert status["aliasTarget"] == "album_master_v1"
            proxy.stale_alias_reads_after_swap(times=1)
            status = step_until_finished(services, rebuilt(REF, "2"), SPEC, status)
            assert proxy.stale_reads_served == 1
            assert status["phase"] == "Succeeded", status["currentBuild"].get("message")
            assert (status["aliasTarget"], status["aliasReadBack"]) == (
                "album_master_v2", "album_master_v1")
            assert ready(status)[:2] == ("False", "SwapNotConfirmed")
            assert alias_target(engine, "album_master") == "album_master_v2"

            status = asyncio.run(step_master_merge(rebuilt(REF, "2"), SPEC, status, services))
            assert "aliasReadBack" not in status or status["aliasReadBack"] is None
            assert ready(status) == ("True", "Ready", "alias album_master -> album_master_v2")
            # nothing failed, so nothing is cleaned up as failed: the master stays served
            services.now += dt.timedelta(hours=2)
            status = asyncio.run(step_master_merge(rebuilt(REF, "2"), SPEC, status, services))
            assert [h["result"] for h in status["history"]] == ["Succeeded", "Succeeded"]
            assert alias_target(engine, "album_master") == "album_master_v2"
            assert engine.call(count_of("album_master")) == sum(map(len, SOURCES.values()))
        finally:
            proxied.close()
