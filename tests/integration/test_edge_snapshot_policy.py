"""EdgeSnapshotPolicy end to end with ``source: Build``: the real API server, the embedded
engine, the operator's snapshot endpoint and real ``qdrant-edge-py`` device shards."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import qdrant_edge as qe
import requests
from prometheus_client import REGISTRY
from qdrant_client import models as qm

from album_operator.edge.client import EndpointClient
from album_operator.edge.device import EdgeDevice
from album_operator_dev.localcluster.qdrant_server import LocalQdrant, wait_joined
from tests.conftest import ServerTarget
from tests.helpers import Kubectl, condition, wait_for


def utc_now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

pytestmark = pytest.mark.cluster
DIM = 512
POINTS = 1000
TOKEN = "device-token-for-tests-0123456789"
OTHER_TOKEN = "another-policys-token-9876543210"


def prefix(namespace: str) -> str:
    return namespace.replace("-", "_")


def seed_collection(kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> str:
    name = f"{prefix(namespace)}_2025"
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                   "metadata": {"name": "album-2025"},
                   "spec": {"year": 2025, "collectionName": name,
                            "vectors": {"size": DIM, "distance": "Cosine"}}}, namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollection/album-2025",
                "--timeout=60s", namespace=namespace)
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(POINTS, DIM)).astype(np.float32)
    points = [qm.PointStruct(id=i, vector=vectors[i].tolist(),
                             payload={"year": 2025, "i": i, "camera": f"cam-{i % 5}"})
              for i in range(POINTS)]
    qdrant(lambda c: c.upsert(name, points, wait=True))
    return name


def token_secret(name: str, token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"token": token}}


def policy(name: str, collection: str, secret: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "albumops.io/v1alpha1", "kind": "EdgeSnapshotPolicy",
            "metadata": {"name": name},
            "spec": {"collection": collection, "source": "Build", "schedule": "0 0 1 1 *",
                     "retention": {"keepLast": 2},
                     "devices": [{"name": "kiosk", "tokenSecretRef": secret}], **spec}}


def wait_snapshots(kubectl: Kubectl, namespace: str, name: str, count: int,
                   newer_than: str | None = None) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = kubectl.get("edgesnapshotpolicy", name, namespace)
        status = obj.get("status", {})
        snapshots = status.get("snapshots") or []
        newest = snapshots[0]["name"] if snapshots else None
        if len(snapshots) == count and (newer_than is None or newest != newer_than):
            return obj
        return None
    return wait_for(check, 90, what=f"{count} snapshots of {name}")


def get(url: str, token: str | None = TOKEN, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=60, **kwargs)


def post(url: str, body: Any, token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(url, json=body, headers=headers, timeout=60)


def download(url: str, target: Path) -> tuple[str, requests.Response]:
    digest = hashlib.sha256()
    with get(url, stream=True) as response, target.open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_content(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest(), response


def edge_points(shard: qe.EdgeShard) -> dict[Any, tuple[Any, np.ndarray]]:
    found, offset = {}, None
    while True:
        records, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=500,
                                                        with_payload=True, with_vector=True))
        for r in records:
            raw = r.vector[""] if isinstance(r.vector, dict) else r.vector
            vector = cast("list[float]", raw)  # the policy's shards hold one dense vector
            found[r.id] = (r.payload, np.asarray(vector) / np.linalg.norm(vector))
        if offset is None:
            return found


def collection_points(qdrant: Callable[..., Any], name: str) -> dict[Any, tuple[Any, Any]]:
    records = qdrant(lambda c: c.scroll(name, limit=10_000, with_payload=True,
                                        with_vectors=True)[0])
    return {r.id: (r.payload, np.asarray(r.vector) / np.linalg.norm(r.vector))
            for r in records}


def assert_same_points(device: dict[Any, Any], server: dict[Any, Any]) -> None:
    assert device.keys() == server.keys()
    for pid, (payload, vector) in server.items():
        assert device[pid][0] == payload, pid
        assert np.allclose(device[pid][1], vector, atol=1e-5), pid


def device_top_k(shard: qe.EdgeShard, vector: list[float], k: int = 10) -> list[Any]:
    hits = shard.query(qe.QueryRequest(limit=k, query=qe.Query.Nearest(vector),
                                       params=qe.SearchParams(exact=True)))
    return [h.id for h in hits]


def test_build_publishes_and_devices_restore_update_and_upload(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], edge_url: str,
        tmp_path: Path) -> None:
    collection = seed_collection(kubectl, namespace, qdrant)
    kubectl.apply(token_secret("kiosk-token", TOKEN), namespace)
    kubectl.apply(token_secret("other-token", OTHER_TOKEN), namespace)
    kubectl.apply(policy("edge", collection, "kiosk-token", upload={
        "routeBy": {"field": "year", "template": f"{prefix(namespace)}_{{year}}"},
        "maxBatchSize": 50}), namespace)
    kubectl.apply(policy("other", collection, "other-token"), namespace)
    obj = wait_snapshots(kubectl, namespace, "edge", 1)
    kubectl.run("wait", "--for=condition=Ready", "edgesnapshotpolicy/edge", "--timeout=30s",
                namespace=namespace)
    assert condition(obj, "Published")["status"] == "True"  # type: ignore[index]
    published = obj["status"]["snapshots"][0]
    assert published["collection"] == collection
    base = f"{edge_url}/v1/namespaces/{namespace}/policies/edge"

    # Full snapshot: sha256 as published; the device restores it and searches the same.
    full = tmp_path / "full.tar"
    sha, response = download(f"{base}/shards/0/snapshot", full)
    assert sha == published["sha256"] == response.headers["X-Snapshot-Sha256"]
    assert full.stat().st_size == published["sizeBytes"]
    device_dir = tmp_path / "device"
    qe.EdgeShard.unpack_snapshot(str(full), str(device_dir))
    device = qe.EdgeShard.load(str(device_dir))
    assert_same_points(edge_points(device), collection_points(qdrant, collection))
    probes = qdrant(lambda c: c.retrieve(collection, [3, 333, 777], with_vectors=True))
    for probe in probes:
        expected = [h.id for h in qdrant(lambda c, v=probe.vector: c.query_points(
            collection, query=v, limit=10).points)]
        assert device_top_k(device, probe.vector) == expected
    manifest = device.snapshot_manifest()
    device.close()

    # 1% of the points change; a new run; the partial is much smaller and brings equality.
    rng = np.random.default_rng(9)
    qdrant(lambda c: c.upsert(collection, [qm.PointStruct(
        id=i, vector=rng.normal(size=DIM).tolist(), payload={"year": 2025, "i": i,
                                                             "edited": True})
        for i in (10, 20, 30, POINTS + 1, POINTS + 2, POINTS + 3)], wait=True))
    qdrant(lambda c: c.delete(collection, qm.PointIdsList(points=[40, 50, 60, 70])))
    kubectl.run("annotate", "edgesnapshotpolicy/edge", "albumops.io/snapshot-now=1",
                namespace=namespace)
    obj = wait_snapshots(kubectl, namespace, "edge", 2)
    partial = post(f"{base}/shards/0/partial", manifest)
    assert partial.status_code == 200
    full_size = int(partial.headers["X-Full-Size-Bytes"])
    ratio = full_size / len(partial.content)
    print(f"\npartial {len(partial.content)} bytes vs full {full_size} bytes: {ratio:.1f}x")
    assert ratio > 4
    assert hashlib.sha256(partial.content).hexdigest() == partial.headers["X-Snapshot-Sha256"]
    (tmp_path / "partial.tar").write_bytes(partial.content)
    staged = tmp_path / "device-next"
    shutil.copytree(device_dir, staged)
    device = qe.EdgeShard.load(str(staged))
    device.update_from_snapshot(str(tmp_path / "partial.tar"))
    assert_same_points(edge_points(device), collection_points(qdrant, collection))
    current = device.snapshot_manifest()
    device.close()
    assert post(f"{base}/shards/0/partial", current).status_code == 304
    status = wait_for(lambda: (kubectl.get("edgesnapshotpolicy", "edge", namespace)["status"]
                               .get("partialRequestsServed") or None), 30,
                      what="partial requests in status")
    assert status == 1

    # Retention keeps exactly keepLast, the newest among them.
    newest = obj["status"]["snapshots"][0]["name"]
    kubectl.run("annotate", "--overwrite", "edgesnapshotpolicy/edge",
                "albumops.io/snapshot-now=2", namespace=namespace)
    obj = wait_snapshots(kubectl, namespace, "edge", 2, newer_than=newest)
    names = [s["name"] for s in obj["status"]["snapshots"]]
    listed = get(f"{base}/snapshots").json()
    assert [s["name"] for s in listed["snapshots"]] == names
    assert listed["vectors"] == {"": {"size": DIM, "distance": "Cosine"}}
    assert published["name"] not in names

    # Tokens: none or unknown -> 401, another policy's -> 403.
    assert get(f"{base}/snapshots", token=None).status_code == 401
    assert get(f"{base}/snapshots", token="wrong-token").status_code == 401
    assert get(f"{base}/snapshots", token=OTHER_TOKEN).status_code == 403
    other = f"{edge_url}/v1/namespaces/{namespace}/policies/other/snapshots"
    assert get(other, token=OTHER_TOKEN).status_code == 200

    # Uploads: routed by year to an AlbumCollection's collection; bad points are rejected.
    good = {"id": 5000, "vector": [0.5] * DIM, "payload": {"year": 2025, "from": "kiosk"}}
    wrong_size = {"id": 5001, "vector": [0.5] * 3, "payload": {"year": 2025}}
    unknown_year = {"id": 5002, "vector": [0.5] * DIM, "payload": {"year": 1990}}
    answer = post(f"{base}/points", {"points": [good, wrong_size, unknown_year]})
    assert answer.status_code == 200
    assert answer.json()["accepted"] == [5000]
    assert [r["id"] for r in answer.json()["rejected"]] == [5001, 5002]
    assert qdrant(lambda c: c.retrieve(collection, [5000]))[0].payload["from"] == "kiosk"
    too_many = {"points": [dict(good, id=6000 + i) for i in range(51)]}
    assert post(f"{base}/points", too_many).status_code == 413
    assert post(f"{edge_url}/v1/namespaces/{namespace}/policies/other/points",
                {"points": [good]}, token=OTHER_TOKEN).status_code == 409

    def metric(name: str, **labels: str) -> float | None:
        value: float | None = REGISTRY.get_sample_value(
            name, {"namespace": namespace, "name": "edge", **labels})
        return value
    assert metric("albumops_edge_upload_batches_total", result="accepted") == 1
    assert metric("albumops_edge_upload_batches_total", result="refused") == 1
    assert metric("albumops_edge_upload_points_total", result="rejected") == 2
    assert metric("albumops_edge_partial_requests_total") == 1
    assert (metric("albumops_edge_published_bytes") or 0) > 0
    assert (metric("albumops_edge_next_run_timestamp_seconds") or 0) > dt.datetime.now().timestamp()


def test_deleting_a_policy_removes_what_it_published(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], edge_url: str,
        operator: Any) -> None:
    collection = seed_collection(kubectl, namespace, qdrant)
    token = f"token-{namespace}"
    kubectl.apply(token_secret("kiosk-token", token), namespace)
    kubectl.apply(policy("edge", collection, "kiosk-token"), namespace)
    wait_snapshots(kubectl, namespace, "edge", 1)
    root = Path(operator.config.snapshot_root) / namespace / "edge"
    assert list((root / "published").glob("*.tar"))
    kubectl.run("delete", "edgesnapshotpolicy/edge", "--timeout=60s", namespace=namespace)
    assert not root.exists()
    url = f"{edge_url}/v1/namespaces/{namespace}/policies/edge/snapshots"
    assert get(url, token=token).status_code == 401  # the policy and its token are gone


def test_a_policy_recreated_over_retained_snapshots_publishes_its_own_first(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], operator: Any) -> None:
    collection = seed_collection(kubectl, namespace, qdrant)
    kubectl.apply(token_secret("kiosk-token", TOKEN), namespace)
    kubectl.apply(policy("edge", collection, "kiosk-token", deletionPolicy="Retain"), namespace)
    retained = wait_snapshots(kubectl, namespace, "edge", 1)["status"]["snapshots"][0]
    kubectl.run("delete", "edgesnapshotpolicy/edge", "--timeout=60s", namespace=namespace)
    root = Path(operator.config.snapshot_root) / namespace / "edge"
    assert (root / "published" / retained["name"]).exists()
    # snapshot times are per second: the successor is created in a later one
    wait_for(lambda: utc_now_rfc3339() > retained["createdAt"], 5, what="the next second")

    kubectl.apply(policy("edge", collection, "kiosk-token", deletionPolicy="Retain"), namespace)
    obj = wait_snapshots(kubectl, namespace, "edge", 2)
    last_run = obj["status"]["lastRun"]
    assert last_run["result"] == "Succeeded"
    newest = obj["status"]["snapshots"][0]
    assert last_run["message"].startswith(f"published {newest['name']} ")
    assert newest["name"] != retained["name"]
    assert newest["createdAt"] >= obj["metadata"]["creationTimestamp"]


def test_snapshots_lost_from_disk_are_republished_at_once_with_a_warning(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], edge_url: str,
        operator: Any) -> None:
    """What a restart on an emptyDir (or a failover to another replica's disk) leaves: a
    status that names snapshots the disk does not have. The yearly schedule would not run for
    months; the policy republishes at its next step and says why."""
    collection = seed_collection(kubectl, namespace, qdrant)
    kubectl.apply(token_secret("kiosk-token", TOKEN), namespace)
    kubectl.apply(policy("edge", collection, "kiosk-token"), namespace)
    lost = wait_snapshots(kubectl, namespace, "edge", 1)["status"]["snapshots"][0]
    # snapshot names are per second: the republished one is made in a later one
    wait_for(lambda: utc_now_rfc3339() > lost["createdAt"], 5, what="the next second")
    shutil.rmtree(Path(operator.config.snapshot_root) / namespace / "edge")

    obj = wait_snapshots(kubectl, namespace, "edge", 1, newer_than=lost["name"])
    published = condition(obj, "Published")
    assert published is not None
    assert published["reason"] == "Republished"
    assert f"the status records {lost['name']}, which this replica's disk does not have" in \
        published["message"]
    assert (condition(obj, "Ready") or {}).get("status") == "True"
    assert obj["status"]["lastRun"]["result"] == "Succeeded"
    wait_for(lambda: warnings(kubectl, namespace, "edge", "SnapshotsMissing", lost["name"]),
             30, what="a SnapshotsMissing Warning naming the lost snapshot")
    listed = get(f"{edge_url}/v1/namespaces/{namespace}/policies/edge/snapshots").json()
    assert [s["name"] for s in listed["snapshots"]] == [obj["status"]["snapshots"][0]["name"]]


def test_a_republish_that_fails_says_so_and_is_retried_until_it_succeeds(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], operator: Any) -> None:
    collection = seed_collection(kubectl, namespace, qdrant)
    kubectl.apply(token_secret("kiosk-token", TOKEN), namespace)
    kubectl.apply(policy("edge", collection, "kiosk-token"), namespace)
    lost = wait_snapshots(kubectl, namespace, "edge", 1)["status"]["snapshots"][0]
    wait_for(lambda: utc_now_rfc3339() > lost["createdAt"], 5, what="the next second")
    root = Path(operator.config.snapshot_root) / namespace / "edge"
    shutil.rmtree(root)
    root.write_text("")  # the policy's directory cannot be made: every run fails

    failed = wait_ready(kubectl, namespace, "edge", "False", "SnapshotsMissing", timeout=60)
    ready = condition(failed, "Ready") or {}
    assert f"the status records {lost['name']}" in ready["message"]
    assert "republishing failed, retried with backoff" in ready["message"]
    assert failed["status"]["lastRun"]["result"] == "Failed"
    wait_for(lambda: warnings(kubectl, namespace, "edge", "SnapshotsMissing", lost["name"]),
             30, what="a SnapshotsMissing Warning")

    # the status no longer lists the lost snapshot; the condition remembers it was lost
    root.unlink()
    obj = wait_snapshots(kubectl, namespace, "edge", 1, newer_than=lost["name"])
    assert (condition(obj, "Ready") or {}).get("status") == "True"
    published = condition(obj, "Published") or {}
    assert published["reason"] == "Republished"
    assert "still missing from this replica's disk" in published["message"]


def test_a_missing_collection_is_reported(kubectl: Kubectl, namespace: str,
                                          operator: Any) -> None:
    kubectl.apply(token_secret("kiosk-token", TOKEN), namespace)
    kubectl.apply(policy("edge", "no_such_collection", "kiosk-token"), namespace)

    def reported() -> dict[str, Any] | None:
        obj = kubectl.get("edgesnapshotpolicy", "edge", namespace)
        ready = condition(obj, "Ready")
        return obj if ready and ready["reason"] == "CollectionMissing" else None
    wait_for(reported, 30, what="CollectionMissing")


SERVER_POINTS = 8000
# Sealed segments of about 500 points (1 MB of vectors; no HNSW graph, so quick to build) and
# an appendable one. Qdrant's partial snapshot carries every file of each segment a change
# touched and nothing of the others: new points land in the appendable segment, and an edit
# of a sealed point marks it deleted there, which carries that segment.
SEGMENTED = {"hnsw": {"m": 0}, "optimizers": {"defaultSegmentNumber": 2,
                                              "indexingThreshold": 1000,
                                              "maxSegmentSize": 1000}}


def wait_optimized(server: ServerTarget, collection: str, indexed: int) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        info: dict[str, Any] = server.rest("GET", f"/collections/{collection}")
        done = (info["status"] == "green" and info["optimizer_status"] == "ok"
                and not (info.get("update_queue") or {}).get("length")
                and (info.get("indexed_vectors_count") or 0) >= indexed)
        return info if done else None
    return wait_for(settled, 120, interval=0.5, what=f"{collection} optimised")


def fetch(url: str, token: str, target: Path) -> requests.Response:
    with get(url, token=token, stream=True) as response, target.open("wb") as out:
        assert response.status_code == 200, response.text
        for chunk in response.iter_content(1 << 20):
            out.write(chunk)
    return response


@pytest.mark.qdrant_server
def test_the_server_source_publishes_qdrant_shard_snapshots(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], edge_url: str,
        qdrant_server: ServerTarget, tmp_path: Path) -> None:
    collection = f"{prefix(namespace)}_2025"
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                   "metadata": {"name": "album-2025"},
                   "spec": {"year": 2025, "collectionName": collection,
                            "vectors": {"size": DIM, "distance": "Cosine"}, **SEGMENTED}},
                  namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollection/album-2025",
                "--timeout=60s", namespace=namespace)
    rng = np.random.default_rng(17)
    for start in range(0, SERVER_POINTS, 500):
        qdrant(lambda c, s=start: c.upsert(collection, [qm.PointStruct(
            id=i, vector=rng.normal(size=DIM).tolist(),
            payload={"year": 2025, "i": i, "camera": f"cam-{i % 5}"})
            for i in range(s, s + 500)], wait=True))
    info = wait_optimized(qdrant_server, collection, indexed=SERVER_POINTS // 2)
    print(f"\n{collection}: {info['segments_count']} segments, "
          f"{info['indexed_vectors_count']} points in sealed ones")
    assert info["segments_count"] >= 4

    token = f"token-{namespace}"
    kubectl.apply(token_secret("kiosk-token", token), namespace)
    kubectl.apply(policy("edge", collection, "kiosk-token", source="Server", upload={
        "routeBy": {"field": "year", "template": f"{prefix(namespace)}_{{year}}"}}),
        namespace)
    obj = wait_snapshots(kubectl, namespace, "edge", 1)
    kubectl.run("wait", "--for=condition=Ready", "edgesnapshotpolicy/edge", "--timeout=30s",
                namespace=namespace)
    published = obj["status"]["snapshots"][0]
    assert published["shard"] == 0
    assert published["collection"] == collection
    # the snapshot is Qdrant's own, listed by Qdrant
    listed = qdrant_server.rest("GET", f"/collections/{collection}/shards/0/snapshots")
    assert published["name"] in [s["name"] for s in listed]
    base = f"{edge_url}/v1/namespaces/{namespace}/policies/edge"

    # Full: streamed through the endpoint, sha256 as Qdrant recorded it, restores on a device.
    full = tmp_path / "server.snapshot"
    response = fetch(f"{base}/shards/0/snapshot", token, full)
    assert response.headers["X-Snapshot-Name"] == published["name"]
    assert hashlib.sha256(full.read_bytes()).hexdigest() == published["sha256"]
    assert full.stat().st_size == published["sizeBytes"]
    # A device on a flaky link resumes: the rest of the snapshot from where it stopped,
    # asked of Qdrant with the same Range.
    size = full.stat().st_size
    rest = requests.get(f"{base}/shards/0/snapshot", timeout=60, headers={
        "Authorization": f"Bearer {token}", "Range": f"bytes={size // 3}-",
        "If-Range": f'"{published["sha256"]}"'})
    assert rest.status_code == 206, rest.text[:300]
    assert rest.headers["Content-Range"] == f"bytes {size // 3}-{size - 1}/{size}"
    resumed = full.read_bytes()[:size // 3] + rest.content
    assert hashlib.sha256(resumed).hexdigest() == published["sha256"]
    beyond = requests.get(f"{base}/shards/0/snapshot", timeout=60, headers={
        "Authorization": f"Bearer {token}", "Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    device_dir = tmp_path / "device"
    qe.EdgeShard.unpack_snapshot(str(full), str(device_dir))
    device = qe.EdgeShard.load(str(device_dir))
    assert_same_points(edge_points(device), collection_points(qdrant, collection))
    manifest = device.snapshot_manifest()
    device.close()
    assert len(manifest) == info["segments_count"]
    album_edge = EdgeDevice(tmp_path / "album-edge", EndpointClient(
        edge_url, namespace, "edge", token, timeout=(2.0, 60.0)))
    album_edge.init()

    # 1% of the points change: 60 new photos and 20 edited ones (vector and payload), all
    # from the first upload batch, so a few sealed segments change and most do not. The
    # server builds the partial from the device's manifest.
    new = 60
    changed = [qm.PointStruct(id=i, vector=rng.normal(size=DIM).tolist(),
                              payload={"year": 2025, "i": i, "edited": True})
               for i in [*range(20), *range(SERVER_POINTS, SERVER_POINTS + new)]]
    qdrant(lambda c: c.upsert(collection, changed, wait=True))
    partial = post(f"{base}/shards/0/partial", manifest, token=token)
    assert partial.status_code == 200, partial.text
    assert int(partial.headers["X-Full-Size-Bytes"]) == published["sizeBytes"]
    assert partial.headers["X-Snapshot-Sha256"] == hashlib.sha256(partial.content).hexdigest()
    ratio = full.stat().st_size / len(partial.content)
    print(f"server partial {len(partial.content)} bytes vs full {full.stat().st_size} bytes: "
          f"{ratio:.1f}x")
    assert ratio > 4
    (tmp_path / "partial.tar").write_bytes(partial.content)
    staged = tmp_path / "device-next"
    shutil.copytree(device_dir, staged)
    device = qe.EdgeShard.load(str(staged))
    device.update_from_snapshot(str(tmp_path / "partial.tar"))
    assert_same_points(edge_points(device), collection_points(qdrant, collection))
    assert device.info().points_count == SERVER_POINTS + new
    current = device.snapshot_manifest()
    device.close()
    assert post(f"{base}/shards/0/partial", current, token=token).status_code == 304

    # album-edge's own pull: the partial is checked against its sha256 and applied.
    with album_edge:
        pulled = album_edge.pull()
        assert pulled.changed
        assert pulled.size_bytes < published["sizeBytes"] / 4
        assert not album_edge.pull().changed
    mirror = qe.EdgeShard.load(str(album_edge.mirror_dir))
    assert_same_points(edge_points(mirror), collection_points(qdrant, collection))
    mirror.close()
    served = wait_for(lambda: (kubectl.get("edgesnapshotpolicy", "edge", namespace)["status"]
                               .get("partialRequestsServed") or None) == 2 or None, 30,
                      what="partial requests in status")
    assert served

    # A device's upload reaches the server collection.
    good = {"id": 90_001, "vector": [0.5] * DIM, "payload": {"year": 2025, "from": "kiosk"}}
    answer = post(f"{base}/points", {"points": [good]}, token=token)
    assert answer.status_code == 200
    assert answer.json()["accepted"] == [90_001]
    stored = qdrant_server.rest("POST", f"/collections/{collection}/points",
                                json={"ids": [90_001], "with_payload": True})
    assert stored[0]["payload"] == {"year": 2025, "from": "kiosk"}

    # Deleting the policy deletes the snapshots it made in Qdrant.
    kubectl.run("delete", "edgesnapshotpolicy/edge", "--timeout=60s", namespace=namespace)
    listed = qdrant_server.rest("GET", f"/collections/{collection}/shards/0/snapshots")
    assert published["name"] not in [s["name"] for s in listed]


CLUSTER_DIM = 64


class ClusterRest:
    """Qdrant's own REST answers from one peer of the cluster (its ``result``)."""

    def __init__(self, cluster: LocalQdrant, peer: int = 0) -> None:
        self.url = cluster.peers[peer].url
        self.headers = {"api-key": cluster.api_key}

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{self.url}{path}", headers=self.headers,
                                    timeout=60, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.text[:500]}"
        return response.json()["result"]


