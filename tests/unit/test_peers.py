"""Which Qdrant peer to ask for each shard, and at which HTTP address (core/peers.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from album_operator.adapters.kube import KubeApi
from album_operator.config import OperatorConfig
from album_operator.core.peers import (
    CONFIGURED,
    DERIVED,
    EXPLICIT,
    Replica,
    ShardRoute,
    cluster_peers,
    normalise_uri,
    parse_grpc_port,
    parse_peer_urls,
    peer_http_url,
    plan_shards,
    replicas,
)
from album_operator.services import default_connection

STS = "http://qdrant.qdrant.svc:6333"  # a Service in front of a StatefulSet
PEERS = {1: "http://qdrant-0.qdrant-headless:6335/", 2: "http://qdrant-1.qdrant-headless:6335/",
         3: "http://qdrant-2.qdrant-headless:6335/"}
LOOPBACK = {1: "http://127.0.0.1:40001/", 2: "http://127.0.0.1:40002/",
            3: "http://127.0.0.1:40003/"}
LOOPBACK_URLS = {"http://127.0.0.1:40001/": "http://127.0.0.1:7001",
                 "http://127.0.0.1:40002": "http://127.0.0.1:7002/",
                 "HTTP://127.0.0.1:40003/": "http://127.0.0.1:7003"}


@pytest.mark.parametrize(("uri", "configured", "peer_urls", "expected"), [
    # a StatefulSet: the pod's DNS name, the configured scheme and HTTP port
    ("http://qdrant-1.qdrant-headless:6335/", "http://qdrant:6333", {},
     ("http://qdrant-1.qdrant-headless:6333", DERIVED)),
    ("http://qdrant-1.qdrant-headless:6335", "https://qdrant.example.com:443/", {},
     ("https://qdrant-1.qdrant-headless:443", DERIVED)),
    # no port configured: the scheme's default
    ("http://qdrant-1.qdrant-headless:6335/", "https://qdrant.example.com", {},
     ("https://qdrant-1.qdrant-headless", DERIVED)),
    ("http://[fd00::7]:6335/", "http://qdrant:6333", {}, ("http://[fd00::7]:6333", DERIVED)),
    # the operator in another namespace: the pod name gets the Service's namespace
    ("http://qdrant-1.qdrant-headless:6335/", "http://qdrant.vectors.svc:6333", {},
     ("http://qdrant-1.qdrant-headless.vectors.svc:6333", DERIVED)),
    ("http://qdrant-1.qdrant-headless:6335/", "https://qdrant.vectors.svc.cluster.local:6333",
     {}, ("https://qdrant-1.qdrant-headless.vectors.svc.cluster.local:6333", DERIVED)),
    # already qualified, an address, a bare name, or no Service name to learn from: as is
    ("http://qdrant-1.qdrant-headless.vectors.svc:6335", "http://qdrant.vectors.svc:6333", {},
     ("http://qdrant-1.qdrant-headless.vectors.svc:6333", DERIVED)),
    ("http://10.1.2.3:6335/", "http://qdrant.vectors.svc:6333", {},
     ("http://10.1.2.3:6333", DERIVED)),
    ("http://qdrant-1:6335/", "http://qdrant.vectors.svc:6333", {},
     ("http://qdrant-1:6333", DERIVED)),
    ("http://qdrant-1.qdrant-headless:6335/", "http://svc.example.com:6333", {},
     ("http://qdrant-1.qdrant-headless:6333", DERIVED)),
    # an explicit entry wins, whatever the trailing slash or case of the URI
    ("http://127.0.0.1:40002/", "http://127.0.0.1:7001",
     parse_peer_urls('{"http://127.0.0.1:40002": "http://127.0.0.1:7002/"}'),
     ("http://127.0.0.1:7002", EXPLICIT)),
    ("http://Qdrant-1:6335/", "http://qdrant:6333",
     parse_peer_urls('{"http://qdrant-1:6335/": "https://q1.example.com"}'),
     ("https://q1.example.com", EXPLICIT)),
    # an entry for another peer does not apply
    ("http://127.0.0.1:40003/", "http://127.0.0.1:7001",
     parse_peer_urls('{"http://127.0.0.1:40002": "http://127.0.0.1:7002"}'),
     ("http://127.0.0.1:7001", DERIVED)),
])
def test_a_peers_http_url(uri: str, configured: str, peer_urls: dict[str, str],
                          expected: tuple[str, str]) -> None:
    assert peer_http_url(uri, configured, peer_urls) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    (None, {}),
    ("", {}),
    ("  ", {}),
    ("{}", {}),
    ('{"http://127.0.0.1:40001/": "http://127.0.0.1:7001/"}',
     {"http://127.0.0.1:40001": "http://127.0.0.1:7001"}),
    ('{"HTTP://Q-0:6335": "https://q0:6333"}', {"http://q-0:6335": "https://q0:6333"}),
])
def test_peer_urls_are_parsed(raw: str | None, expected: dict[str, str]) -> None:
    assert parse_peer_urls(raw) == expected


@pytest.mark.parametrize(("raw", "complaint"), [
    ("not json", "not JSON"),
    ('["http://a:1"]', "JSON object"),
    ('{"http://a:6335": 7}', "not an http.s. URL"),
    ('{"http://a:6335": "a:6333"}', "not an http.s. URL"),
    ('{"qdrant-0": "http://a:6333"}', "not a peer URI"),
])
def test_bad_peer_urls_are_refused(raw: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_peer_urls(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), ("", None), (" ", None), ("6334", 6334), (" 6334\n", 6334), ("1", 1),
    ("65535", 65535),
])
def test_grpc_ports_are_parsed(raw: str | None, expected: int | None) -> None:
    assert parse_grpc_port(raw) == expected


@pytest.mark.parametrize("raw", ["0", "65536", "-1", "63a4", "6334.0", "http://q:6334", "١٢"])
def test_bad_grpc_ports_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="is not a port number"):
        parse_grpc_port(raw)


@pytest.mark.parametrize(("uri", "expected"), [
    ("http://127.0.0.1:40001/", "http://127.0.0.1:40001"),
    ("HTTP://Qdrant-0.Headless:6335", "http://qdrant-0.headless:6335"),
    (" http://q:6335/ ", "http://q:6335"),
])
def test_uris_are_normalised(uri: str, expected: str) -> None:
    assert normalise_uri(uri) == expected


def test_replicas_come_from_local_and_remote_shards() -> None:
    answer = {"peer_id": 7, "shard_count": 3,
              "local_shards": [{"shard_id": 2, "points_count": 5, "state": "Active",
                                "shard_key": "kiosk-a"}],
              "remote_shards": [{"shard_id": 1, "peer_id": 8, "state": "Partial",
                                 "shard_key": 2025},
                                {"shard_id": 0, "peer_id": 9, "state": "Active"}]}
    assert replicas(answer) == [Replica(2, 7, "Active", "kiosk-a"),
                                Replica(1, 8, "Partial", "2025"), Replica(0, 9, "Active")]


@pytest.mark.parametrize(("answer", "expected"), [
    ({"status": "disabled"}, {}),
    ({"status": "enabled", "peer_id": 1,
      "peers": {"1": {"uri": "http://a:6335/"}, "22": {"uri": "http://b:6335/"}}},
     {1: "http://a:6335/", 22: "http://b:6335/"}),
])
def test_cluster_peers(answer: dict[str, Any], expected: dict[int, str]) -> None:
    assert cluster_peers(answer) == expected


THREE = [Replica(0, 2, "Active"), Replica(1, 3, "Active"), Replica(2, 1, "Active")]
CUSTOM = [Replica(1, 3, "Active", "kiosk-a"), Replica(2, 2, "Active", "kiosk-b"),
          Replica(3, 2, "Active", "kiosk-c"), Replica(4, 1, "Active", "kiosk-c")]
REPLICATED = [Replica(0, 3, "Active"), Replica(0, 2, "Active"), Replica(1, 1, "Dead"),
              Replica(1, 3, "Active"), Replica(2, 1, "Partial"), Replica(2, 2, "Dead")]


def sts(shard: int, peer: int, key: str | None = None) -> ShardRoute:
    return ShardRoute(shard, f"http://qdrant-{peer - 1}.qdrant-headless.qdrant.svc:6333",
                      DERIVED, key, peer, PEERS[peer])


@pytest.mark.parametrize(("found", "peers", "configured", "peer_urls", "shards", "keys",
                          "routes", "missing", "unavailable"), [
    # one node, cluster mode off: every shard at the configured URL
    ([Replica(0, 5, "Active"), Replica(1, 5, "Active")], {}, "http://q:6333/", {}, None,
     None, [ShardRoute(0, "http://q:6333", CONFIGURED), ShardRoute(1, "http://q:6333",
                                                                    CONFIGURED)], [], []),
    # a StatefulSet: each shard from the pod that holds it, derived addresses
    (THREE, PEERS, STS, {}, None, None, [sts(0, 2), sts(1, 3), sts(2, 1)], [], []),
    (THREE, PEERS, STS, {}, [2, 7], None, [sts(2, 1)], ["shard 7"], []),
    # loopback: explicit peerUrls per peer
    (THREE, LOOPBACK, "http://127.0.0.1:7001", parse_peer_urls(str(LOOPBACK_URLS).replace(
        "'", '"')), None, None,
     [ShardRoute(0, "http://127.0.0.1:7002", EXPLICIT, None, 2, LOOPBACK[2]),
      ShardRoute(1, "http://127.0.0.1:7003", EXPLICIT, None, 3, LOOPBACK[3]),
      ShardRoute(2, "http://127.0.0.1:7001", EXPLICIT, None, 1, LOOPBACK[1])], [], []),
    # loopback without peerUrls: every peer derives the same address; refused, not guessed
    (THREE, LOOPBACK, "http://127.0.0.1:7001", {}, [0], None, [], [],
     ["shard 0 is on peer 2 (http://127.0.0.1:40002/), whose HTTP address "
      "http://127.0.0.1:7001 (derived from the peer's URI) is also peer 1's: add its URI "
      "to the connection Secret's peerUrls"]),
    # custom sharding: a key's shards (one or several), unknown keys reported
    (CUSTOM, PEERS, STS, {}, None, ["kiosk-b"], [sts(2, 2, "kiosk-b")], [], []),
    (CUSTOM, PEERS, STS, {}, None, ["kiosk-c", "nobody"],
     [sts(3, 2, "kiosk-c"), sts(4, 1, "kiosk-c")], ["shard key 'nobody'"], []),
    # replicas: the Active one on the lowest peer id; no Active replica is reported
    (REPLICATED, PEERS, STS, {}, None, None, [sts(0, 2), sts(1, 3)], [],
     ["shard 2 has no Active replica (peer 1: Partial, peer 2: Dead)"]),
    # a peer the cluster does not list
    ([Replica(0, 99, "Active")], PEERS, STS, {}, None, None, [], [],
     ["shard 0 is on peer 99, which GET /cluster does not list"]),
])
def test_shards_are_planned(found: list[Replica], peers: dict[int, str], configured: str,
                            peer_urls: dict[str, str], shards: list[int] | None,
                            keys: list[str] | None, routes: list[ShardRoute],
                            missing: list[str], unavailable: list[str]) -> None:
    plan = plan_shards(found, peers, configured, peer_urls, shards, keys)
    assert list(plan.routes) == routes
    assert list(plan.missing) == missing
    assert list(plan.unavailable) == unavailable


def test_a_route_says_where_it_asks() -> None:
    assert sts(2, 2, "kiosk-b").describe() == (
        "shard 2 (key kiosk-b) on peer 2 (http://qdrant-1.qdrant-headless:6335/) at "
        "http://qdrant-1.qdrant-headless.qdrant.svc:6333, derived from the peer's URI")
    assert ShardRoute(0, "http://q:6333", CONFIGURED).describe() == "shard 0 at http://q:6333"


def test_the_operator_wide_connection_takes_qdrant_peer_urls() -> None:
    """``QDRANT_URL`` + ``QDRANT_PEER_URLS``: the same mapping as a Secret's ``peerUrls``."""
    config = OperatorConfig(qdrant_url="http://qdrant:6333",
                            qdrant_peer_urls='{"http://qdrant-0:6335/": "http://10.0.0.5:6333"}')
    settings = asyncio.run(default_connection(config, cast("KubeApi", None)))
    assert settings.peer_urls == {"http://qdrant-0:6335": "http://10.0.0.5:6333"}
    plain = asyncio.run(default_connection(OperatorConfig(qdrant_url="http://qdrant:6333"),
                                           cast("KubeApi", None)))
    assert settings.identity() != plain.identity()
    with pytest.raises(ValueError, match="QDRANT_PEER_URLS: not JSON"):
        asyncio.run(default_connection(OperatorConfig(qdrant_url="http://q:6333",
                                                      qdrant_peer_urls="{"),
                                       cast("KubeApi", None)))
