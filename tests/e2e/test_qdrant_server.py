"""The operator Pod against a Qdrant server running as a StatefulSet on the same node, reached by
its Service's DNS name: the README's story with points (year collections, a verified master
behind `album_master`, an edge device pulling a snapshot and pushing points through the chart's
snapshots Service)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.conftest import (
    REPO,
    QdrantInCluster,
    Release,
    new_namespace,
)
from tests.helpers import wait_for

ALBUM_EDGE = Path(sys.executable).with_name("album-edge")
DEVICE_TOKEN = "demo-device-token-change-me"


def _points(count: int, year: int) -> list[dict[str, Any]]:
    return [{"id": str(uuid.uuid4()), "vector": [random.random() for _ in range(512)],
             "payload": {"year": year, "album_id": "family"}} for _ in range(count)]


def _edge(device: Path, *args: str, stdin: str | None = None) -> Any:
    done = subprocess.run([str(ALBUM_EDGE), *args, "--dir", str(device)], input=stdin,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"ALBUM_EDGE_TOKEN": DEVICE_TOKEN, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, f"album-edge {args[0]}: {done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def test_a_master_and_an_edge_device_through_the_pod_on_a_qdrant_server(
        server_release: tuple[Release, QdrantInCluster], tmp_path: Path) -> None:
    release, qdrant = server_release
    # The example policy's device token Secret.
    release.install("--set", "rbac.extraSecretNames={kiosk-lobby-token}")
    kube, photos = release.kube, new_namespace("photos")
    kube.run("create", "namespace", photos)

    kube.run("apply", "-f", str(REPO / "examples" / "album-collections.yaml"), namespace=photos)
    kube.run("wait", "--for=condition=Ready", "albumcollection", "--all", "--timeout=180s",
             namespace=photos)
    written = {2024: _points(40, 2024), 2025: _points(30, 2025)}
    for year, points in written.items():
        qdrant.rest("PUT", f"/collections/album_{year}/points?wait=true", json={"points": points})
    kube.run("apply", "-f", str(REPO / "examples" / "master-merge.yaml"), namespace=photos)
    kube.run("wait", "--for=condition=Ready", "mastermerge/album-master", "--timeout=300s",
             namespace=photos)
    target = kube.get("mastermerge", "album-master", photos)["status"]["aliasTarget"]
    aliases = qdrant.rest("GET", "/aliases")["aliases"]
    assert {"alias_name": "album_master", "collection_name": target} in aliases
    assert qdrant.rest("POST", "/collections/album_master/points/count",
                       json={"exact": True})["count"] == 70

    kube.run("apply", "-f", str(REPO / "examples" / "edge-snapshot-policy.yaml"),
             namespace=photos)
    kube.run("wait", "--for=condition=Ready", "edgesnapshotpolicy/album-2025-edge",
             "--timeout=180s", namespace=photos)
    endpoint = release.service_url("album-operator-snapshots", 8081)
    device = tmp_path / "kiosk"
    _edge(device, "init", "--endpoint", endpoint, "--namespace", photos,
          "--policy", "album-2025-edge")
    _edge(device, "pull")
    known = written[2025][0]
    hits = _edge(device, "query", "--vector", json.dumps(known["vector"]), "--limit", "1")
    assert hits[0]["id"] == known["id"]
    taken_on_device = _points(5, 2025)
    _edge(device, "upsert", "-", stdin="\n".join(json.dumps(p) for p in taken_on_device))
    _edge(device, "push")
    assert _edge(device, "status")["queueDepth"] == 0

    ids = [point["id"] for point in taken_on_device]
    stored = wait_for(lambda: qdrant.rest("POST", "/collections/album_2025/points",
                                          json={"ids": ids}), timeout=30,
                      what="the device's points in album_2025")
    assert sorted(point["id"] for point in stored) == sorted(ids)