def peer_holding(cluster: LocalQdrant, collection: str) -> dict[int, int]:
    """Shard id -> the index of the peer holding it (one replica each)."""
    held = {}
    for index, peer in enumerate(cluster.peers):
        for shard in peer.get(f"/collections/{collection}/cluster").json()["result"][
                "local_shards"]:
            held[shard["shard_id"]] = index
    return held


def cluster_secret(name: str, cluster: LocalQdrant, peer_urls: dict[str, str] | None = None,
                   with_peer_urls: bool = True) -> dict[str, Any]:
    data = {"url": cluster.url, "apiKey": cluster.api_key}
    if with_peer_urls:
        data["peerUrls"] = json.dumps(peer_urls or cluster.peer_urls())
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": data}


def server_points(rest: ClusterRest, collection: str, **filters: Any
                  ) -> dict[Any, tuple[Any, Any]]:
    records = rest("POST", f"/collections/{collection}/points/scroll", json={
        "limit": 10_000, "with_payload": True, "with_vector": True, **filters})["points"]
    return {r["id"]: (r["payload"], np.asarray(r["vector"]) / np.linalg.norm(r["vector"]))
            for r in records}


def restore(url: str, token: str, target: Path) -> qe.EdgeShard:
    fetch(url, token, target.with_suffix(".snapshot"))
    qe.EdgeShard.unpack_snapshot(str(target.with_suffix(".snapshot")), str(target))
    return qe.EdgeShard.load(str(target))


