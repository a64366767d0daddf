"""MasterMerge's pure decisions: phases, names, triggers, collisions, swap guard, retention."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from album_operator.core.collections import ObservedCollection, ObservedVector, Owner
from album_operator.core.engine import EMBEDDED, SERVER
from album_operator.core.idstreams import PointId
from album_operator.core.merge import (
    TRANSITIONS,
    CopyRate,
    MergeFacts,
    Phase,
    StepOutcome,
    TriggerState,
    alias_read_back,
    bulk_load_collection,
    copy_range_points,
    copy_rate,
    deletion_refusal,
    failed_build_retry_at,
    indexing_outcome,
    master_collection,
    masters_to_delete,
    may_swap,
    merge_ready,
    next_phase,
    next_version,
    owned_masters,
    parse_version,
    ranked_union,
    reads_by_id,
    rebuild_reason,
    source_check_due,
    sources_fingerprint,
    target_name,
    top_k_overlap,
)
from album_operator.core.schedule import due_scheduled_time
from album_operator.models.collection_settings import HnswConfig, OptimizersConfig
from album_operator.models.master_merge import TargetOverrides

UTC = dt.UTC


@pytest.mark.parametrize(("phase", "outcome", "expected"), [
    ("Pending", "done", "Planning"),
    ("Planning", "done", "Copying"),
    ("Copying", "more", "Copying"),
    ("Copying", "done", "Indexing"),
    ("Indexing", "more", "Indexing"),
    ("Indexing", "done", "CatchingUp"),
    ("CatchingUp", "more", "CatchingUp"),
    ("CatchingUp", "done", "Verifying"),
    ("CatchingUp", "failed", "Failed"),
    ("Verifying", "done", "Swapping"),
    ("Verifying", "failed", "Failed"),
    ("Swapping", "done", "Succeeded"),
    ("Swapping", "failed", "Failed"),
    ("Planning", "failed", "Failed"),
    ("Copying", "failed", "Failed"),
])
def test_every_transition(phase: Phase, outcome: StepOutcome, expected: Phase) -> None:
    assert next_phase(phase, outcome) == expected


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_builds_take_no_steps(phase: Phase) -> None:
    with pytest.raises(ValueError, match="takes no more steps"):
        next_phase(phase, "done")


def test_the_happy_path_visits_every_phase_once_in_order() -> None:
    phase: Phase = "Pending"
    visited = [phase]
    while phase != "Succeeded":
        phase = next_phase(phase, "done")
        visited.append(phase)
    assert visited == ["Pending", *TRANSITIONS.values()]


@pytest.mark.parametrize("crashed_in", list(TRANSITIONS))
def test_a_build_resumed_after_a_crash_continues_from_its_recorded_phase(
        crashed_in: Phase) -> None:
    """Status holds the phase; resuming repeats that phase's step, never skips ahead."""
    assert next_phase(crashed_in, "more") == crashed_in
    assert next_phase(crashed_in, "done") == TRANSITIONS[crashed_in]


def test_names_are_deterministic_and_parse_back() -> None:
    assert target_name("album_master", 7) == "album_master_v7"
    assert parse_version("album_master", "album_master_v7") == 7
    assert parse_version("album_master", "album_master_v07") is None
    assert parse_version("album_master", "album_master_v7_tmp") is None
    assert parse_version("album_master", "other_v7") is None
    assert next_version("album_master", ["album_master_v2", "album_master_v10", "x_v99"]) == 11
    assert next_version("album_master", []) == 1


CREATED = dt.datetime(2026, 1, 1, tzinfo=UTC)
BASE = TriggerState(spec_digest="d3", last_built_digest="d3", rebuild_token=None,
                    last_rebuild_token=None, schedule=None, last_scheduled_time=None,
                    schedule_since=CREATED, suspended=False, building=False)
