"""The protocol's point rules (``core/edge_points.py`` via ``edge/protocol.py``): the one
check the endpoint, the fake endpoint and ``album-edge`` all make, as tables of cases."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from album_operator.edge import protocol
from album_operator.edge.protocol import (
    MAX_PAYLOAD_BYTES,
    MAX_PAYLOAD_DEPTH,
    Layout,
    PointRejected,
    check_point,
    normalise_id,
)

UUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
UNNAMED: Layout = {"": 3}
NAMED: Layout = {"img": 2, "txt": 3}


@pytest.mark.parametrize(("raw", "expected"), [
    (0, 0),
    (2**64 - 1, 2**64 - 1),
    (UUID, UUID),
    (UUID.upper(), UUID),                       # either case, answered in lower case
    (uuid.UUID(UUID), UUID),                    # a Python caller's UUID object
])
def test_accepted_ids(raw: object, expected: object) -> None:
    assert normalise_id(raw) == expected


@pytest.mark.parametrize(("raw", "reason"), [
    (-1, "outside 0..2^64-1"),
    (2**64, "outside 0..2^64-1"),
    (True, "not a boolean"),
    (False, "not a boolean"),
    (1.5, "got 1.5"),
    (1.0, "got 1.0"),
    ("7", "got '7'"),
    ("not-a-uuid", "got 'not-a-uuid'"),
    ("{" + UUID + "}", "got '{"),               # braced
    ("urn:uuid:" + UUID, "got 'urn:uuid:"),     # URN
    (UUID.replace("-", ""), "got '3f25"),       # 32 hex digits, no hyphens
    (UUID[:-1] + "g", "got"),
    (None, "got None"),
    ([1], "got [1]"),
])
def test_refused_ids(raw: object, reason: str) -> None:
    with pytest.raises(PointRejected, match=r"a point ID is an integer in 0\.\.2") as caught:
        normalise_id(raw)
    assert reason in str(caught.value)


def _point(vector: Any, payload: Any = None, point_id: Any = 1) -> dict[str, Any]:
    point = {"id": point_id, "vector": vector}
    if payload is not None:
        point["payload"] = payload
    return point


@pytest.mark.parametrize(("vector", "layout"), [
    ([1, 2.5, -3], UNNAMED),
    ([3.4028234663852886e38, -3.4028234663852886e38, 0.0], UNNAMED),   # float32's extremes
    ([1e-50, 0, 0], UNNAMED),                                          # underflow is fine
    ({"img": [1, 2], "txt": [1, 2, 3]}, NAMED),
])
def test_vectors_that_fit(vector: Any, layout: Layout) -> None:
    point = check_point(_point(vector), layout)
    assert all(isinstance(v, float) for values in (
        point.vector.values() if isinstance(point.vector, dict) else [point.vector])
        for v in values)


@pytest.mark.parametrize(("vector", "layout", "reason"), [
    ([1, float("nan"), 3], UNNAMED, "[1] is nan, not a finite number"),
    ([float("inf"), 2, 3], UNNAMED, "[0] is inf, not a finite number"),
    ([1, 2, float("-inf")], UNNAMED, "[2] is -inf, not a finite number"),
    ([1e39, 2, 3], UNNAMED, "overflows a float32"),
    ([1, -1e39, 3], UNNAMED, "overflows a float32"),
    ([10**400, 2, 3], UNNAMED, "overflows a float32"),                 # a huge JSON integer
    ([1, 2], UNNAMED, "has 2 dimensions, the collection's has 3"),
    ([1, 2, 3, 4], UNNAMED, "has 4 dimensions"),
    ([], UNNAMED, "non-empty list"),
    ([1, "2", 3], UNNAMED, "[1] is '2', not a number"),
    ([1, True, 3], UNNAMED, "[1] is True, not a number"),
    ([1, None, 3], UNNAMED, "not a number"),
    ([[1], [2], [3]], UNNAMED, "not a number"),
    ("1,2,3", UNNAMED, "non-empty list of numbers"),
    (None, UNNAMED, "non-empty list of numbers"),
    ({"": [1, 2, 3]}, UNNAMED, "send a list"),                         # dict for unnamed
    ({"img": [1, 2, 3]}, UNNAMED, "send a list"),
    ([1, 2], NAMED, "not an unnamed vector"),                          # list for named
    ({"img": [1, 2], "txt": [1, 2, 3], "audio": [1]}, NAMED, "unknown vector 'audio'"),
    ({"img": [1, 2]}, NAMED, "vector 'txt' is missing"),
    ({"img": [1, 2], "txt": [1, 2]}, NAMED, "vector 'txt' has 2 dimensions"),
    ({"img": [1, float("nan")], "txt": [1, 2, 3]}, NAMED, "vector 'img'[1] is nan"),
    ({"img": "x", "txt": [1, 2, 3]}, NAMED, "vector 'img' must be a non-empty list"),
    ({}, NAMED, "at least one vector"),
])
def test_vectors_that_do_not(vector: Any, layout: Layout, reason: str) -> None:
    with pytest.raises(PointRejected) as caught:
        check_point(_point(vector), layout)
    assert reason in str(caught.value)


def _nested(depth: int) -> dict[str, Any]:
    """A payload ``depth`` levels deep (the payload object itself is level 1)."""
    payload: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        payload = {"a": payload}
    return payload


def _sized(size: int) -> dict[str, Any]:
    """A payload whose compact JSON is exactly ``size`` bytes."""
    payload = {"s": ""}
    overhead = len(json.dumps(payload, separators=(",", ":")))
    return {"s": "x" * (size - overhead)}


@pytest.mark.parametrize("payload", [
    None, {}, {"year": 2025, "tags": ["a", "b"], "nested": {"x": [1, {"y": None}]}},
    _nested(MAX_PAYLOAD_DEPTH), _sized(MAX_PAYLOAD_BYTES), {"n": -(2**63)}, {"n": 2**64 - 1},
    {"text": "héllo ✓"},
])
def test_payloads_that_fit(payload: Any) -> None:
    assert check_point(_point([1, 2, 3], payload), UNNAMED).payload == (payload or {})


@pytest.mark.parametrize(("payload", "reason"), [
    ([1, 2], "payload must be a JSON object"),
    ("text", "payload must be a JSON object"),
    (7, "payload must be a JSON object"),
    (_nested(MAX_PAYLOAD_DEPTH + 1), f"nested deeper than {MAX_PAYLOAD_DEPTH} levels"),
    (_nested(5000), "nested deeper"),                                  # no recursion error
    ({"list": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}, "nested deeper"),
    (_sized(MAX_PAYLOAD_BYTES + 1), f"more than {MAX_PAYLOAD_BYTES}"),
    ({"s": "✓" * (MAX_PAYLOAD_BYTES // 3 + 1)}, "bytes of JSON"),      # counted in UTF-8
    ({"f": float("nan")}, "not valid JSON"),
    ({"f": float("inf")}, "not valid JSON"),
    ({"s": "\ud800"}, "not valid JSON"),                               # a lone surrogate
    ({"\udfff": 1}, "not valid JSON"),
    ({"n": 2**64}, "outside -2^63..2^64-1"),
    ({"n": [-(2**63) - 1]}, "outside -2^63..2^64-1"),
    ({"b": b"bytes"}, "payload is not JSON"),                          # a Python caller's
])
def test_payloads_that_do_not(payload: Any, reason: str) -> None:
    with pytest.raises(PointRejected) as caught:
        check_point(_point([1, 2, 3], payload), UNNAMED)
    assert reason in str(caught.value)


@pytest.mark.parametrize(("raw", "reason"), [
    ("a point", "a point is a JSON object"),
    ([1, [1, 2, 3]], "a point is a JSON object"),
    ({"vector": [1, 2, 3]}, 'needs "id" and "vector"'),
    ({"id": 1}, 'needs "id" and "vector"'),
    ({"id": 1, "vector": [1, 2, 3], "vectors": {}}, "unknown point fields: ['vectors']"),
])
def test_points_that_are_not_points(raw: object, reason: str) -> None:
    with pytest.raises(PointRejected) as caught:
        check_point(raw, UNNAMED)
    assert reason in str(caught.value)


def test_a_body_from_json_text_is_judged_the_same() -> None:
    """What the endpoint parses: ``1e400`` and ``Infinity`` become inf, ``NaN`` nan."""
    body = json.loads('{"points": [{"id": 1, "vector": [1e400, 0, 0]},'
                      ' {"id": 2, "vector": [Infinity, 0, 0]},'
                      ' {"id": 3, "vector": [NaN, 0, 0]},'
                      ' {"id": 18446744073709551616, "vector": [0, 0, 0]},'
                      ' {"id": 4, "vector": [0, 0, 0]}]}')
    verdicts = []
    for raw in protocol.points_of(body):
        try:
            verdicts.append(check_point(raw, UNNAMED).id)
        except PointRejected as error:
            verdicts.append(str(error).split(";")[-1].strip()[:22])
    assert verdicts == ["the unnamed vector[0] ", "the unnamed vector[0] ",
                        "the unnamed vector[0] ", "18446744073709551616 i", 4]


@pytest.mark.parametrize("body", [None, [], {"points": {}}, {"point": []}, "points"])
def test_malformed_bodies(body: object) -> None:
    with pytest.raises(protocol.MalformedRequest):
        protocol.points_of(body)


def test_rejections_name_the_point_by_id_and_position() -> None:
    assert protocol.rejection(3, UUID.upper(), "bad") == {"id": UUID, "index": 3,
                                                          "reason": "bad"}
    assert protocol.rejection(0, 2**64, "bad")["id"] == 2**64
    assert protocol.rejection(0, "x" * 101, "bad")["id"] is None
    assert protocol.rejection(0, {"a": 1}, "bad")["id"] is None
    assert protocol.rejection(0, True, "bad")["id"] is None
