"""Which Qdrant peer holds each shard, and the HTTP address to ask it at. Pure.

In cluster mode a shard snapshot (full or partial) must be asked of a peer that holds the
shard. ``GET /cluster`` names every peer by id with its p2p ``uri``; ``GET
/collections/{c}/cluster`` (asked of any peer) says which peer holds which shard, and under
which shard key. A peer's HTTP address is the connection's ``peerUrls`` entry for its URI;
without one it is derived from the URI's host with the scheme and port of the configured
``url``: exactly a StatefulSet's per-pod DNS names, every pod serving HTTP on one port (a
pod name relative to its namespace gets the namespace of a ``<service>.<namespace>.svc``
``url``).
Without cluster mode (``GET /cluster`` says ``disabled``) every shard is at ``url``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ACTIVE = "Active"

CONFIGURED = "the configured url"
EXPLICIT = "peerUrls"
DERIVED = "derived from the peer's URI"


def parse_peer_urls(raw: str | None) -> dict[str, str]:
    """The ``peerUrls`` value: a JSON object from a peer's cluster URI to its HTTP URL."""
    if not raw or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object {peer URI: HTTP URL}")
    for uri, url in value.items():
        if not isinstance(url, str) or not _is_http_url(url):
            raise ValueError(f"{uri!r} maps to {url!r}, not an http(s) URL")
        if not _is_http_url(uri):
            raise ValueError(f"{uri!r} is not a peer URI (http://host:port)")
    return {normalise_uri(uri): url.rstrip("/") for uri, url in value.items()}


def parse_grpc_port(raw: str | None) -> int | None:
    """The ``grpcPort`` value: a TCP port number, or nothing (REST only)."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{text[:20]!r} is not a port number (1-65535)")
    return int(text)


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and (
            parts.port is None or parts.port > 0)
    except ValueError:
        return False


def normalise_uri(uri: str) -> str:
    """``HTTP://Qdrant-0:6335/`` and ``http://qdrant-0:6335`` are one peer."""
    parts = urlsplit(uri.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"),
                       "", ""))


def peer_http_url(uri: str, configured_url: str, peer_urls: Mapping[str, str]
                  ) -> tuple[str, str]:
    """(HTTP base URL, how it was found) for the peer with cluster URI ``uri``."""
    explicit = {normalise_uri(k): v for k, v in peer_urls.items()}.get(normalise_uri(uri))
    if explicit:
        return explicit.rstrip("/"), EXPLICIT
    peer, base = urlsplit(uri), urlsplit(configured_url)
    host = _qualified(peer.hostname or "", base.hostname or "")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{base.port}" if base.port else host
    return urlunsplit((base.scheme, netloc, "", "", "")), DERIVED


def _qualified(peer_host: str, configured_host: str) -> str:
    """A pod name relative to its namespace (``qdrant-0.qdrant-headless``, what Qdrant's
    Helm chart gives ``--uri``) gets the namespace and cluster domain of a configured Service
    name (``qdrant.qdrant.svc``), so an operator in another namespace resolves it too."""
    labels = configured_host.split(".")
    if peer_host.count(".") != 1 or "svc" not in labels or labels.index("svc") < 2 or \
            peer_host.replace(".", "").isdigit():
        return peer_host
    return ".".join([peer_host, *labels[labels.index("svc") - 1:]])


@dataclass(frozen=True)
class Replica:
    """One copy of a shard on one peer, as ``GET /collections/{c}/cluster`` reports it."""

    shard_id: int
    peer_id: int
    state: str
    shard_key: str | None = None


def replicas(collection_cluster: Mapping[str, Any]) -> list[Replica]:
    """Every replica the answering peer knows of: its local shards and the remote ones."""
    own = int(collection_cluster.get("peer_id") or 0)
    found = []
    for entry in collection_cluster.get("local_shards") or []:
        found.append(Replica(int(entry["shard_id"]), own, str(entry.get("state") or ACTIVE),
                             _key(entry.get("shard_key"))))
    for entry in collection_cluster.get("remote_shards") or []:
        found.append(Replica(int(entry["shard_id"]), int(entry["peer_id"]),
                             str(entry.get("state") or ACTIVE), _key(entry.get("shard_key"))))
    return found


