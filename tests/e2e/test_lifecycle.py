"""The operator survives its own lifecycle on a real node: a restart, an upgrade to a new image
tag and an eviction while a build and a publication are in progress lose nothing, the alias
only ever shows verified masters, and snapshots are served again within one resync."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from album_operator_dev.localcluster import node as local_node
from tests.e2e.conftest import RESYNC_SECONDS, QdrantInCluster, Release
from tests.e2e.story import (
    AliasWatch,
    Device,
    apply_collections,
    apply_merge,
    apply_policy,
    fill_sources,
    merge_status,
    pod_ready,
    verified_masters,
)
from tests.helpers import wait_for

YEARS = (2023, 2024, 2025)
POINTS_PER_SOURCE = 1500


def _disrupt_mid_build(release: Release, qdrant: QdrantInCluster,
                       disrupt: Callable[[], None], tmp_path: Path) -> None:
    """A build in progress and a publication made; ``disrupt`` the operator; then the build
    finishes with every point and only verified masters behind the alias, and a new device
    pulls the policy's snapshot within one resync of the new Pod being Ready."""
    kube, photos = release.kube, release.namespace
    apply_collections(kube, photos, YEARS)
    total = fill_sources(qdrant, YEARS, POINTS_PER_SOURCE)
    apply_policy(kube, photos, year=2025)
    Device(tmp_path / "before", release, photos).init_and_pull()
    with AliasWatch(qdrant) as watch:
        apply_merge(kube, photos, max_points_per_second=300)
        wait_for(lambda: merge_status(kube, photos).get("phase") == "Copying", timeout=120,
                 what="the build copying")
        disrupt()
        kube.run("wait", "--for=condition=Ready", "mastermerge/album-master",
                 "--timeout=300s", namespace=photos)
    status = merge_status(kube, photos)
    assert qdrant.rest("POST", "/collections/album_master/points/count",
                       json={"exact": True})["count"] == total
    assert watch.seen, "the alias was never seen"
    assert watch.seen <= verified_masters(kube, photos), json.dumps(status)[:3000]
    device = Device(tmp_path / "after", release, photos)
    wait_for(device.try_init_and_pull, timeout=RESYNC_SECONDS + 60, interval=2,
             what="a new device's first pull after the disruption")


def _wait_new_pod_ready(release: Release, old: str) -> None:
    def replaced() -> bool:
        pods = release.pods()
        return any(p["metadata"]["name"] != old and not p["metadata"].get("deletionTimestamp")
                   and pod_ready(p) for p in pods)
    wait_for(replaced, timeout=240, interval=1, what="a new operator Pod Ready")


def test_a_restart_mid_build_loses_nothing_and_serves_snapshots_again(
        server_release: tuple[Release, QdrantInCluster], tmp_path: Path) -> None:
    release, qdrant = server_release
    release.install()

    def restart() -> None:
        old = release.pods()[0]["metadata"]["name"]
        release.kube.run("delete", "pod", old, "--wait=false", namespace=release.namespace)
        _wait_new_pod_ready(release, old)

    _disrupt_mid_build(release, qdrant, restart, tmp_path)


def test_an_upgrade_to_a_new_image_tag_mid_build_loses_nothing(
        server_release: tuple[Release, QdrantInCluster], tmp_path: Path) -> None:
    release, qdrant = server_release
    release.install()
    new_tag = "0.0.0-e2e-upgrade"
    local_node.tag_image(release.helm.operator_image,
                         release.helm.operator_image.rsplit(":", 1)[0] + f":{new_tag}")

    def upgrade() -> None:
        old = release.pods()[0]["metadata"]["name"]
        release.upgrade("--set", f"image.tag={new_tag}")
        _wait_new_pod_ready(release, old)
        images = {c["image"] for p in release.pods() for c in p["spec"]["containers"]}
        assert images == {release.helm.operator_image.rsplit(":", 1)[0] + f":{new_tag}"}

    _disrupt_mid_build(release, qdrant, upgrade, tmp_path)


def test_an_eviction_mid_build_loses_nothing(
        server_release: tuple[Release, QdrantInCluster], tmp_path: Path) -> None:
    release, qdrant = server_release
    release.install()

    def evict() -> None:
        old = release.pods()[0]["metadata"]["name"]
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": old, "namespace": release.namespace}}
        release.kube.run("create", "--raw",
                         f"/api/v1/namespaces/{release.namespace}/pods/{old}/eviction",
                         "-f", "-", stdin=json.dumps(eviction))
        _wait_new_pod_ready(release, old)

    _disrupt_mid_build(release, qdrant, evict, tmp_path)
