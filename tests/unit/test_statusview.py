"""``album-operator status``'s words, from real objects the API server returned (a MasterMerge
caught mid-build on a Qdrant server, a Ready AlbumCollection) and tables of edge cases."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from album_operator.core.statusview import (
    CollectionFacts,
    EventLine,
    QdrantFacts,
    UnknownKind,
    age,
    overview,
    parse_target,
    progress_bar,
    qdrant_question,
    resolve_kind,
    story,
    when,
)
from album_operator.models.kinds import ALBUM_COLLECTION, EDGE_SNAPSHOT_POLICY, MASTER_MERGE

DATA = Path(__file__).parent / "data"
# the mid-build object's copy started at 10:45:18Z
NOW = dt.datetime(2026, 12, 3, 10, 46, 0, tzinfo=dt.UTC)


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text())
    return loaded


@pytest.mark.parametrize(("word", "kind"), [
    ("mastermerge", "MasterMerge"), ("MasterMerge", "MasterMerge"), ("mm", "MasterMerge"),
    ("mastermerges", "MasterMerge"), ("mastermerges.albumops.io", "MasterMerge"),
    ("ac", "AlbumCollection"), ("AlbumCollections", "AlbumCollection"),
    ("edgesnapshotpolicy", "EdgeSnapshotPolicy"),
])
def test_kinds_are_named_as_kubectl_names_them(word: str, kind: str) -> None:
    assert resolve_kind(word).kind == kind


@pytest.mark.parametrize("target", ["pods/x", "mastermerge", "mastermerge/", "/x", "mm:x"])
def test_a_target_that_is_not_kind_slash_name_is_refused(target: str) -> None:
    with pytest.raises(UnknownKind):
        parse_target(target)


def test_every_kinds_short_names_resolve() -> None:
    for info in (ALBUM_COLLECTION, MASTER_MERGE, EDGE_SNAPSHOT_POLICY):
        for word in info.short_names:
            assert parse_target(f"{word}/x") == (info, "x")


@pytest.mark.parametrize(("moment", "expected"), [
    ("2026-12-03T10:45:55Z", "5s"), ("2026-12-03T10:44:59Z", "1m"),
    ("2026-12-03T09:46:00Z", "60m"), ("2026-12-03T08:46:00Z", "2h"),
    ("2026-11-30T10:46:00Z", "3d"), ("2026-12-03T10:47:00Z", "in 1m"),
    (None, "-"), ("not a time", "-"),
])
def test_ages_read_like_kubectl(moment: str | None, expected: str) -> None:
    assert age(moment, NOW) == expected


def test_when_says_which_side_of_now() -> None:
    assert when("2026-12-03T10:45:00Z", NOW) == "1m ago"
    assert when("2026-12-03T11:46:00Z", NOW) == "in 60m"
    assert when(None, NOW) == "-"


@pytest.mark.parametrize(("done", "total", "expected"), [
    (0, 100, "[------------------------] 0%"), (50, 100, "[############------------] 50%"),
    (100, 100, "[########################] 100%"), (7, 0, "[------------------------] 0%"),
    (150, 100, "[########################] 100%"),
])
def test_progress_bars(done: int, total: int, expected: str) -> None:
    assert progress_bar(done, total) == expected


def section(lines: list[str], title: str) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


def mid_build_story(facts: QdrantFacts | None = None,
                    events: list[EventLine] | None = None) -> list[str]:
    return story(MASTER_MERGE, load("mastermerge_mid_build.json"), events or [],
                 facts or QdrantFacts(where="http://qdrant:6333"), NOW)


def test_a_master_merge_mid_build_shows_its_conditions_progress_and_sources() -> None:
    lines = mid_build_story()
    assert lines[0] == "MasterMerge photos/album-master"
    conditions = section(lines, "Conditions")
    assert conditions[1].split()[:3] == ["TYPE", "STATUS", "REASON"]
    assert conditions[2].split()[:3] == ["Ready", "False", "Building"]
    assert "no master behind album_master yet" in conditions[2]
    assert conditions[3].split()[:3] == ["Building", "True", "Copying"]
    build = section(lines, "Build album_master_v3")
    assert build[0].startswith("Build album_master_v3: Copying, started")
    assert "116,864 / 180,000 points, 1,161 points/s, about 55s left" in build[1]
    assert "65%" in build[1]
    rows = {line.split()[0]: line for line in build[3:]}
    assert rows["album_2017"].split()[1:] == ["20,000", "/", "20,000", "done"]
    assert rows["album_2021"].split()[1:4] == ["18,432", "/", "20,000"]
    assert rows["album_2021"].endswith("92%")
    assert len(rows) == 9


def test_a_source_copied_in_ranges_shows_how_many_are_done() -> None:
    body = load("mastermerge_mid_build.json")
    source = body["status"]["currentBuild"]["sources"][5]
    assert source["name"] == "album_2022"
    source.pop("nextOffset")
    source["ranges"] = [
        {"until": "50006250", "expected": 6250, "copied": 6250, "done": True},
        {"from": "50006250", "until": "50012500", "expected": 6250, "copied": 6250,
         "done": True},
        {"from": "50012500", "expected": 7500, "copied": 5932, "done": False,
         "nextOffset": "50018432"}]
    lines = story(MASTER_MERGE, body, [], QdrantFacts(where="http://qdrant:6333"), NOW)
    rows = {line.split()[0]: line for line in section(lines, "Build album_master_v3")[3:]}
    assert rows["album_2022"].endswith("92%, 2/3 ranges done")
    assert rows["album_2021"].endswith("92%"), "a build planned before ranges"


def test_the_qdrant_section_shows_what_the_server_says() -> None:
    facts = QdrantFacts(where="http://qdrant:6333", aliases={"album_master": ""},
                        collections=[CollectionFacts("album_master_v3", True, 95_872, "yellow"),
                                     CollectionFacts("album_2017", True, 20_000, "green"),
                                     CollectionFacts("album_2099", False)])
    qdrant = section(mid_build_story(facts), "Qdrant")
    assert qdrant[0] == "Qdrant (http://qdrant:6333)"
    assert qdrant[1] == "  alias album_master -> (no such alias)"
    assert qdrant[3].split() == ["album_master_v3", "yes", "95,872", "yellow"]
    assert qdrant[5].split() == ["album_2099", "NO", "-", "-"]


def test_an_unreachable_qdrant_is_one_line() -> None:
    facts = QdrantFacts(where="http://qdrant:6333", problem="unreachable: ConnectError")
    assert section(mid_build_story(facts), "Qdrant") == [
        "Qdrant (http://qdrant:6333)", "  unreachable: ConnectError"]


def test_an_edge_policy_on_a_plain_collection_shows_no_missing_alias() -> None:
    body = {"metadata": {"name": "edge", "namespace": "n"},
            "spec": {"collection": "album_2017"}, "status": {}}
    question = qdrant_question(EDGE_SNAPSHOT_POLICY, body)
    assert question.collections == ("album_2017",)
    assert question.aliases == ("album_2017",)
    facts = QdrantFacts(where="w", aliases={"album_2017": ""},
                        collections=[CollectionFacts("album_2017", True, 5, "green")])
    qdrant = section(story(EDGE_SNAPSHOT_POLICY, body, [], facts, NOW), "Qdrant")
    assert not any("alias" in line for line in qdrant)
    assert qdrant[2].split() == ["album_2017", "yes", "5", "green"]


def test_an_edge_policy_on_an_alias_shows_where_it_points_not_a_missing_collection() -> None:
    body = {"metadata": {"name": "edge", "namespace": "n"},
            "spec": {"collection": "album_master"}, "status": {}}
    facts = QdrantFacts(where="w", aliases={"album_master": "album_master_v2"},
                        collections=[CollectionFacts("album_master", False)])
    qdrant = section(story(EDGE_SNAPSHOT_POLICY, body, [], facts, NOW), "Qdrant")
    assert qdrant == ["Qdrant (w)", "  alias album_master -> album_master_v2"]


def test_the_master_merge_question_asks_for_alias_target_build_and_sources() -> None:
    question = qdrant_question(MASTER_MERGE, load("mastermerge_mid_build.json"))
    assert question.aliases == ("album_master",)
    assert question.collections[0] == "album_master_v3"
    assert question.collections[1:] == tuple(f"album_{year}" for year in range(2017, 2026))


def test_events_are_newest_first_bounded_and_counted() -> None:
    events = [EventLine("Normal", f"R{i}", f"message {i}", f"2026-12-03T10:{i:02d}:00Z")
              for i in range(15)]
    events.append(EventLine("Warning", "Failed", "x  \n  y", "2026-12-03T10:45:30Z", count=3))
    shown = section(mid_build_story(events=events), "Events")
    assert shown[1].split() == ["AGE", "TYPE", "REASON", "MESSAGE"]
    assert shown[2].split() == ["30s", "Warning", "Failed", "(x3)", "x", "y"]
    assert shown[3].split()[2] == "R14"
    assert len(shown) == 2 + 10


def test_no_status_yet_says_the_operator_has_not_written_it() -> None:
    body = {"metadata": {"name": "a", "namespace": "n", "generation": 2}, "spec": {"year": 2020}}
    lines = story(ALBUM_COLLECTION, body, [], QdrantFacts(where="w"), NOW)
    assert lines[1] == "  age -, generation 2, observed - (not yet reconciled)"
    assert "  none yet: the operator has not written status (is it running?)" in lines
    assert "  none (events expire after an hour)" in lines


def test_a_ready_album_collection_shows_its_collection() -> None:
    body = load("albumcollection_ready.json")
    lines = story(ALBUM_COLLECTION, body, [], QdrantFacts(where="w"), NOW)
    collection = section(lines, "Collection")
    assert collection[1].startswith("  album_2017 on the server engine: 20,000 points")
    assert "observed 1" in lines[1]
    assert "not yet reconciled" not in lines[1]


def test_the_namespace_table_has_one_line_per_resource() -> None:
    rows = [(MASTER_MERGE, load("mastermerge_mid_build.json")),
            (ALBUM_COLLECTION, load("albumcollection_ready.json"))]
    lines = overview(rows, NOW, with_namespace=False)
    assert lines[0].split() == ["KIND", "NAME", "READY", "REASON", "AGE", "NOW"]
    assert lines[1].split() == ["MasterMerge", "album-master", "False", "Building", "2m",
                                "album_master_v3:", "Copying", "65%"]
    assert lines[2].split()[:4] == ["AlbumCollection", "album-2017", "True", "Ready"]
    assert lines[2].endswith("album_2017: 20,000 points")
    assert overview([], NOW, with_namespace=True) == [
        "no AlbumCollections, MasterMerges or EdgeSnapshotPolicies found"]


@pytest.mark.parametrize(("catch_up", "expected"), [
    ({"passNumber": 1, "passStartedAt": "2026-12-03T10:45:30Z", "compared": 40000,
      "missing": 12, "changed": 3, "removed": 1},
     "catch-up pass 1, started 30s ago: 40,000 points compared, 12 missing, 3 changed, "
     "1 removed"),
    ({"passNumber": 2, "passStartedAt": "2026-12-03T10:45:50Z", "compared": 180000,
      "snapshot": {"count": 180012, "digest": "ab"}},
     "catch-up pass 2, started 10s ago: 180,000 points compared, 0 missing, 0 changed, "
     "0 removed; caught up at 180,012 points"),
])
def test_a_catching_up_build_shows_its_pass(catch_up: dict[str, Any], expected: str) -> None:
    body = load("mastermerge_mid_build.json")
    body["status"]["currentBuild"] = {**body["status"]["currentBuild"], "phase": "CatchingUp",
                                      "catchUp": catch_up}
    lines = story(MASTER_MERGE, body, [], QdrantFacts(where="http://qdrant:6333"), NOW)
    build = section(lines, "Build album_master_v3")
    assert build[0].startswith("Build album_master_v3: CatchingUp")
    assert build[2] == "  " + expected


def test_a_planned_merge_shows_its_plan_in_one_line() -> None:
    body = load("mastermerge_mid_build.json")
    body["status"]["plan"] = {
        "plannedAt": "2026-12-03T10:45:00Z", "sources": [{"name": "album_2017", "points": 9}],
        "pointsToCopy": 9, "distinctPoints": 9, "collidingIds": 0, "target": "album_master_v3",
        "estimatedDiskBytes": 4096}
    lines = story(MASTER_MERGE, body, [], QdrantFacts(where="http://qdrant:6333"), NOW)
    plan = [line for line in lines if line.startswith("  plan (")]
    assert plan == ["  plan (1m ago): 1 sources, 9 points to copy, 9 distinct, 0 IDs in more "
                    "than one source; target album_master_v3; copy time unknown until a build "
                    "has measured the rate; about 4.0 KiB of vectors and index"]
