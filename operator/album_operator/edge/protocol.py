"""The edge device protocol, in one place: routes, headers and limits.

Used by the operator's snapshot endpoint, the ``album-edge`` client and the tests' fake
endpoint, so the three cannot drift apart. ``docs/edge-protocol.md`` describes it for people.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from album_operator.core.edge_points import (
    FLOAT32_MAX,
    MAX_ID,
    MAX_PAYLOAD_BYTES,
    MAX_PAYLOAD_DEPTH,
    UNNAMED,
    Layout,
    PointId,
    PointRejected,
    ValidPoint,
    Vector,
    check_point,
    check_vector,
    echo_id,
    normalise_id,
    parse_payload,
    parse_point,
    parse_vector,
)

API_PREFIX = "/v1/namespaces/{namespace}/policies/{policy}"

Action = Literal["list", "full", "partial", "points"]


@dataclass(frozen=True)
class Route:
    method: Literal["GET", "POST"]
    action: Action
    tail: str
    """The path after ``API_PREFIX``; ``{shard}`` is a shard id."""

    def path(self, namespace: str, policy: str, shard: int | None = None) -> str:
        prefix = API_PREFIX.format(namespace=namespace, policy=policy)
        return prefix + self.tail.format(shard=shard)


LIST = Route("GET", "list", "/snapshots")
FULL = Route("GET", "full", "/shards/{shard}/snapshot")
PARTIAL = Route("POST", "partial", "/shards/{shard}/partial")
POINTS = Route("POST", "points", "/points")
ROUTES = (LIST, FULL, PARTIAL, POINTS)

NAMESPACE_PATTERN = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
POLICY_PATTERN = r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?"
SHARD_PATTERN = r"[0-9]{1,9}"
_MATCHERS = tuple(
    (route, re.compile(
        "^" + API_PREFIX.format(namespace=f"(?P<namespace>{NAMESPACE_PATTERN})",
                                policy=f"(?P<policy>{POLICY_PATTERN})")
        + route.tail.format(shard=f"(?P<shard>{SHARD_PATTERN})") + "$"))
    for route in ROUTES)


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    namespace: str
    policy: str
    shard: int | None


def match_route(method: str, path: str) -> RouteMatch | None:
    """The route a request names, or None (404)."""
    for route, pattern in _MATCHERS:
        found = pattern.match(path)
        if found is not None and route.method == method:
            shard = found.groupdict().get("shard")
            return RouteMatch(route, found["namespace"], found["policy"],
                              None if shard is None else int(shard))
    return None


# Headers
AUTHORIZATION = "Authorization"
BEARER = "Bearer "
SNAPSHOT_NAME = "X-Snapshot-Name"
SNAPSHOT_SHA256 = "X-Snapshot-Sha256"
FULL_SIZE_BYTES = "X-Full-Size-Bytes"
TAR = "application/x-tar"
JSON = "application/json"

# Limits: what a device may send. The endpoint refuses more before reading it.
MAX_MANIFEST_BYTES = 4 << 20
MAX_POINTS_BODY_BYTES = 64 << 20
MAX_JSON_DEPTH = 32
# MAX_ID (2^64-1), MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH and FLOAT32_MAX: the point rules
# limits, defined with the rules in album_operator.core.edge_points.


# POST /points. Each point is validated on its own with check_point (the device before it
# queues a point, the endpoint against the routed collection's layout): a bad point is
# rejected with its reason, the others are upserted. Answer 200:
#   {"accepted": [id, ...], "rejected": [{"id", "index", "reason"}, ...]}
# ``id`` is normalised (lower-case UUID) for accepted points; for rejected ones it is what
# the device sent when usable (see echo_id), else null; ``index`` is the point's position
# in the request, so a device can match a rejection whose ID it cannot read.
# A point neither accepted nor rejected was not settled (retry it). 4xx only when the
# request as a whole is malformed (400), too many points (413) or uploads are off (409);
# 503 only when Qdrant cannot take writes right now.
POINTS_KEY = "points"
ACCEPTED_KEY = "accepted"
REJECTED_KEY = "rejected"


class MalformedRequest(ValueError):
    """The whole ``POST /points`` body is unusable (answer 400)."""


def points_of(body: object) -> list[Any]:
    """The points of a ``POST /points`` body, or MalformedRequest."""
    points = body.get(POINTS_KEY) if isinstance(body, dict) else None
    if not isinstance(points, list):
        raise MalformedRequest('the body must be {"points": [...]}')
    return points


def rejection(index: int, raw_id: object, reason: str) -> dict[str, Any]:
    return {"id": echo_id(raw_id), "index": index, "reason": reason}


def points_answer(accepted: Iterable[PointId], rejected: Iterable[Mapping[str, Any]]
                  ) -> dict[str, Any]:
    return {ACCEPTED_KEY: list(accepted), REJECTED_KEY: list(rejected)}


def layout_of(vectors: Mapping[str, Mapping[str, Any]]) -> Layout:
    """``GET /snapshots``' ``vectors`` (``{name: {"size", "distance"}}``) as a Layout."""
    return {str(name): int(spec["size"]) for name, spec in vectors.items()}


__all__ = [
    "ACCEPTED_KEY", "API_PREFIX", "AUTHORIZATION", "BEARER", "FLOAT32_MAX", "FULL",
    "FULL_SIZE_BYTES", "JSON", "LIST", "MAX_ID", "MAX_JSON_DEPTH", "MAX_MANIFEST_BYTES",
    "MAX_PAYLOAD_BYTES", "MAX_PAYLOAD_DEPTH", "MAX_POINTS_BODY_BYTES", "NAMESPACE_PATTERN",
    "PARTIAL", "POINTS", "POINTS_KEY", "POLICY_PATTERN", "REJECTED_KEY", "ROUTES",
    "SHARD_PATTERN", "SNAPSHOT_NAME", "SNAPSHOT_SHA256", "TAR", "UNNAMED", "Action", "Layout",
    "MalformedRequest", "PointId", "PointRejected", "Route", "RouteMatch", "ValidPoint",
    "Vector", "check_point", "check_vector", "echo_id", "layout_of", "match_route",
    "normalise_id", "parse_payload", "parse_point", "parse_vector", "points_answer",
    "points_of", "rejection",
]
