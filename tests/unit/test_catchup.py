"""Catch-up decisions over ordered point streams, as tables of cases."""

from __future__ import annotations

import uuid

import pytest

from album_operator.core.catchup import (
    IdSet,
    PassTally,
    after_pass,
    differences,
    latest_union,
    within,
)
from album_operator.core.idstreams import OutOfOrder, PointId

Point = tuple[PointId, str]
U1, U2 = sorted(str(uuid.UUID(int=n)) for n in (7, 99))


def pid(point: Point) -> PointId:
    return point[0]


@pytest.mark.parametrize(("streams", "expected"), [
    ([[]], []),
    ([[(1, "a")], [(2, "b")]], [(1, "a"), (2, "b")]),
    # a shared ID: the later source's version, once
    ([[(1, "a"), (5, "a")], [(5, "b")], [(3, "c")]], [(1, "a"), (3, "c"), (5, "b")]),
    ([[(5, "a")], [(5, "b")], [(5, "c")]], [(5, "c")]),
    # integers before UUIDs, UUIDs in order
    ([[(U2, "a")], [(9, "b"), (U1, "b")]], [(9, "b"), (U1, "b"), (U2, "a")]),
])
def test_latest_union_keeps_the_later_sources_version_in_scroll_order(
        streams: list[list[Point]], expected: list[Point]) -> None:
    names = [f"s{i}" for i in range(len(streams))]
    assert list(latest_union(streams, pid, names)) == expected


def test_a_source_out_of_order_is_refused_not_merged_wrongly() -> None:
    with pytest.raises(OutOfOrder, match="s1"):
        list(latest_union([[(1, "a")], [(4, "b"), (2, "b")]], pid, ["s0", "s1"]))


@pytest.mark.parametrize(("wanted", "held", "expected"), [
    ([], [], []),
    ([(1, "a")], [(1, "a")], []),
    ([(1, "a"), (2, "b")], [(1, "a")], [("missing", 2, (2, "b"))]),
    ([(1, "a")], [(1, "a"), (2, "b")], [("unexpected", 2, None)]),
    ([(1, "new")], [(1, "old")], [("changed", 1, (1, "new"))]),
    ([(1, "a"), (3, "c"), (U1, "u")], [(2, "x"), (3, "c*"), (U2, "v")],
     [("missing", 1, (1, "a")), ("unexpected", 2, None), ("changed", 3, (3, "c")),
      ("missing", U1, (U1, "u")), ("unexpected", U2, None)]),
])
def test_differences_name_what_turns_the_master_into_the_sources(
        wanted: list[Point], held: list[Point],
        expected: list[tuple[str, PointId, Point | None]]) -> None:
    found = differences(wanted, held, pid, lambda a, b: a[1] == b[1])
    assert [(d.kind, d.point_id, d.wanted) for d in found] == expected


def test_an_id_set_digest_ignores_order_and_adds_up_over_chunks() -> None:
    ids: list[PointId] = [3, 1, U1, 2]
    whole = IdSet().with_ids(ids)
    assert whole == IdSet().with_ids(reversed(ids))
    assert whole == IdSet().with_ids(ids[:2]).plus(IdSet().with_ids(ids[2:]))
    assert whole.count == 4
    assert IdSet.decode(whole.encode()) == whole
    assert IdSet().with_ids([1, 2, 3]) != IdSet().with_ids([1, 2, 4])  # same count
    assert IdSet().with_ids([1]) != IdSet().with_ids(["1"])  # an int is not a string


@pytest.mark.parametrize(("repaired", "number", "verdict"), [
    (0, 1, "caught up"),
    (10, 1, "caught up"),
    (11, 1, "another pass"),
    (11, 2, "another pass"),
    (500, 3, "caught up"),  # the last pass allowed: its snapshot is what the master holds
])
def test_passes_repeat_until_one_repairs_little(repaired: int, number: int,
                                               verdict: str) -> None:
    tally = PassTally(number=number, compared=1000, missing=repaired)
    assert after_pass(tally, quiet_points=10, max_passes=3) == verdict


@pytest.mark.parametrize(("point", "after", "bound", "inside"), [
    (1, None, None, True),
    (1, 1, None, False),
    (2, 1, 2, True),
    (3, 1, 2, False),
    (U1, 5, None, True),
    (5, U1, None, False),
])
def test_within_is_above_after_and_up_to_the_bound(point: PointId, after: PointId | None,
                                                   bound: PointId | None, inside: bool) -> None:
    assert within(point, after, bound) is inside
