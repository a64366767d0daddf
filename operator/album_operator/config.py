"""Operator-wide settings, from command-line flags with environment fallbacks."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path


def default_embedded_path() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "album-operator" / "qdrant")


def peering_priority(value: str, hostname: str) -> int:
    """``auto`` gives each Pod a distinct, stable priority: kopf pauses every replica that
    sees a peer of higher priority, and all of them when priorities tie."""
    if value != "auto":
        return int(value)
    return 1 + int(hashlib.sha256(hostname.encode()).hexdigest(), 16) % 1_000_000_000


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator needs to know at start-up. Built once, never mutated."""

    namespaces: tuple[str, ...] = ()
    qdrant_secret: str | None = None
    """``namespace/name`` of the Secret with the default Qdrant ``url``, ``apiKey``, ``ca.crt``."""
    qdrant_url: str | None = None
    qdrant_api_key: str | None = field(default=None, repr=False)
    qdrant_peer_urls: str | None = None
    """With ``qdrant_url``: the JSON ``peerUrls`` of a cluster (peer URI -> HTTP URL)."""
    qdrant_grpc_port: str | None = None
    """With ``qdrant_url``: the server's gRPC port, which bulk copies use."""
    embedded_path: str = field(default_factory=default_embedded_path)
    resync_seconds: float = 60.0
    merge_step_seconds: float = 1.0
    merge_checkpoint_seconds: float = 5.0
    """How often a running copy's checkpoint is written to status."""
    merge_retry_seconds: float = 30.0
    """First delay before a failed MasterMerge build is tried again; doubles per failure."""
    deletion_grace_seconds: float = 300.0
    retry_backoff_seconds: float = 5.0
    """First delay before a failed reconcile is tried again; it doubles per failure."""
    retry_cap_seconds: float = 300.0
    """The longest delay between attempts of a failing resource."""
    health_port: int | None = 8080
    metrics_port: int | None = None
    snapshot_port: int | None = None
    snapshot_dir: str | None = None
    snapshot_tls_secret: str | None = None
    """``namespace/name`` of a Secret with ``tls.crt`` and ``tls.key``: the snapshot endpoint
    serves HTTPS with them (read once at start-up)."""
    edge_step_seconds: float = 5.0
    peering: str | None = None
    priority: int = 0
    peering_lifetime_seconds: int = 60
    """How long a replica counts as alive after its last keep-alive: the longest a standby
    waits to take over from a replica that died without saying goodbye."""

    @property
    def snapshot_root(self) -> str:
        """Where Build snapshots and publishing shards live: --snapshot-dir, or next to the
        embedded engine's data."""
        return self.snapshot_dir or str(Path(self.embedded_path).parent / "edge-snapshots")

    @property
    def all_namespaces(self) -> bool:
        return not self.namespaces
