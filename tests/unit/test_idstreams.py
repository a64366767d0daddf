"""Constant-memory ID-set decisions over streams in Qdrant's scroll order."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable

import pytest

from album_operator.core.idstreams import (
    Collision,
    IdRange,
    OutOfOrder,
    PointId,
    RangeCutter,
    Reservoir,
    collision_message,
    compare_ids,
    distinct_union,
    id_order_key,
    precedes,
    scan_collisions,
)

U1, U2, U3 = sorted(str(uuid.UUID(int=n)) for n in (7, 300, 2**100))


def test_integers_come_before_uuids_in_scroll_order() -> None:
    ids: list[PointId] = [U2, 10**12, U1, 3, 0]
    assert sorted(ids, key=id_order_key) == [0, 3, 10**12, U1, U2]


@pytest.mark.parametrize(("streams", "distinct", "colliding", "examples"), [
    ([("a", [1, 2, 3]), ("b", [4, 5])], 5, 0, ()),
    ([("a", [1, 2, 3]), ("b", [3, 4]), ("c", [1, 3, 5])], 5, 2,
     (Collision(1, ("a", "c")), Collision(3, ("a", "b", "c")))),
    ([("a", [1, U1]), ("b", [2, U1, U3])], 4, 1, (Collision(U1, ("a", "b")),)),
    ([("a", []), ("b", [])], 0, 0, ()),
    ([("a", [5])], 1, 0, ()),
])
def test_collision_scan(streams: list[tuple[str, list[PointId]]], distinct: int,
                        colliding: int, examples: tuple[Collision, ...]) -> None:
    scan = scan_collisions(streams)
    assert (scan.distinct, scan.colliding_ids, scan.examples) == (distinct, colliding,
                                                                    examples)


def test_the_collision_message_gives_a_few_examples_and_a_count() -> None:
    scan = scan_collisions([("a", range(8)), ("b", range(8))], examples=2)
    assert collision_message(scan) == (
        "8 point IDs appear in more than one source: 0 (a & b), 1 (a & b) and 6 more")


def test_a_stream_out_of_scroll_order_is_refused_not_misread() -> None:
    with pytest.raises(OutOfOrder, match="b returned 2"):
        scan_collisions([("a", [1, 2]), ("b", [3, 2])])
    with pytest.raises(OutOfOrder):
        scan_collisions([("a", [U1, 4])])


def test_the_union_is_distinct_and_ordered() -> None:
    assert list(distinct_union([("a", [1, 4, U2]), ("b", [2, 4, U1, U2])])) == [
        1, 2, 4, U1, U2]


@pytest.mark.parametrize(("expected", "actual", "counts", "equal"), [
    ([1, 2, 3], [1, 2, 3], (3, 0, 0), True),
    ([1, 2, 3], [1, 3], (3, 1, 0), False),
    ([1, 3], [1, 2, 3, U1], (2, 0, 2), False),
    ([], [], (0, 0, 0), True),
    ([1, U1], [2, U2], (2, 2, 2), False),
])
def test_id_set_comparison(expected: list[PointId], actual: list[PointId],
                           counts: tuple[int, int, int], equal: bool) -> None:
    diff = compare_ids(expected, actual)
    assert (diff.expected, diff.missing, diff.unexpected) == counts
    assert diff.equal is equal


def test_differences_name_examples() -> None:
    diff = compare_ids([1, 2, 3, 4], [1, 5], examples=2)
    assert diff.examples == ("missing 2", "missing 3")


def streamed(n: int) -> Iterable[int]:
    yield from range(n)


def test_the_reservoir_keeps_everything_when_the_stream_is_short() -> None:
    reservoir: Reservoir[int] = Reservoir(10, random.Random(0))
    assert list(reservoir.tap(streamed(4))) == [0, 1, 2, 3]
    assert reservoir.items == [0, 1, 2, 3]


def test_the_reservoir_samples_uniformly_from_a_long_stream() -> None:
    hits = [0] * 100
    for seed in range(400):
        reservoir: Reservoir[int] = Reservoir(10, random.Random(seed))
        for item in streamed(100):
            reservoir.offer(item)
        assert len(set(reservoir.items)) == 10
        for item in reservoir.items:
            hits[item] += 1
    # each item is expected 40 times; a biased sampler (first or last items) is far off
    assert min(hits) > 15
    assert max(hits) < 70
    assert sum(hits[:50]) == pytest.approx(sum(hits[50:]), rel=0.15)


@pytest.mark.parametrize(("point_id", "bound", "before"), [
    (3, None, True), (3, 4, True), (4, 4, False), (5, 4, False), (10**12, U1, True),
    (U1, 10**12, False), (U1, U2, True), (U2, U2.upper(), False), (U2, U1, False)])
def test_precedes_follows_scroll_order(point_id: PointId, bound: PointId | None,
                                       before: bool) -> None:
    assert precedes(point_id, bound) is before


@pytest.mark.parametrize(("ids", "every", "ranges"), [
    ([], 2, [IdRange(None, None, 0)]),
    ([5], 2, [IdRange(None, None, 1)]),
    ([1, 2, 3, 4], 2, [IdRange(None, 3, 2), IdRange(3, None, 2)]),
    ([1, 2, 3, 4, 9], 2, [IdRange(None, 3, 2), IdRange(3, 9, 2), IdRange(9, None, 1)]),
    ([7, 8, U1, U2], 3, [IdRange(None, U2, 3), IdRange(U2, None, 1)]),
    ([1, 2, 3], None, [IdRange(None, None, 3)]),
    ([1, 2, 3], 1, [IdRange(None, 2, 1), IdRange(2, 3, 1), IdRange(3, None, 1)]),
])
def test_a_cutter_cuts_a_stream_into_ranges_that_cover_every_id(
        ids: list[PointId], every: int | None, ranges: list[IdRange]) -> None:
    cutter = RangeCutter(every)
    assert list(cutter.tap(ids)) == ids, "the stream passes through unchanged"
    assert cutter.ranges == ranges
    assert sum(r.expected for r in ranges) == len(ids)
    for point_id in ids:  # each ID in exactly one range
        assert sum(1 for r in ranges if (r.start is None or not precedes(point_id, r.start))
                   and precedes(point_id, r.until)) == 1


def test_a_range_holds_at_least_one_id() -> None:
    with pytest.raises(ValueError, match="at least one ID"):
        RangeCutter(0)