def adopt(kubectl: Kubectl, namespace: str, collection: str, **spec: Any) -> None:
    """An AlbumCollection in ``namespace`` adopts the collection made by hand on the cluster,
    so the namespace owns it (a policy publishes only its own namespace's collections). The
    Secret ``qdrant-cluster`` must exist."""
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                   "metadata": {"name": "adopted"},
                   "spec": {"year": 2025, "collectionName": collection,
                            "vectors": {"size": CLUSTER_DIM, "distance": "Cosine"},
                            "connection": {"secretRef": {"name": "qdrant-cluster"}},
                            **spec}}, namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollection/adopted", "--timeout=60s",
                namespace=namespace)


def wait_ready(kubectl: Kubectl, namespace: str, name: str, status: str,
               reason: str | None = None, timeout: float = 90) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = kubectl.get("edgesnapshotpolicy", name, namespace)
        ready = condition(obj, "Ready")
        matches = ready is not None and ready["status"] == status and (
            reason is None or ready["reason"] == reason)
        return obj if matches else None
    return wait_for(check, timeout, what=f"{name} Ready={status} {reason or ''}")


def warnings(kubectl: Kubectl, namespace: str, name: str, reason: str,
             mentioning: str = "") -> list[str] | None:
    """The messages of the policy's Warning events with this reason, when one mentions
    ``mentioning``."""
    found = [e["message"] for e in kubectl.events(name, namespace)
             if e["type"] == "Warning" and e["reason"] == reason]
    return found if any(mentioning in m for m in found) else None


