"""Point parsing, IDs, layout checks and the local-over-mirror merge, as pure functions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from album_operator.edge.points import (
    EdgePoint,
    Hit,
    VectorSpec,
    check_point,
    id_key,
    layout_from_json,
    merge_hits,
    normalise_id,
    parse_jsonl,
    same_content,
)

UUID = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"


@pytest.mark.parametrize(("raw", "expected"), [
    (0, 0), (7, 7), (2**64 - 1, 2**64 - 1), (UUID, UUID.lower()), (UUID.lower(), UUID.lower()),
])
def test_ids_are_unsigned_integers_or_canonical_uuids(raw: object, expected: object) -> None:
    assert normalise_id(raw) == expected


@pytest.mark.parametrize("raw", [-1, 2**64, True, 1.5, "7", "not-a-uuid", None, [1],
                                 "{" + UUID + "}", UUID.replace("-", ""), "urn:uuid:" + UUID])
def test_other_ids_are_refused(raw: object) -> None:
    with pytest.raises(ValueError, match=r"point ID|outside|boolean"):
        normalise_id(raw)


def test_id_keys_match_the_spellings_an_endpoint_may_answer() -> None:
    assert id_key(UUID) == id_key(UUID.lower()) == UUID.lower()
    assert id_key(5) == "5"


def test_points_parse_from_json_lines_and_round_trip() -> None:
    lines = ['{"id": 1, "vector": [1, 2.5], "payload": {"a": 1}}', "",
             f'{{"id": "{UUID}", "vector": {{"img": [0.5]}}}}']
    points = list(parse_jsonl(lines))
    assert points == [EdgePoint(1, [1.0, 2.5], {"a": 1}),
                      EdgePoint(UUID.lower(), {"img": [0.5]}, {})]
    assert EdgePoint.from_json(points[1].to_json()) == points[1]
    assert points[0].dumps() == '{"id":1,"vector":[1.0,2.5],"payload":{"a":1}}'


@pytest.mark.parametrize(("line", "message"), [
    ('{"vector": [1]}', "needs"), ('{"id": 1}', "needs"), ('{"id": 1, "vector": []}', "non-empty"),
    ('{"id": 1, "vector": [true]}', "not a number"), ('{"id": 1, "vector": ["x"]}', "not a number"),
    ('{"id": 1, "vector": [1], "payload": [1]}', "payload"),
    ('{"id": 1, "vector": [1], "extra": 1}', "unknown"), ("[1, 2]", "JSON object"),
    ('{"id": -3, "vector": [1]}', "outside"), ("{not json", "line 1"),
])
def test_bad_lines_are_refused_with_their_line_number(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        list(parse_jsonl([line]))
    assert "line 1" in str(caught.value)


LAYOUT = {"": VectorSpec(3, "Cosine")}
NAMED = {"img": VectorSpec(2, "Euclid"), "txt": VectorSpec(4, "Dot")}


@pytest.mark.parametrize(("point", "layout", "problem"), [
    (EdgePoint(1, [1.0, 2.0, 3.0]), LAYOUT, None),
    (EdgePoint(1, {"": [1.0, 2.0, 3.0]}), LAYOUT, "send a list"),
    (EdgePoint(1, [1.0, 2.0]), LAYOUT, "2 dimensions"),
    (EdgePoint(1, {"img": [1.0, 2.0]}), NAMED, "'txt' is missing"),
    (EdgePoint(1, {"img": [1.0, 2.0], "txt": [1.0] * 4}), NAMED, None),
    (EdgePoint(1, {"img": [1.0], "txt": [1.0] * 4}), NAMED, "1 dimensions"),
    (EdgePoint(2**64, [1.0, 2.0, 3.0]), LAYOUT, "outside"),  # built by hand: still checked
    (EdgePoint(1, [1.0, float("nan"), 3.0]), LAYOUT, "not a finite number"),
    (EdgePoint(1, [1.0, 2.0]), NAMED, "unnamed vector"),
    (EdgePoint(1, {"audio": [1.0]}), NAMED, "'audio'"),
])
def test_points_are_checked_against_the_layout(point: EdgePoint, layout: dict[str, VectorSpec],
                                               problem: str | None) -> None:
    reason = check_point(point, layout)
    if problem is None:
        assert reason is None
    else:
        assert reason is not None
        assert problem in reason


def test_layouts_parse_from_the_listing() -> None:
    assert layout_from_json({"": {"size": 512, "distance": "Cosine"}}) == {
        "": VectorSpec(512, "Cosine")}
    for bad in ({}, {"": {"size": 0, "distance": "Cosine"}},
                {"": {"size": 3, "distance": "Hamming"}}):
        with pytest.raises(ValueError, match="vector"):
            layout_from_json(bad)
    assert VectorSpec(3, "euclid").higher_is_better is False
    assert VectorSpec(3, "Dot").higher_is_better is True


def _hits(source: str, *pairs: tuple[int, float]) -> list[Hit]:
    return [Hit(i, s, {}, source) for i, s in pairs]  # type: ignore[arg-type]


@pytest.mark.parametrize(("local", "mirror", "shadowed", "higher", "expected"), [
    # the mirror's 1 is shadowed even though the local 1 scores far lower
    ([(1, 0.1)], [(1, 0.9), (2, 0.8), (3, 0.7)], {"1"}, True, [(2, "mirror"), (3, "mirror")]),
    ([(1, 0.95)], [(1, 0.9), (2, 0.8)], {"1"}, True, [(1, "local"), (2, "mirror")]),
    ([(4, 0.8)], [(2, 0.8), (3, 0.7)], set(), True, [(4, "local"), (2, "mirror")]),
    # distances: lower is better
    ([(9, 0.5)], [(2, 0.1), (3, 0.7)], set(), False, [(2, "mirror"), (9, "local")]),
    ([], [(2, 0.1)], {"7"}, True, [(2, "mirror")]),
])
def test_local_hits_shadow_the_mirror(local: list[tuple[int, float]],
                                      mirror: list[tuple[int, float]], shadowed: set[str],
                                      higher: bool, expected: list[tuple[int, str]]) -> None:
    merged = merge_hits(_hits("local", *local), _hits("mirror", *mirror), shadowed, 2, higher)
    assert [(hit.id, hit.source) for hit in merged] == expected


@dataclass(frozen=True)
class Stored:
    payload: object
    vector: object


@pytest.mark.parametrize(("mine", "theirs", "same"), [
    (({"a": 1}, [0.6, 0.8]), ({"a": 1}, [0.6, 0.8]), True),
    (({"a": 1}, [0.6, 0.8]), ({"a": 1}, [0.6 + 1e-9, 0.8]), True),   # float noise
    (({"a": 1}, [0.6, 0.8]), ({"a": 1}, {"": [0.6, 0.8]}), True),    # unnamed, both spellings
    ((None, [0.6, 0.8]), ({}, [0.6, 0.8]), True),
    (({"a": 1}, [0.6, 0.8]), ({"a": 2}, [0.6, 0.8]), False),
    (({"a": 1}, [0.6, 0.8]), ({"a": 1}, [0.8, 0.6]), False),
    (({"a": 1}, [0.6, 0.8]), ({"a": 1}, [0.6, 0.8, 0.0]), False),
    (({}, {"img": [1.0], "txt": [2.0]}), ({}, {"img": [1.0]}), False),
    (({}, {"img": [1.0], "txt": [2.0]}), ({}, {"txt": [2.0], "img": [1.0]}), True),
    (({}, {"img": [3.0, 4.0]}), ({}, {"img": [0.6, 0.8]}), True),     # cosine: direction only
    (({}, {"txt": [3.0, 4.0]}), ({}, {"txt": [0.6, 0.8]}), False),    # Dot: the scale counts
])
def test_same_content(mine: tuple[object, object], theirs: tuple[object, object],
                      same: bool) -> None:
    assert same_content(Stored(*mine), Stored(*theirs), cosine=frozenset({"", "img"})) is same