def _key(value: Any) -> str | None:
    return None if value is None else str(value)  # Qdrant shard keys are strings or integers


def cluster_peers(cluster: Mapping[str, Any]) -> dict[int, str]:
    """Peer id -> cluster URI from ``GET /cluster``; empty when cluster mode is off."""
    if cluster.get("status") != "enabled":
        return {}
    return {int(peer_id): str(info["uri"])
            for peer_id, info in (cluster.get("peers") or {}).items()}


@dataclass(frozen=True)
class ShardRoute:
    """Where to ask for one shard's snapshots."""

    shard_id: int
    url: str
    how: str
    shard_key: str | None = None
    peer_id: int | None = None
    peer_uri: str | None = None

    def describe(self) -> str:
        key = f" (key {self.shard_key})" if self.shard_key is not None else ""
        if self.peer_id is None:
            return f"shard {self.shard_id}{key} at {self.url}"
        return (f"shard {self.shard_id}{key} on peer {self.peer_id} ({self.peer_uri}) at "
                f"{self.url}, {self.how}")


@dataclass(frozen=True)
class ShardPlan:
    routes: tuple[ShardRoute, ...]
    missing: tuple[str, ...] = ()
    """Requested shards or shard keys the collection does not have."""
    unavailable: tuple[str, ...] = ()
    """Shards with no Active replica, or on a peer whose HTTP address is unknown."""


def _wanted(found: Sequence[Replica], shards: Sequence[int] | None,
            shard_keys: Sequence[str] | None) -> tuple[list[int], list[str]]:
    ids = sorted({r.shard_id for r in found})
    if shard_keys:
        by_key = {r.shard_key: r.shard_id for r in found if r.shard_key is not None}
        missing = [f"shard key {key!r}" for key in shard_keys if key not in by_key]
        return sorted({r.shard_id for r in found if r.shard_key in set(shard_keys)}), missing
    if shards:
        missing = [f"shard {shard}" for shard in shards if shard not in ids]
        return sorted(set(shards) & set(ids)), missing
    return ids, []


def plan_shards(found: Sequence[Replica], peers: Mapping[int, str], configured_url: str,
                peer_urls: Mapping[str, str], shards: Sequence[int] | None = None,
                shard_keys: Sequence[str] | None = None) -> ShardPlan:
    """One route per wanted shard: ``shard_keys`` (one or more shards per key), else
    ``shards``, else every shard of the collection. Each is asked of its Active replica on
    the lowest peer id, so the choice is stable while the placement is."""
    ids, missing = _wanted(found, shards, shard_keys)
    configured = configured_url.rstrip("/")
    addresses = {peer_id: peer_http_url(uri, configured, peer_urls)
                 for peer_id, uri in peers.items()}
    sharing: dict[str, list[int]] = {}
    for peer_id, (url, _) in addresses.items():
        sharing.setdefault(url, []).append(peer_id)
    routes, unavailable = [], []
    for shard_id in ids:
        copies = sorted((r for r in found if r.shard_id == shard_id), key=lambda r: r.peer_id)
        active = [r for r in copies if r.state == ACTIVE]
        if not active:
            states = ", ".join(f"peer {r.peer_id}: {r.state}" for r in copies)
            unavailable.append(f"shard {shard_id} has no Active replica ({states})")
            continue
        chosen = active[0]
        if not peers:
            routes.append(ShardRoute(shard_id, configured, CONFIGURED, chosen.shard_key))
            continue
        if chosen.peer_id not in addresses:
            unavailable.append(f"shard {shard_id} is on peer {chosen.peer_id}, which GET "
                               "/cluster does not list")
            continue
        url, how = addresses[chosen.peer_id]
        others = [p for p in sharing[url] if p != chosen.peer_id]
        if others:
            unavailable.append(
                f"shard {shard_id} is on peer {chosen.peer_id} ({peers[chosen.peer_id]}), "
                f"whose HTTP address {url} ({how}) is also peer {others[0]}'s: add its URI "
                "to the connection Secret's peerUrls")
            continue
        routes.append(ShardRoute(shard_id, url, how, chosen.shard_key, chosen.peer_id,
                                 peers[chosen.peer_id]))
    return ShardPlan(tuple(routes), tuple(missing), tuple(unavailable))