@pytest.mark.qdrant_server
def test_on_a_cluster_every_shard_is_published_from_the_peer_that_holds_it(
        kubectl: Kubectl, namespace: str, edge_url: str, qdrant_cluster: LocalQdrant,
        tmp_path: Path) -> None:
    rest = ClusterRest(qdrant_cluster)
    collection = f"{prefix(namespace)}_sharded"
    rest("PUT", f"/collections/{collection}", json={
        "vectors": {"size": CLUSTER_DIM, "distance": "Cosine"}, "shard_number": 3})
    rng = np.random.default_rng(23)
    rest("PUT", f"/collections/{collection}/points?wait=true", json={"points": [
        {"id": i, "vector": rng.normal(size=CLUSTER_DIM).tolist(), "payload": {"i": i}}
        for i in range(600)]})
    held = peer_holding(qdrant_cluster, collection)
    print(f"\nshard -> peer: {held}")
    assert sorted(held) == [0, 1, 2]
    assert set(held.values()) == {0, 1, 2}, "Qdrant spreads three shards over three peers"
    kubectl.apply(cluster_secret("qdrant-cluster", qdrant_cluster), namespace)
    adopt(kubectl, namespace, collection, shardNumber=3)

    token = f"token-{namespace}"
    kubectl.apply(token_secret("kiosk-token", token), namespace)
    connection = {"secretRef": {"name": "qdrant-cluster"}}
    kubectl.apply(policy("edge", collection, "kiosk-token", source="Server",
                         connection=connection), namespace)
    obj = wait_snapshots(kubectl, namespace, "edge", 3)
    wait_ready(kubectl, namespace, "edge", "True", "Ready")
    published = {s["shard"]: s for s in obj["status"]["snapshots"]}
    assert sorted(published) == [0, 1, 2]
    for shard, snapshot in published.items():
        # each snapshot was taken by the peer holding the shard, and lives there
        peer = qdrant_cluster.peers[held[shard]]
        names = [s["name"] for s in peer.get(
            f"/collections/{collection}/shards/{shard}/snapshots").json()["result"]]
        assert snapshot["name"] in names, (shard, held[shard], names)

    # Devices restore each shard; together they hold exactly the collection.
    base = f"{edge_url}/v1/namespaces/{namespace}/policies/edge"
    devices, manifests = {}, {}
    for shard in published:
        device = restore(f"{base}/shards/{shard}/snapshot", token, tmp_path / f"shard{shard}")
        devices[shard] = edge_points(device)
        manifests[shard] = device.snapshot_manifest()
        device.close()
        assert post(f"{base}/shards/{shard}/partial", manifests[shard], token=token
                    ).status_code == 304
    together = {pid: point for points in devices.values() for pid, point in points.items()}
    assert sum(len(points) for points in devices.values()) == 600
    assert_same_points(together, server_points(rest, collection))

    # New points land on every shard; each device's partial comes from its shard's peer.
    rest("PUT", f"/collections/{collection}/points?wait=true", json={"points": [
        {"id": i, "vector": rng.normal(size=CLUSTER_DIM).tolist(), "payload": {"i": i}}
        for i in range(600, 660)]})
    together = {}
    for shard in published:
        partial = post(f"{base}/shards/{shard}/partial", manifests[shard], token=token)
        assert partial.status_code == 200, partial.text
        (tmp_path / f"partial{shard}.tar").write_bytes(partial.content)
        device = qe.EdgeShard.load(str(tmp_path / f"shard{shard}"))
        device.update_from_snapshot(str(tmp_path / f"partial{shard}.tar"))
        together.update(edge_points(device))
        device.close()
    assert_same_points(together, server_points(rest, collection))

    # Deleting the policy deletes the snapshots from the peers that hold them.
    kubectl.run("delete", "edgesnapshotpolicy/edge", "--timeout=60s", namespace=namespace)
    for shard, snapshot in published.items():
        peer = qdrant_cluster.peers[held[shard]]
        names = [s["name"] for s in peer.get(
            f"/collections/{collection}/shards/{shard}/snapshots").json()["result"]]
        assert snapshot["name"] not in names


