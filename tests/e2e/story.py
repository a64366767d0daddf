"""The objects and device steps the end-to-end tests share: year collections with points, a
MasterMerge over them, an EdgeSnapshotPolicy and an `album-edge` device reaching the chart's
snapshots Service."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.conftest import QdrantInCluster, Release
from tests.helpers import Kubectl

ALBUM_EDGE = Path(sys.executable).with_name("album-edge")
DEVICE_TOKEN_SECRET = "kiosk-token"
DEVICE_TOKEN = "e2e-device-token-0123456789"
DIMENSIONS = 32
LABELS = {"albumops.io/album": "e2e"}


def apply_collections(kube: Kubectl, namespace: str, years: tuple[int, ...],
                      shards: int = 1) -> None:
    for year in years:
        kube.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                    "metadata": {"name": f"album-{year}", "labels": LABELS},
                    "spec": {"year": year, "shardNumber": shards,
                             "vectors": {"size": DIMENSIONS, "distance": "Cosine"}}},
                   namespace)
    kube.run("wait", "--for=condition=Ready", "albumcollection", "--all", "--timeout=180s",
             namespace=namespace)


def random_points(count: int, year: int) -> list[dict[str, Any]]:
    return [{"id": str(uuid.uuid4()), "vector": [random.random() for _ in range(DIMENSIONS)],
             "payload": {"year": year}} for _ in range(count)]


def fill_sources(qdrant: QdrantInCluster, years: tuple[int, ...], per_source: int) -> int:
    for year in years:
        points = random_points(per_source, year)
        for start in range(0, per_source, 500):
            qdrant.rest("PUT", f"/collections/album_{year}/points?wait=true",
                        json={"points": points[start:start + 500]})
    return per_source * len(years)


def apply_merge(kube: Kubectl, namespace: str, max_points_per_second: int | None = None,
                name: str = "album-master") -> None:
    copy: dict[str, Any] = {"batchSize": 128, "parallelism": 2}
    if max_points_per_second:
        copy["maxPointsPerSecond"] = max_points_per_second
    kube.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "MasterMerge",
                "metadata": {"name": name},
                "spec": {"alias": "album_master", "sourceSelector": {"matchLabels": LABELS},
                         "copy": copy, "verify": {"samplePoints": 64, "sampleQueries": 8},
                         "retention": {"keepPrevious": 2}}},
               namespace)


def merge_status(kube: Kubectl, namespace: str, name: str = "album-master") -> dict[str, Any]:
    status: dict[str, Any] = kube.get("mastermerge", name, namespace).get("status", {})
    return status


def apply_policy(kube: Kubectl, namespace: str, year: int, name: str = "album-edge",
                 source: str = "Build") -> None:
    kube.run("create", "secret", "generic", DEVICE_TOKEN_SECRET,
             f"--from-literal=token={DEVICE_TOKEN}", namespace=namespace)
    kube.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "EdgeSnapshotPolicy",
                "metadata": {"name": name},
                "spec": {"collection": f"album_{year}", "source": source,
                         "schedule": "0 */6 * * *",
                         "devices": [{"name": "kiosk", "tokenSecretRef": DEVICE_TOKEN_SECRET}],
                         "upload": {"collection": f"album_{year}"}}},
               namespace)
    kube.run("wait", "--for=condition=Ready", f"edgesnapshotpolicy/{name}", "--timeout=180s",
             namespace=namespace)


class Device:
    """One `album-edge` device directory talking to the release's snapshots Service."""

    def __init__(self, directory: Path, release: Release, namespace: str,
                 policy: str = "album-edge") -> None:
        self.directory, self.release = directory, release
        self.namespace, self.policy = namespace, policy

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ALBUM_EDGE), *args, "--dir", str(self.directory)],
                              input=stdin, capture_output=True, text=True, timeout=120,
                              check=False, env={"ALBUM_EDGE_TOKEN": DEVICE_TOKEN,
                                                "PATH": "/usr/bin:/bin"})

    def must(self, *args: str, stdin: str | None = None) -> Any:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, f"album-edge {args[0]}: {done.stdout}\n{done.stderr}"
        return json.loads(done.stdout)

    def init(self, shard: int = 0) -> subprocess.CompletedProcess[str]:
        endpoint = self.release.service_url("album-operator-snapshots", 8081)
        return self.run("init", "--endpoint", endpoint, "--namespace", self.namespace,
                        "--policy", self.policy, "--shard", str(shard))

    def try_init_and_pull(self, shard: int = 0) -> bool:
        shutil.rmtree(self.directory, ignore_errors=True)
        return (self.init(shard).returncode == 0
                and self.run("pull", "--shard", str(shard)).returncode == 0)

    def init_and_pull(self) -> None:
        done = self.init()
        assert done.returncode == 0, f"album-edge init: {done.stdout}\n{done.stderr}"
        self.must("pull")


def verified_masters(kube: Kubectl, namespace: str) -> set[str]:
    history = merge_status(kube, namespace).get("history", [])
    return {record["name"] for record in history if record["result"] == "Succeeded"}


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class AliasWatch:
    """Reads the alias from Qdrant every 200 ms in the background and keeps every target it
    saw, and reads it once more on leaving (a swap just before the end is seen too)."""

    def __init__(self, qdrant: QdrantInCluster, alias: str = "album_master") -> None:
        self.qdrant, self.alias, self.seen = qdrant, alias, set[str]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._read()

    def _read(self) -> None:
        try:
            aliases = self.qdrant.rest("GET", "/aliases")["aliases"]
        except Exception:
            return
        self.seen |= {a["collection_name"] for a in aliases if a["alias_name"] == self.alias}

    def __enter__(self) -> AliasWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()