NOW = dt.datetime(2026, 1, 2, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(("state", "reason"), [
    (BASE, None),
    (replace(BASE, last_built_digest=None), "no master has been built yet"),
    (replace(BASE, spec_digest="d4"), "the build settings changed"),
    (replace(BASE, spec_digest="d4", pinned=True), None),
    (replace(BASE, rebuild_token="b"), "rebuild requested (albumops.io/rebuild=b)"),
    (replace(BASE, rebuild_token="b", last_rebuild_token="b"), None),
    (replace(BASE, schedule="0 * * * *",
              last_scheduled_time=dt.datetime(2026, 1, 2, 10, 0, tzinfo=UTC)), None),
    (replace(BASE, schedule="0 * * * *",
              last_scheduled_time=dt.datetime(2026, 1, 2, 9, 0, tzinfo=UTC)),
     "scheduled for 2026-01-02T10:00:00Z"),
    (replace(BASE, spec_digest="d4", suspended=True), None),
    (replace(BASE, spec_digest="d4", building=True), None),
    # a schedule added at 10:20 waits for 11:00; the 10:00 slot passed before it existed
    (replace(BASE, schedule="0 * * * *",
              schedule_since=dt.datetime(2026, 1, 2, 10, 20, tzinfo=UTC)), None),
    (replace(BASE, schedule="0 * * * *",
              schedule_since=dt.datetime(2026, 1, 2, 9, 20, tzinfo=UTC)),
     "scheduled for 2026-01-02T10:00:00Z"),
    (replace(BASE, retry_at=dt.datetime(2026, 1, 2, 10, 29, tzinfo=UTC)),
     "retrying the failed build"),
    (replace(BASE, retry_at=dt.datetime(2026, 1, 2, 10, 31, tzinfo=UTC)), None),
    (replace(BASE, retry_at=dt.datetime(2026, 1, 2, 10, 29, tzinfo=UTC), suspended=True),
     None),
    # a failed build whose sources changed is retried before its backoff ends
    (replace(BASE, retry_at=dt.datetime(2026, 1, 2, 11, 30, tzinfo=UTC), sources_changed=True),
     "retrying the failed build: its sources changed"),
    (replace(BASE, retry_at=dt.datetime(2026, 1, 2, 11, 30, tzinfo=UTC), sources_changed=True,
             dry_run=True), None),
    # rebuildOnSourceChange: only when the sources changed, and not before its interval
    (replace(BASE, source_trigger_at=dt.datetime(2026, 1, 2, 10, 0, tzinfo=UTC),
             sources_changed=True), "the sources changed"),
    (replace(BASE, source_trigger_at=dt.datetime(2026, 1, 2, 10, 0, tzinfo=UTC)), None),
    (replace(BASE, source_trigger_at=dt.datetime(2026, 1, 2, 11, 0, tzinfo=UTC),
             sources_changed=True), None),
    (replace(BASE, sources_changed=True), None),  # no trigger asked for
    (replace(BASE, source_trigger_at=dt.datetime(2026, 1, 2, 10, 0, tzinfo=UTC),
             sources_changed=True, pinned=True), None),
])
def test_rebuild_triggers(state: TriggerState, reason: str | None) -> None:
    assert rebuild_reason(state, NOW) == reason


@pytest.mark.parametrize(("wanted", "last", "due"), [
    (False, None, False),
    (True, None, True),
    (True, dt.datetime(2026, 1, 2, 10, 29, 55, tzinfo=UTC), False),
    (True, dt.datetime(2026, 1, 2, 10, 29, 50, tzinfo=UTC), True),
])
def test_source_counts_are_read_only_when_wanted_and_not_too_often(
        wanted: bool, last: dt.datetime | None, due: bool) -> None:
    assert source_check_due(wanted, last, NOW) is due


def test_a_sources_fingerprint_changes_with_a_count_a_source_or_a_missing_one() -> None:
    base = sources_fingerprint([("a", 10), ("b", 20)])
    assert base == sources_fingerprint([("a", 10), ("b", 20)])
    assert len({base, sources_fingerprint([("a", 11), ("b", 20)]),
                sources_fingerprint([("a", 10)]), sources_fingerprint([("a", 10), ("b", None)]),
                sources_fingerprint([("b", 20), ("a", 10)])}) == 5


def test_missed_scheduled_runs_collapse_into_one_catch_up() -> None:
    down_since = dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert due_scheduled_time("0 * * * *", down_since, NOW) == dt.datetime(
        2026, 1, 2, 10, 0, tzinfo=UTC)
    assert due_scheduled_time("0 * * * *", NOW, NOW) is None


@pytest.mark.parametrize(("alias_target", "owned", "allowed"), [
    (None, [], True),
    (None, ["album_master_v1"], True),
    ("album_master_v1", ["album_master_v1"], True),
    # applied again: status knows nothing, the stamps say v1 is this resource's
    ("album_master_v1", ["album_master_v1", "album_master_v2"], True),
    ("someone_elses", ["album_master_v1"], False),
    ("album_master_v1", [], False),  # another namespace's master of the same name
])
def test_the_alias_moves_only_from_nowhere_or_from_a_master_of_this_resource(
        alias_target: str | None, owned: list[str], allowed: bool) -> None:
    assert may_swap(alias_target, owned) is allowed


def stamp(kind: str, ref: str, uid: str) -> dict[str, str]:
    return {"albumops.io/owner-kind": kind, "albumops.io/owner": ref,
            "albumops.io/owner-uid": uid}


def test_the_masters_of_a_resource_are_those_its_namespace_and_name_stamped() -> None:
    owner = Owner("MasterMerge", "photos", "master", "uid-now")
    stamps = {
        "album_master_v3": stamp("MasterMerge", "photos/master", "uid-now"),
        "album_master_v1": stamp("MasterMerge", "photos/master", "uid-before-reapply"),
        "album_master_v2": stamp("MasterMerge", "other/master", "uid-other"),
        "album_master_v4": stamp("AlbumCollection", "photos/master", "uid-now"),
        "album_master_v5": {},
        "album_master_v10": stamp("MasterMerge", "photos/master", "uid-now"),
        "album_master_old": stamp("MasterMerge", "photos/master", "uid-now"),
    }
    assert owned_masters(stamps, "album_master", owner) == [
        "album_master_v1", "album_master_v3", "album_master_v10"]


OWNED = [f"album_master_v{v}" for v in range(1, 7)]


@pytest.mark.parametrize(("serving", "failed", "keep", "deleted"), [
    ({"album_master_v6"}, set(), 2, ["album_master_v1", "album_master_v2", "album_master_v3"]),
    ({"album_master_v6"}, set(), 0, [f"album_master_v{v}" for v in range(1, 6)]),
    ({"album_master_v6"}, set(), 10, []),
    # a rollback to v2: the newest verified master (v6) stays whatever keepPrevious says
    ({"album_master_v2"}, set(), 1, ["album_master_v1", "album_master_v3", "album_master_v4"]),
    ({"album_master_v2"}, set(), 0, ["album_master_v1", "album_master_v3", "album_master_v4",
                                     "album_master_v5"]),
    ({"album_master_v1"}, set(), 0, [f"album_master_v{v}" for v in range(2, 6)]),
    # v6 failed verification (kept for inspection): v5 is the newest verified
    ({"album_master_v2"}, {"album_master_v6"}, 0, ["album_master_v1", "album_master_v3",
                                                   "album_master_v4", "album_master_v6"]),
    (set(), set(), 3, ["album_master_v1", "album_master_v2"]),
    ({"album_master_v3", "album_master_v1"}, set(), 0, [
        "album_master_v2", "album_master_v4", "album_master_v5"]),
])
def test_retention_never_deletes_the_alias_target_nor_the_newest_verified_master(
        serving: set[str], failed: set[str], keep: int, deleted: list[str]) -> None:
    assert masters_to_delete([*OWNED, "unrelated"], "album_master", serving, failed,
                             keep) == deleted


@pytest.mark.parametrize(("aliases", "refused"), [
    ({}, None),
    ({"album_master": "album_master_v2"}, None),
    ({"album_master": "album_master_v1"},
     "album_master_v1 was not deleted: alias album_master points at it (a collection behind "
     "an alias is never deleted)"),
    ({"pinned": "album_master_v1", "album_master": "album_master_v1", "x": "album_2019"},
     "album_master_v1 was not deleted: alias album_master, pinned points at it (a collection "
     "behind an alias is never deleted)"),
])
def test_a_collection_behind_any_alias_is_never_deleted(aliases: dict[str, str],
                                                         refused: str | None) -> None:
    assert deletion_refusal("album_master_v1", aliases) == refused


@pytest.mark.parametrize(("seen", "recorded"), [
    ("album_master_v2", None),
    ("album_master_v1", "album_master_v1"),  # a lagging peer still shows the previous master
    (None, ""),
])
def test_a_read_of_the_alias_after_an_acknowledged_swap_is_only_recorded(
        seen: str | None, recorded: str | None) -> None:
    assert alias_read_back(seen, "album_master_v2") == recorded


def test_top_k_overlap() -> None:
    assert top_k_overlap([1, 2, 3, 4], [4, 3, 2, 1]) == 1.0
    assert top_k_overlap([1, 2, 3, 4], [1, 2, 9, 8]) == 0.5
    assert top_k_overlap([], [1]) == 1.0


HITS = [(0.9, 1, 0), (0.5, 2, 0), (0.95, 10, 1), (0.4, 11, 1), (0.6, 20, 2), (0.8, 2, 2)]


@pytest.mark.parametrize(("higher", "left_out", "holder", "expected"), [
    (True, (), {}, [10, 1, 2, 20, 11]),   # a shared ID once, at its best score
    (False, (), {}, [11, 2, 20, 1, 10]),  # distances: the lowest first
    (True, {10}, {}, [1, 2, 20, 11]),     # a point that changed since the catch-up
    (True, (), {2: 0}, [10, 1, 20, 2, 11]),  # the master holds source 0's version of 2
])
def test_the_union_of_sources_is_ranked_like_one_search(
        higher: bool, left_out: set[PointId], holder: dict[PointId, int],
        expected: list[int]) -> None:
    assert ranked_union(HITS, higher, left_out, holder) == expected


def test_rollback_schedule_and_retention_do_not_change_the_build_digest() -> None:
    from album_operator.core.merge import build_digest
    from album_operator.models.master_merge import MasterMergeSpec

    base = MasterMergeSpec.model_validate({"sources": ["a", "b"]})
    same = MasterMergeSpec.model_validate({"sources": ["a", "b"], "rollbackTo": "m_v1",
                                           "schedule": "0 * * * *", "suspend": True,
                                           "retention": {"keepPrevious": 5}})
    other = MasterMergeSpec.model_validate({"sources": ["a", "b", "c"]})
    assert build_digest(base) == build_digest(same)
    assert build_digest(base) != build_digest(other)


@pytest.mark.parametrize(("copied", "expected", "elapsed", "rate", "eta"), [
    (0, 1000, 10, None, None),
    (500, 1000, 0, None, None),
    (500, 1000, 10, 50.0, 10),
    (1000, 1000, 4, 250.0, 0),
    (1, 10_000, 3, 0.3, 29_997),
])
def test_copy_rate_and_eta(copied: int, expected: int, elapsed: int, rate: float | None,
                           eta: int | None) -> None:
    started = NOW - dt.timedelta(seconds=elapsed)
    assert copy_rate(copied, expected, started, NOW) == CopyRate(rate, eta)
    assert copy_rate(copied, expected, None, NOW) == CopyRate(None, None)


@pytest.mark.parametrize(("to_restore", "status", "outcome"), [
    (["hnsw.m"], "green", "more"),
    ([], "yellow", "more"),
    ([], "grey", "more"),
    ([], "green", "done"),
    (["hnsw.m"], "red", "failed"),
])
def test_indexing_ends_when_settings_are_back_and_the_master_is_green(
        to_restore: list[str], status: str, outcome: StepOutcome) -> None:
    assert indexing_outcome(to_restore, status) == outcome


TEMPLATE = ObservedCollection(
    name="album_2017", vectors={"": ObservedVector(size=512, distance="Cosine", on_disk=True)},
    params={"shardNumber": 6, "replicationFactor": 2, "onDiskPayload": True},
    hnsw={"m": 32, "efConstruct": 200}, optimizers={"indexingThreshold": 10000},
    quantization={"scalar": {"type": "int8", "alwaysRam": True}},
    payload_indexes={"year": {"type": "integer", "options": {"lookup": True}},
                     "camera": {"type": "keyword", "options": {}}})


def test_the_master_inherits_the_sources_settings() -> None:
    master = master_collection("album_master_v3", TEMPLATE, None, {"owner": "x"})
    assert master.vectors[""].size == 512
    assert master.vectors[""].distance == "Cosine"
    assert master.hnsw == HnswConfig(m=32, ef_construct=200)
    assert master.optimizers == OptimizersConfig(indexing_threshold=10000)
    assert master.quantization is not None
    assert master.quantization.scalar is not None
    assert [(i.field, i.type) for i in master.payload_indexes] == [
        ("camera", "keyword"), ("year", "integer")]
    assert master.metadata == {"owner": "x"}
    assert (master.shard_number, master.replication_factor) == (6, 2)
    assert master.on_disk_payload is True
    assert master.vectors[""].on_disk is True


def test_overrides_replace_what_the_sources_have() -> None:
    overrides = TargetOverrides.model_validate({
        "hnsw": {"efConstruct": 64}, "payloadIndexes": [{"field": "day", "type": "datetime"}],
        "shardNumber": 3, "replicationFactor": 1})
    master = master_collection("m_v1", TEMPLATE, overrides, {})
    assert master.hnsw == HnswConfig(m=16, ef_construct=64)  # m made explicit
    assert [i.field for i in master.payload_indexes] == ["day"]
    assert (master.shard_number, master.replication_factor) == (3, 1)


def test_the_load_defers_hnsw_only_where_the_engine_builds_graphs() -> None:
    final = master_collection("m_v1", TEMPLATE, None, {})
    loading = bulk_load_collection(final, SERVER)
    assert loading.hnsw == HnswConfig(m=0, ef_construct=200)
    assert replace(loading, hnsw=final.hnsw) == final
    assert bulk_load_collection(final, EMBEDDED) == final



@pytest.mark.parametrize(("failures", "seconds"), [
    (1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (40, 3600)])
def test_a_failed_build_is_retried_with_doubling_delays_up_to_an_hour(
        failures: int, seconds: int) -> None:
    assert failed_build_retry_at(NOW, failures) == NOW + dt.timedelta(seconds=seconds)


FACTS = MergeFacts(alias="album_master", alias_target=None, build_name="album_master_v2",
                   build_phase=None)


@pytest.mark.parametrize(("facts", "status", "reason", "message"), [
    (FACTS, "False", "Pending", "no master has been built yet"),
    (replace(FACTS, build_phase="Copying"), "False", "Building",
     "no master behind album_master yet; building album_master_v2 (Copying)"),
    (replace(FACTS, build_phase="Copying", alias_target="album_master_v1"), "True", "Ready",
     "alias album_master -> album_master_v1; building album_master_v2 (Copying)"),
    (replace(FACTS, build_phase="Succeeded", alias_target="album_master_v2"), "True",
     "Ready", "alias album_master -> album_master_v2"),
    (replace(FACTS, build_phase="Failed", failure_reason="SourceMissing",
             build_message="source collection album_2019 does not exist",
             alias_target="album_master_v1", next_retry="2026-01-02T10:31:00Z"), "False",
     "SourceMissing", "build album_master_v2 failed: source collection album_2019 does not "
     "exist; alias album_master -> album_master_v1 still; retrying at 2026-01-02T10:31:00Z"),
    (replace(FACTS, suspended=True, alias_target="album_master_v1", build_phase="Failed"),
     "False", "Suspended",
     "rebuilds and alias changes are suspended; alias album_master -> album_master_v1"),
    (replace(FACTS, rollback_problem=("RollbackTargetMissing", "gone"), suspended=True),
     "False", "RollbackTargetMissing", "gone"),
    (replace(FACTS, rolled_back_to="album_master_v1", alias_target="album_master_v1"),
     "True", "RolledBack", "alias album_master -> album_master_v1 (rollback)"),
    (replace(FACTS, schedule_problem="schedule '0 0 31 2 *' never matches a date",
             alias_target="album_master_v1"),
     "False", "InvalidSchedule", "schedule '0 0 31 2 *' never matches a date"),
    (replace(FACTS, build_phase="Succeeded", alias_target="album_master_v2",
             alias_read_back="album_master_v1"), "False", "SwapNotConfirmed",
     "Qdrant acknowledged moving alias album_master to album_master_v2, but a read of the "
     "alias returned album_master_v1 (a lagging peer or a proxy?); the swap stands, and the "
     "alias is read again until it agrees"),
    (replace(FACTS, rolled_back_to="album_master_v1", alias_target="album_master_v1",
             alias_read_back=""), "False", "SwapNotConfirmed",
     "Qdrant acknowledged moving alias album_master to album_master_v1, but a read of the "
     "alias returned no alias (a lagging peer or a proxy?); the swap stands, and the alias is "
     "read again until it agrees"),
])
def test_ready_is_computed_from_the_state_after_each_step_never_kept(
        facts: MergeFacts, status: str, reason: str, message: str) -> None:
    ready = merge_ready(facts)
    assert (ready.status, ready.reason, ready.message) == (status, reason, message)


@pytest.mark.parametrize(("total", "streams", "min_points", "every"), [
    (200_000, 4, 4096, 6250),  # 32 ranges: each of 4 streams takes about 8
    (50_004, 4, 4096, 4096),  # small sources: a range is still one chunk of pages
    (270, 2, 8, 17),
    (1, 4, 1, 1),
    (10_000, 1, 4096, None),  # one stream (the embedded engine): sources whole
    (0, 4, 4096, None),
])
def test_copy_ranges_are_sized_so_the_streams_finish_together(
        total: int, streams: int, min_points: int, every: int | None) -> None:
    assert copy_range_points(total, streams, min_points) == every


@pytest.mark.parametrize(("applies_sharding", "shard_number", "by_id"), [
    (True, 6, True),  # a sharded server collection: a scroll would read 6 pages per page
    (True, 2, True),
    (True, 1, False),  # one shard: a scroll reads what it returns
    (True, None, False),  # the server's default, one shard
    (False, 6, False),  # the embedded engine has no shards whatever the spec says
])
def test_sharded_collections_are_read_by_id_not_scrolled_whole(
        applies_sharding: bool, shard_number: int | None, by_id: bool) -> None:
    assert reads_by_id(applies_sharding, shard_number) is by_id