@pytest.mark.qdrant_server
def test_on_a_cluster_shard_keys_publish_one_device_shard_each(
        kubectl: Kubectl, namespace: str, edge_url: str, qdrant_cluster: LocalQdrant,
        tmp_path: Path) -> None:
    rest = ClusterRest(qdrant_cluster)
    collection = f"{prefix(namespace)}_tiered"
    rest("PUT", f"/collections/{collection}", json={
        "vectors": {"size": CLUSTER_DIM, "distance": "Cosine"}, "sharding_method": "custom"})
    rng = np.random.default_rng(29)
    for n, kiosk in enumerate(("kiosk-a", "kiosk-b", "kiosk-c")):
        rest("PUT", f"/collections/{collection}/shards", json={"shard_key": kiosk})
        rest("PUT", f"/collections/{collection}/points?wait=true", json={
            "shard_key": kiosk, "points": [
                {"id": n * 1000 + i, "vector": rng.normal(size=CLUSTER_DIM).tolist(),
                 "payload": {"kiosk": kiosk, "i": i}} for i in range(100 + 50 * n)]})
    placement = rest("GET", f"/collections/{collection}/cluster")
    keyed = {s["shard_key"]: s["shard_id"]
             for s in placement["local_shards"] + placement["remote_shards"]}
    print(f"\nshard key -> shard id: {keyed}")
    kubectl.apply(cluster_secret("qdrant-cluster", qdrant_cluster), namespace)
    adopt(kubectl, namespace, collection)

    token = f"token-{namespace}"
    kubectl.apply(token_secret("kiosk-token", token), namespace)
    kubectl.apply(policy("kiosk-b", collection, "kiosk-token", source="Server",
                         shardKeys=["kiosk-b"],
                         connection={"secretRef": {"name": "qdrant-cluster"}}), namespace)
    obj = wait_snapshots(kubectl, namespace, "kiosk-b", 1)
    assert [s["shard"] for s in obj["status"]["snapshots"]] == [keyed["kiosk-b"]]
    base = f"{edge_url}/v1/namespaces/{namespace}/policies/kiosk-b"
    assert get(f"{base}/shards/{keyed['kiosk-a']}/snapshot", token=token).status_code == 404
    device = restore(f"{base}/shards/{keyed['kiosk-b']}/snapshot", token, tmp_path / "b")
    assert_same_points(edge_points(device), server_points(rest, collection, filter={
        "must": [{"key": "kiosk", "match": {"value": "kiosk-b"}}]}))
    assert device.info().points_count == 150
    device.close()

    # A key the collection does not have is reported, not silently skipped.
    kubectl.apply(policy("nobody", collection, "kiosk-token", source="Server",
                         shardKeys=["kiosk-z"],
                         connection={"secretRef": {"name": "qdrant-cluster"}}), namespace)
    obj = wait_ready(kubectl, namespace, "nobody", "False", "ShardsNotFound")
    assert "kiosk-z" in condition(obj, "Ready")["message"]  # type: ignore[index]


