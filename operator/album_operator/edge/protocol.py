"""The edge device protocol, in one place: routes, headers and limits.

Used by the operator's snapshot endpoint, the ``album-edge`` client and the tests' fake
endpoint, so the three cannot drift apart. ``docs/edge-protocol.md`` describes it for people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

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
MAX_ID = 2**64 - 1
