"""Two replicas behind the chart's Services: only the working one is Ready and answers devices,
and when it goes mid-build the other takes over, resumes the build, and the alias never shows
an unverified master."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from album_operator.edge import protocol
from tests.e2e.conftest import QdrantInCluster, Release
from tests.e2e.story import (
    DEVICE_TOKEN,
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
from tests.e2e.test_lifecycle import YEARS
from tests.helpers import wait_for

KOPF = Path(sys.executable).with_name("kopf")


def _ready_pods(release: Release) -> list[str]:
    return [p["metadata"]["name"] for p in release.pods()
            if pod_ready(p) and not p["metadata"].get("deletionTimestamp")]


def _install_two_replicas(release: Release) -> None:
    """Without --wait: helm would wait for both Pods Ready, and a standby never is."""
    release.install("--set", "replicaCount=2", wait=False)
    wait_for(lambda: len(release.pods()) == 2 and len(_ready_pods(release)) == 1,
             timeout=240, interval=1, what="two Pods, exactly one Ready")


def test_only_the_working_replica_is_ready_and_every_device_request_is_answered(
        server_release: tuple[Release, QdrantInCluster], tmp_path: Path) -> None:
    release, qdrant = server_release
    _install_two_replicas(release)
    apply_collections(release.kube, release.namespace, (2025,))
    fill_sources(qdrant, (2025,), 200)
    apply_policy(release.kube, release.namespace, year=2025)

    answered = [Device(tmp_path / f"device-{n}", release, release.namespace).try_init_and_pull()
                for n in range(12)]

    assert all(answered), answered
    assert len(_ready_pods(release)) == 1


def test_the_standby_takes_over_a_build_when_the_working_replica_goes(
        server_release: tuple[Release, QdrantInCluster]) -> None:
    release, qdrant = server_release
    _install_two_replicas(release)
    kube, namespace = release.kube, release.namespace
    apply_collections(kube, namespace, YEARS)
    total = fill_sources(qdrant, YEARS, 1500)

    with AliasWatch(qdrant) as watch:
        apply_merge(kube, namespace, max_points_per_second=300)
        wait_for(lambda: merge_status(kube, namespace).get("phase") == "Copying", timeout=120,
                 what="the build copying")
        working = _ready_pods(release)[0]
        kube.run("delete", "pod", working, "--wait=false", namespace=namespace)
        wait_for(lambda: [p for p in _ready_pods(release) if p != working], timeout=180,
                 interval=1, what="the standby Ready as the working replica")
        kube.run("wait", "--for=condition=Ready", "mastermerge/album-master", "--timeout=300s",
                 namespace=namespace)

    assert qdrant.rest("POST", "/collections/album_master/points/count",
                       json={"exact": True})["count"] == total
    assert watch.seen
    assert watch.seen <= verified_masters(kube, namespace)


def test_a_paused_replica_serves_nothing_stale_and_resumes_when_the_peer_goes(
        server_release: tuple[Release, QdrantInCluster], tmp_path: Path) -> None:
    release, qdrant = server_release
    _install_two_replicas(release)
    apply_collections(release.kube, release.namespace, (2025,))
    fill_sources(qdrant, (2025,), 100)
    apply_policy(release.kube, release.namespace, year=2025)
    working = _ready_pods(release)[0]
    working_ip = next(p["status"]["podIP"] for p in release.pods()
                      if p["metadata"]["name"] == working)
    assert Device(tmp_path / "before", release, release.namespace).try_init_and_pull()

    # A peer of higher priority than any replica's, as `kopf freeze` makes one: kopf pauses
    # both replicas until its record expires.
    freeze = subprocess.run([str(KOPF), "freeze", "-A", "--peering", "album-operator",
                             "--priority", "2000000000", "--lifetime", "40", "--id", "e2e"],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={"KUBECONFIG": release.kube.kubeconfig, "PATH": "/usr/bin"})
    assert freeze.returncode == 0, freeze.stderr
    wait_for(lambda: not _ready_pods(release), timeout=60, interval=1,
             what="no replica Ready while a peer of higher priority is there")
    listing = protocol.LIST.path(release.namespace, "album-edge")
    direct = requests.get(f"http://{working_ip}:8081{listing}", timeout=10,
                          headers={protocol.AUTHORIZATION: protocol.BEARER + DEVICE_TOKEN})
    assert direct.status_code == 503
    assert direct.headers.get("Retry-After")
    assert not Device(tmp_path / "paused", release, release.namespace).try_init_and_pull()

    wait_for(lambda: len(_ready_pods(release)) == 1, timeout=120, interval=1,
             what="one replica working again after the peer's record expired")
    assert wait_for(lambda: Device(tmp_path / "after", release,
                                   release.namespace).try_init_and_pull(),
                    timeout=60, interval=2, what="devices served again")
