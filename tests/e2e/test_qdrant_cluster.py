"""The operator Pod against a three-peer Qdrant cluster (a StatefulSet), given only the
Service's DNS name: sharded collections spread over the peers, a master built from them, and
each shard's snapshot asked of the peer that holds it, found by its per-Pod DNS name (no
peerUrls)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import (
    QdrantInCluster,
    Release,
)
from tests.e2e.story import (
    Device,
    apply_collections,
    apply_merge,
    apply_policy,
    fill_sources,
)

PEERS = 3


def test_a_sharded_master_and_per_peer_shard_snapshots_on_a_three_peer_cluster(
        cluster_release: tuple[Release, QdrantInCluster], tmp_path: Path) -> None:
    release, qdrant = cluster_release
    release.install()
    kube, namespace = release.kube, release.namespace
    apply_collections(kube, namespace, (2024, 2025), shards=PEERS)
    placement = qdrant.rest("GET", "/collections/album_2025/cluster")
    holders = {shard["peer_id"] for shard in placement["remote_shards"]}
    assert len(holders | {placement["peer_id"]}) == PEERS
    total = fill_sources(qdrant, (2024, 2025), 600)

    apply_merge(kube, namespace)
    kube.run("wait", "--for=condition=Ready", "mastermerge/album-master", "--timeout=300s",
             namespace=namespace)
    assert qdrant.rest("POST", "/collections/album_master/points/count",
                       json={"exact": True})["count"] == total

    apply_policy(kube, namespace, year=2025, source="Server")
    published = kube.get("edgesnapshotpolicy", "album-edge", namespace)["status"]["snapshots"]
    assert sorted(snapshot["shard"] for snapshot in published) == list(range(PEERS))
    for shard in range(PEERS):
        device = Device(tmp_path / f"shard-{shard}", release, namespace)
        assert device.try_init_and_pull(shard), f"shard {shard}"