@pytest.mark.qdrant_server
def test_on_a_cluster_an_unreachable_shard_is_reported_and_retried(
        kubectl: Kubectl, namespace: str, edge_url: str, qdrant_cluster: LocalQdrant) -> None:
    rest = ClusterRest(qdrant_cluster)
    collection = f"{prefix(namespace)}_sharded"
    rest("PUT", f"/collections/{collection}", json={
        "vectors": {"size": CLUSTER_DIM, "distance": "Cosine"}, "shard_number": 3})
    held = peer_holding(qdrant_cluster, collection)
    kubectl.apply(token_secret("kiosk-token", f"token-{namespace}"), namespace)

    # On loopback every peer's URI has the same host: without peerUrls the operator cannot
    # tell their HTTP addresses apart, says so, and retries until the Secret is fixed.
    kubectl.apply(cluster_secret("qdrant-cluster", qdrant_cluster, with_peer_urls=False),
                  namespace)
    adopt(kubectl, namespace, collection, shardNumber=3)
    kubectl.apply(policy("edge", collection, "kiosk-token", source="Server",
                         connection={"secretRef": {"name": "qdrant-cluster"}}), namespace)
    obj = wait_ready(kubectl, namespace, "edge", "False", "ShardsUnavailable")
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    print(f"\nwithout peerUrls: {message}")
    assert "peerUrls" in message
    wait_for(lambda: warnings(kubectl, namespace, "edge", "ShardsUnavailable", "peerUrls"),
             30, what="a Warning event")

    # peerUrls naming the wrong peers: Qdrant's own refusal, with where it was asked.
    (uri1, url1), (uri2, url2) = [(p.uri, p.url) for p in qdrant_cluster.peers[1:]]
    assert uri1 is not None
    assert uri2 is not None
    kubectl.apply(cluster_secret("qdrant-cluster", qdrant_cluster, peer_urls={
        **qdrant_cluster.peer_urls(), uri1: url2, uri2: url1}), namespace)
    wait_for(lambda: "is not a local shard" in (condition(kubectl.get(
        "edgesnapshotpolicy", "edge", namespace), "Ready") or {}).get("message", ""), 60,
        what="Qdrant's refusal in the Ready condition")
    obj = wait_ready(kubectl, namespace, "edge", "False", "ShardsUnavailable")
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    print(f"wrong peerUrls: {message}")
    wait_for(lambda: warnings(kubectl, namespace, "edge", "ShardsUnavailable",
                              "is not a local shard"), 30, what="a Warning event")

    kubectl.apply(cluster_secret("qdrant-cluster", qdrant_cluster), namespace)
    wait_snapshots(kubectl, namespace, "edge", 3)
    wait_ready(kubectl, namespace, "edge", "True", "Ready")

    # The peer holding shard 1 goes down: the shard cannot be listed or served; that is
    # shown and retried, and clears once the peer is back.
    victim = qdrant_cluster.peers[held[1]] if held[1] != 0 else qdrant_cluster.peers[held[2]]
    victim.kill()
    try:
        # Qdrant itself may fail first (reading the collection asks every peer): then the
        # reason is QdrantUnavailable with Qdrant's own message
        obj = wait_ready(kubectl, namespace, "edge", "False")
        ready = condition(obj, "Ready")
        assert ready is not None
        print(f"peer down: {ready['reason']}: {ready['message']}")
        assert ready["reason"] in ("ShardsUnavailable", "QdrantUnavailable")
        if ready["reason"] == "ShardsUnavailable":
            assert victim.url in ready["message"]
        mention = victim.url if ready["reason"] == "ShardsUnavailable" else ""
        wait_for(lambda: warnings(kubectl, namespace, "edge", ready["reason"], mention), 30,
                 what="a Warning event for the peer")
    finally:
        victim.start()
        wait_joined(qdrant_cluster)
    wait_ready(kubectl, namespace, "edge", "True", "Ready")
