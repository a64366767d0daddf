"""AlbumCollection end to end: kubectl apply -> operator -> a real Qdrant engine -> status."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import requests
import yaml
from prometheus_client import REGISTRY
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.runner import OperatorThread
from album_operator_dev.localcluster.cluster import free_port
from album_operator_dev.localcluster.qdrant_server import LocalQdrant
from tests.conftest import SESSION_RESYNC_S, ServerTarget
from tests.helpers import Kubectl, condition, reconcile_now, wait_for

pytestmark = pytest.mark.cluster
T = TypeVar("T")
RESYNC_S = SESSION_RESYNC_S
# A change made in Qdrant by hand is seen at the first resync after it: the resync interval,
# half of it more for the timer's tick, and the reconcile itself on a loaded machine.
HAND_CHANGE_SEEN_S = RESYNC_S * 1.5 + 5



def album(name: str, collection: str, size: int = 8, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
            "metadata": {"name": name},
            "spec": {"year": 2020, "collectionName": collection,
                     "vectors": {"size": size, "distance": "Cosine"}, **spec}}


def wait_condition(kubectl: Kubectl, name: str, namespace: str, cond: str, status: str,
                   reason: str | None = None, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = kubectl.get("albumcollection", name, namespace)
        found = condition(obj, cond)
        if found and found["status"] == status and reason in (None, found["reason"]):
            return obj
        return None
    return wait_for(check, timeout, what=f"{name} {cond}={status} {reason or ''}")


def collection_name(namespace: str, suffix: str = "") -> str:
    return f"album_{namespace.replace('-', '_')}{suffix}"


def test_apply_creates_the_collection_with_its_spec_and_owner(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    name = collection_name(namespace)
    kubectl.apply(album("photos", name, size=16,
                        sparseVectors={"keywords": {"modifier": "idf"}}), namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollection/photos", "--timeout=30s",
                namespace=namespace)
    info = qdrant(lambda c: c.get_collection(name))
    assert info.config.params.vectors.size == 16
    assert info.config.params.vectors.distance == qm.Distance.COSINE
    assert info.config.params.sparse_vectors["keywords"].modifier == qm.Modifier.IDF
    obj = kubectl.get("albumcollection", "photos", namespace)
    assert info.config.metadata == {
        "albumops.io/owner-kind": "AlbumCollection",
        "albumops.io/owner": f"{namespace}/photos",
        "albumops.io/owner-uid": obj["metadata"]["uid"]}
    status = obj["status"]
    assert status["collectionName"] == name
    assert status["pointsCount"] == 0
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Synced")["reason"] == "InSync"  # type: ignore[index]
    # kopf posts events from its own queue: the event may follow the status write
    assert wait_for(lambda: [e["reason"] for e in kubectl.events("photos", namespace)], 15,
                    what="an event") == ["Created"]


def test_points_written_to_the_collection_show_in_status(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    name = collection_name(namespace)
    kubectl.apply(album("photos", name), namespace)
    wait_condition(kubectl, "photos", namespace, "Ready", "True")
    qdrant(lambda c: c.upsert(name, [qm.PointStruct(id=i, vector=[0.1 * (i + 1)] * 8)
                                     for i in range(5)]))
    wait_for(lambda: kubectl.get("albumcollection", "photos", namespace)["status"].get(
        "pointsCount") == 5, timeout=3 * RESYNC_S + 10, what="pointsCount 5")


def test_a_collection_deleted_by_hand_is_recreated_within_one_interval(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    name = collection_name(namespace)
    kubectl.apply(album("photos", name), namespace)
    wait_condition(kubectl, "photos", namespace, "Ready", "True")
    qdrant(lambda c: c.delete_collection(name))
    obj = resource_when(kubectl, "photos", namespace,
                        lambda o: o["status"].get("recreations") == 1, RESYNC_S * 2 + 5,
                        what="recreated")
    assert qdrant(lambda c: c.collection_exists(name))
    assert condition(obj, "Synced")["reason"] == "InSync"  # type: ignore[index]
    warnings = wait_for(lambda: [e for e in kubectl.events("photos", namespace)
                                 if e["reason"] == "Recreated"], 15, what="Recreated event")
    assert warnings[0]["type"] == "Warning"


def test_a_second_claim_on_one_collection_is_a_conflict_and_the_first_stays_ready(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    name = collection_name(namespace)
    kubectl.apply(album("first", name), namespace)
    wait_condition(kubectl, "first", namespace, "Ready", "True")
    kubectl.apply(album("second", name), namespace)
    second = wait_condition(kubectl, "second", namespace, "Ready", "False", "Conflict")
    assert f"{namespace}/first" in condition(second, "Ready")["message"]  # type: ignore[index]
    # Several resyncs later nothing has changed hands.
    wait_for(lambda: qdrant(lambda c: c.get_collection(name)).config.metadata[
        "albumops.io/owner"] == f"{namespace}/first", what="first still owns it")
    first = kubectl.get("albumcollection", "first", namespace)
    assert condition(first, "Ready")["status"] == "True"  # type: ignore[index]


def test_an_unowned_collection_of_another_vector_size_is_left_untouched(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    name = collection_name(namespace)

    def make_by_hand(c: QdrantClient) -> None:
        c.create_collection(name, vectors_config=qm.VectorParams(size=4,
                                                                 distance=qm.Distance.DOT))
        c.upsert(name, [qm.PointStruct(id=1, vector=[1, 0, 0, 0], payload={"keep": True})])

    qdrant(make_by_hand)
    kubectl.apply(album("photos", name, size=8), namespace)
    obj = wait_condition(kubectl, "photos", namespace, "Synced", "False",
                         "ImmutableFieldMismatch")
    message = condition(obj, "Synced")["message"]  # type: ignore[index]
    assert "vectors.size (spec 8, Qdrant 4)" in message
    assert "vectors.distance (spec Cosine, Qdrant Dot)" in message
    assert condition(obj, "Ready")["reason"] == "Conflict"  # type: ignore[index]
    info = qdrant(lambda c: c.get_collection(name))
    assert info.points_count == 1
    assert info.config.params.vectors.size == 4
    assert not info.config.metadata


def test_an_unowned_compatible_collection_is_adopted(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    name = collection_name(namespace)
    qdrant(lambda c: c.create_collection(
        name, vectors_config=qm.VectorParams(size=8, distance=qm.Distance.COSINE)))
    kubectl.apply(album("photos", name), namespace)
    wait_condition(kubectl, "photos", namespace, "Synced", "True", "InSync")
    metadata = qdrant(lambda c: c.get_collection(name)).config.metadata
    assert metadata["albumops.io/owner"] == f"{namespace}/photos"
    assert wait_for(lambda: [e for e in kubectl.events("photos", namespace)
                             if e["reason"] == "Adopted"], 15, what="Adopted event")


@pytest.mark.parametrize(("policy", "remains"), [("Retain", True), ("Delete", False)])
def test_deletion_policy_decides_whether_the_collection_stays(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], policy: str,
        remains: bool) -> None:
    name = collection_name(namespace)
    kubectl.apply(album("photos", name, deletionPolicy=policy), namespace)
    wait_condition(kubectl, "photos", namespace, "Ready", "True")
    kubectl.run("delete", "albumcollection", "photos", "--timeout=30s", namespace=namespace)
    assert not kubectl.exists("albumcollection", "photos", namespace)
    assert qdrant(lambda c: c.collection_exists(name)) is remains


def test_pause_stops_all_writes_until_it_is_lifted(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    name = collection_name(namespace)
    kubectl.apply(album("photos", name), namespace)
    wait_condition(kubectl, "photos", namespace, "Ready", "True")
    kubectl.run("annotate", "albumcollection/photos", "albumops.io/paused=true",
                namespace=namespace)
    qdrant(lambda c: c.delete_collection(name))
    obj = wait_condition(kubectl, "photos", namespace, "Synced", "Unknown", "Paused",
                         timeout=RESYNC_S * 2 + 5)
    assert "create collection" in condition(obj, "Synced")["message"]  # type: ignore[index]
    assert not qdrant(lambda c: c.collection_exists(name))
    kubectl.run("annotate", "albumcollection/photos", "albumops.io/paused-",
                namespace=namespace)
    resource_when(kubectl, "photos", namespace,
                  lambda o: o["status"].get("recreations") == 1, 30, what="recreated")
    assert qdrant(lambda c: c.collection_exists(name))


# Every setting the spec can set, with values that exercise the diff: a 32-bit quantile,
# payload index options, on-disk vectors, several shards. The embedded engine ignores most of
# them (status.ignoredSettings); the server applies them all.
IDLE_SPEC: dict[str, Any] = {
    "vectors": {"size": 32, "distance": "Cosine", "onDisk": True,
                "hnsw": {"m": 12, "onDisk": False},
                "quantization": {"scalar": {"quantile": 0.95, "alwaysRam": False}}},
    "hnsw": {"m": 8, "efConstruct": 48, "fullScanThreshold": 10, "payloadM": 8},
    "quantization": {"scalar": {"quantile": 0.923456789, "alwaysRam": True}},
    # In KB: 32-d vectors pass it at about 80 points, so segments get HNSW and quantization.
    "optimizers": {"indexingThreshold": 10, "deletedThreshold": 0.25,
                   "vacuumMinVectorNumber": 100, "defaultSegmentNumber": 2,
                   "maxOptimizationThreads": 1, "maxSegmentSize": 200000},
    "onDiskPayload": True,
    "shardNumber": 2,
    "replicationFactor": 1,
    "writeConsistencyFactor": 1,
    "payloadIndexes": [
        {"field": "album_id", "type": "keyword", "isTenant": True},
        {"field": "taken_at", "type": "datetime", "isPrincipal": True},
        {"field": "rating", "type": "integer", "lookup": True, "range": False},
        {"field": "title", "type": "text", "tokenizer": "word", "lowercase": True},
        {"field": "score", "type": "float", "onDisk": True},
    ],
}


def collection_writes(collection: str) -> float:
    """Writes the operator made to one collection (albumops_qdrant_collection_writes_total)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "albumops_qdrant_collection_writes":
            continue
        total += sum(sample.value for sample in metric.samples
                     if sample.name.endswith("_total")
                     and sample.labels.get("collection") == collection)
    return total


def photo_points(count: int, dim: int, seed: int = 7) -> list[qm.PointStruct]:
    rng = random.Random(seed)
    return [qm.PointStruct(
        id=i, vector=[rng.uniform(-1, 1) for _ in range(dim)],
        payload={"album_id": f"album-{i % 5}", "taken_at": f"2020-01-{1 + i % 28:02d}T10:00:00Z",
                 "rating": i % 5, "title": f"Photo number {i}", "score": i / count})
        for i in range(count)]


def upsert_photos(qdrant: Callable[..., Any], name: str, count: int, dim: int) -> None:
    points = photo_points(count, dim)
    for start in range(0, count, 500):
        batch = points[start:start + 500]
        qdrant(lambda c, batch=batch: c.upsert(name, batch, wait=True))


def resource_when(kubectl: Kubectl, name: str, namespace: str,
                  ready: Callable[[dict[str, Any]], bool], timeout: float, what: str
                  ) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = kubectl.get("albumcollection", name, namespace)
        return obj if ready(obj) else None
    return wait_for(check, timeout, what=what)


def settled_status(kubectl: Kubectl, name: str, namespace: str) -> dict[str, Any] | None:
    """The resource once a reconcile leaves its status as it found it."""
    before = kubectl.get("albumcollection", name, namespace)
    after = reconcile_now(kubectl, "albumcollection", name, namespace)
    return after if after.get("status") == before.get("status") else None


def assert_reconciles_write_nothing(kubectl: Kubectl, name: str, namespace: str,
                                    collection: str, what: str = "",
                                    idle: bool = False) -> None:
    """One more reconcile, as a resync runs it: no Qdrant write; when ``idle`` (Qdrant has
    nothing left to do either, so what it reports stays), the status untouched."""
    writes = collection_writes(collection)
    before = kubectl.get("albumcollection", name, namespace)
    after = reconcile_now(kubectl, "albumcollection", name, namespace)
    assert collection_writes(collection) == writes, f"{what}: Qdrant written to again"
    if idle:
        assert after.get("status") == before.get("status"), f"{what}: status rewritten"


def wait_timer_resyncs(operator: OperatorThread, uid: str, count: int) -> None:
    """Until the operator's resync timer has reconciled the object ``count`` more times
    (each success moves the time its next resync is due)."""
    assert operator.services is not None
    retries = operator.services.retries
    seen: list[Any] = []

    def resynced() -> bool:
        due = retries.resting_until(uid)
        if due is not None and (not seen or due > seen[-1]):
            seen.append(due)
        return len(seen) > count
    wait_for(resynced, timeout=RESYNC_S * (count + 1) + 10, interval=0.05,
             what=f"{count} resyncs")


def test_an_idle_resource_is_not_written_to(kubectl: Kubectl, namespace: str,
                                            qdrant: Callable[..., Any],
                                            operator: OperatorThread) -> None:
    """Every setting set, indexes built over 2,000 points: then reconciles and resyncs write
    nothing, neither to Qdrant nor to the resource."""
    name = collection_name(namespace)
    kubectl.apply(album("photos", name, size=32, **IDLE_SPEC), namespace)
    wait_condition(kubectl, "photos", namespace, "Ready", "True")
    upsert_photos(qdrant, name, 2000, 32)
    resource_when(kubectl, "photos", namespace,
                  lambda o: (o["status"].get("pointsCount"), o["status"].get("qdrantStatus"))
                  == (2000, "green"), timeout=120, what="2,000 points, green, in status")
    settled = wait_for(lambda: settled_status(kubectl, "photos", namespace), timeout=60,
                       what="a settled status")
    assert condition(settled, "Synced")["status"] == "True"  # type: ignore[index]
    assert settled["status"]["drift"] == []
    writes = collection_writes(name)
    # Reconciles on demand, then the timer's own resyncs: each observes and plans, writes
    # nothing.
    for _ in range(3):
        assert_reconciles_write_nothing(kubectl, "photos", namespace, name, "idle",
                                        idle=True)
    version = kubectl.get("albumcollection", "photos", namespace)["metadata"][
        "resourceVersion"]
    wait_timer_resyncs(operator, settled["metadata"]["uid"], 2)
    print(f"writes to {name} while idle: {collection_writes(name) - writes:g}")
    assert collection_writes(name) == writes, "Qdrant writes while idle"
    assert kubectl.get("albumcollection", "photos", namespace)["metadata"][
        "resourceVersion"] == version, "the resource was patched while idle"


def test_deletion_does_not_hang_when_qdrant_stays_unreachable(
        kubectl: Kubectl, namespace: str, operator: OperatorThread) -> None:
    kubectl.run("create", "secret", "generic", "nowhere",
                f"--from-literal=url=http://127.0.0.1:{free_port()}", namespace=namespace)
    kubectl.apply(album("photos", collection_name(namespace), deletionPolicy="Delete",
                        connection={"secretRef": {"name": "nowhere"}}), namespace)
    wait_condition(kubectl, "photos", namespace, "Ready", "False", "QdrantUnavailable")
    kubectl.run("delete", "albumcollection", "photos", "--wait=false", namespace=namespace)
    grace = operator.config.deletion_grace_seconds
    wait_for(lambda: not kubectl.exists("albumcollection", "photos", namespace),
             timeout=grace + 30, what="the finalizer to be released")
    reasons = [e["reason"] for e in kubectl.events("photos", namespace)]
    assert "FinalizerReleased" in reasons


def test_a_missing_connection_secret_is_reported(kubectl: Kubectl, namespace: str,
                                                 operator: OperatorThread) -> None:
    kubectl.apply(album("photos", collection_name(namespace),
                        connection={"secretRef": {"name": "absent"}}), namespace)
    obj = wait_condition(kubectl, "photos", namespace, "Ready", "False", "InvalidConnection")
    assert "absent" in condition(obj, "Ready")["message"]  # type: ignore[index]


# --- on a real Qdrant server: what Qdrant itself reports (its REST answer) ----------------

def rest_collection(server: ServerTarget, name: str) -> dict[str, Any]:
    info: dict[str, Any] = server.rest("GET", f"/collections/{name}")
    return info


def segments(server: ServerTarget, name: str) -> list[dict[str, Any]]:
    """Every segment of the collection as Qdrant's telemetry describes it (index built,
    quantization, storage), over all local shards."""
    telemetry = server.rest("GET", "/telemetry", params={"details_level": 10})
    found: list[dict[str, Any]] = []
    for collection in telemetry["collections"]["collections"]:
        if collection.get("id") == name:
            for shard in collection["shards"]:
                found += (shard.get("local") or {}).get("segments", [])
    return found


def rest_when(server: ServerTarget, name: str, ready: Callable[[dict[str, Any]], bool],
              timeout: float, what: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        info = rest_collection(server, name)
        return info if ready(info) else None
    return wait_for(check, timeout, what=what)


ECHO_SPEC: dict[str, Any] = {
    "namedVectors": {
        "image": {"size": 32, "distance": "Cosine", "onDisk": True, "datatype": "Float16",
                  "hnsw": {"m": 12, "efConstruct": 64, "onDisk": False},
                  "quantization": {"binary": {"alwaysRam": True}}},
        "text": {"size": 16, "distance": "Dot", "onDisk": False},
    },
    "sparseVectors": {"keywords": {"modifier": "idf", "onDisk": True}},
    "hnsw": {"m": 8, "efConstruct": 48, "fullScanThreshold": 10, "onDisk": False,
             "payloadM": 8},
    "quantization": {"scalar": {"quantile": 0.923456789, "alwaysRam": True}},
    "optimizers": {"indexingThreshold": 10, "memmapThreshold": 20000,
                   "defaultSegmentNumber": 2, "maxSegmentSize": 200000,
                   "deletedThreshold": 0.25, "vacuumMinVectorNumber": 100,
                   "flushIntervalSec": 1, "maxOptimizationThreads": 1},
    "onDiskPayload": True,
    "shardNumber": 2,
    "replicationFactor": 2,
    "writeConsistencyFactor": 2,
    "payloadIndexes": [
        {"field": "album_id", "type": "keyword", "isTenant": True},
        {"field": "taken_at", "type": "datetime", "isPrincipal": True},
        {"field": "rating", "type": "integer", "lookup": True, "range": False},
        {"field": "title", "type": "text", "tokenizer": "word", "minTokenLen": 2,
         "maxTokenLen": 20, "lowercase": True},
        {"field": "score", "type": "float", "onDisk": True},
        {"field": "place", "type": "geo"},
        {"field": "public", "type": "bool"},
        {"field": "uid", "type": "uuid", "isTenant": False},
    ],
}


@pytest.mark.qdrant_server
def test_server_collection_shows_every_declared_setting(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
        qdrant_server: ServerTarget) -> None:
    name = collection_name(namespace)
    manifest = album("photos", name)
    del manifest["spec"]["vectors"]
    manifest["spec"].update(ECHO_SPEC)
    kubectl.apply(manifest, namespace)
    wait_condition(kubectl, "photos", namespace, "Ready", "True")
    info = rest_collection(qdrant_server, name)
    config = info["config"]
    assert config["params"]["vectors"] == {
        "image": {"size": 32, "distance": "Cosine", "on_disk": True, "datatype": "float16",
                  "hnsw_config": {"m": 12, "ef_construct": 64, "on_disk": False},
                  "quantization_config": {"binary": {"always_ram": True}}},
        "text": {"size": 16, "distance": "Dot", "on_disk": False, "datatype": "float32"},
    }
    assert config["params"]["sparse_vectors"] == {
        "keywords": {"index": {"on_disk": True}, "modifier": "idf"}}
    assert {k: config["params"][k] for k in ("shard_number", "replication_factor",
                                             "write_consistency_factor", "on_disk_payload")
            } == {"shard_number": 2, "replication_factor": 2, "write_consistency_factor": 2,
                  "on_disk_payload": True}
    assert config["hnsw_config"] | {"m": 8, "ef_construct": 48, "full_scan_threshold": 10,
                                    "on_disk": False, "payload_m": 8} == config["hnsw_config"]
    # Qdrant keeps the quantile as a 32-bit float: 0.923456789 comes back as 0.9234568.
    assert config["quantization_config"] == {
        "scalar": {"type": "int8", "quantile": 0.9234568, "always_ram": True}}
    wanted_optimizers = {"indexing_threshold": 10, "memmap_threshold": 20000,
                         "default_segment_number": 2, "max_segment_size": 200000,
                         "deleted_threshold": 0.25, "vacuum_min_vector_number": 100,
                         "flush_interval_sec": 1, "max_optimization_threads": 1}
    assert {k: config["optimizer_config"][k] for k in wanted_optimizers} == wanted_optimizers
    schema = {field: (index["data_type"], {k: v for k, v in index.get("params", {}).items()
                                           if v is not None and k != "type"})
              for field, index in info["payload_schema"].items()}
    assert schema == {
        "album_id": ("keyword", {"is_tenant": True}),
        "taken_at": ("datetime", {"is_principal": True}),
        "rating": ("integer", {"lookup": True, "range": False}),
        "title": ("text", {"tokenizer": "word", "min_token_len": 2, "max_token_len": 20,
                           "lowercase": True}),
        "score": ("float", {"on_disk": True}),
        "place": ("geo", {}),
        "public": ("bool", {}),
        "uid": ("uuid", {"is_tenant": False}),
    }
    obj = kubectl.get("albumcollection", "photos", namespace)
    assert config["metadata"]["albumops.io/owner-uid"] == obj["metadata"]["uid"]

    # With data past the indexing threshold, Qdrant builds what the spec asked for.
    rng = random.Random(3)
    points = [qm.PointStruct(
        id=i, vector={"image": [rng.uniform(-1, 1) for _ in range(32)],
                      "text": [rng.uniform(-1, 1) for _ in range(16)]},
        payload={"album_id": f"album-{i % 4}", "taken_at": "2020-06-01T12:00:00Z",
                 "rating": i % 5, "title": f"Photo {i}", "score": i / 3000, "public": True,
                 "place": {"lon": 13.4, "lat": 52.5}, "uid": str(uuid.UUID(int=i + 1))})
        for i in range(3000)]
    for start in range(0, len(points), 500):
        batch = points[start:start + 500]
        qdrant(lambda c, batch=batch: c.upsert(name, batch, wait=True))
    built = rest_when(qdrant_server, name, lambda i: i["status"] == "green" and i[
        "indexed_vectors_count"] == 2 * 3000, timeout=180,
        what="both vectors of 3,000 points indexed and green")
    assert built["points_count"] == 3000
    # The optimized segments (the appendable ones stay plain until they fill up).
    indexed = [s for s in segments(qdrant_server, name) if not s["info"]["is_appendable"]]
    assert sum(s["info"]["num_indexed_vectors"] for s in indexed) == 2 * 3000
    for segment in indexed:
        image = segment["config"]["vector_data"]["image"]
        text = segment["config"]["vector_data"]["text"]
        assert (image["index"]["type"], text["index"]["type"]) == ("hnsw", "hnsw")
        assert (image["index"]["options"]["m"], text["index"]["options"]["m"]) == (12, 8)
        assert image["index"]["options"]["ef_construct"] == 64
        assert image["quantization_config"] == {"binary": {"always_ram": True}}
        assert text["quantization_config"]["scalar"]["always_ram"] is True
        assert image["datatype"] == "float16"
        assert image["storage_type"] == "Mmap"
        assert text["storage_type"].startswith("InRam")
        assert segment["config"]["payload_storage_type"]["type"] in {"mmap", "on_disk"}
    # Built and idle: in sync, and the status shows what Qdrant reports.
    obj = resource_when(kubectl, "photos", namespace,
                        lambda o: (o["status"].get("pointsCount"), o["status"].get(
                            "qdrantStatus")) == (3000, "green"),
                        timeout=RESYNC_S * 3 + 10, what="status with 3,000 points")
    assert obj["status"]["drift"] == []
    assert condition(obj, "Synced")["status"] == "True"  # type: ignore[index]
    assert obj["status"]["indexedVectorsCount"] == built["indexed_vectors_count"]


# Base spec for changes: every mutable setting set, so each case changes one of them.
CHANGE_SPEC: dict[str, Any] = {
    "vectors": {"size": 8, "distance": "Cosine", "onDisk": False, "hnsw": {"m": 12},
                "quantization": {"scalar": {"quantile": 0.95}}},
    "sparseVectors": {"keywords": {"modifier": "none"}},
    "hnsw": {"m": 16, "efConstruct": 128},
    "quantization": {"scalar": {"quantile": 0.99, "alwaysRam": True}},
    "optimizers": {"indexingThreshold": 20000, "deletedThreshold": 0.2},
    "onDiskPayload": True,
    "payloadIndexes": [{"field": "taken_at", "type": "datetime"},
                       {"field": "album_id", "type": "keyword", "isTenant": True}],
}


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _vector(info: dict[str, Any]) -> dict[str, Any]:
    vector: dict[str, Any] = info["config"]["params"]["vectors"]
    return vector


def _index(info: dict[str, Any], field: str) -> dict[str, Any] | None:
    index: dict[str, Any] | None = info["payload_schema"].get(field)
    return index


# (case, change to the spec (a JSON merge patch), what Qdrant then reports). Tests take the
# case name as their parameter and look the rest up, so test IDs stay short and hashable.
SPEC_CHANGE_CASES: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ("hnsw.m", {"hnsw": {"m": 24}}, lambda i: i["config"]["hnsw_config"]["m"] == 24),
    ("hnsw.efConstruct", {"hnsw": {"efConstruct": 200}},
     lambda i: i["config"]["hnsw_config"]["ef_construct"] == 200),
    ("quantization.scalar.quantile", {"quantization": {"scalar": {"quantile": 0.9}}},
     lambda i: i["config"]["quantization_config"]["scalar"]["quantile"] == 0.9),
    ("quantization.scalar.alwaysRam", {"quantization": {"scalar": {"alwaysRam": False}}},
     lambda i: i["config"]["quantization_config"]["scalar"]["always_ram"] is False),
    ("quantization scalar to binary",
     {"quantization": {"scalar": None, "binary": {"alwaysRam": True}}},
     lambda i: i["config"]["quantization_config"] == {"binary": {"always_ram": True}}),
    ("quantization disabled", {"quantization": {"scalar": None, "disabled": True}},
     lambda i: i["config"].get("quantization_config") is None),
    ("optimizers.indexingThreshold", {"optimizers": {"indexingThreshold": 0}},
     lambda i: i["config"]["optimizer_config"]["indexing_threshold"] == 0),
    ("optimizers.deletedThreshold", {"optimizers": {"deletedThreshold": 0.35}},
     lambda i: i["config"]["optimizer_config"]["deleted_threshold"] == 0.35),
    ("onDiskPayload", {"onDiskPayload": False},
     lambda i: i["config"]["params"]["on_disk_payload"] is False),
    ("replicationFactor and writeConsistencyFactor",
     {"replicationFactor": 2, "writeConsistencyFactor": 2},
     lambda i: (i["config"]["params"]["replication_factor"],
                i["config"]["params"]["write_consistency_factor"]) == (2, 2)),
    ("vectors.onDisk", {"vectors": {"onDisk": True}}, lambda i: _vector(i)["on_disk"] is True),
    ("vectors.hnsw.m", {"vectors": {"hnsw": {"m": 6}}},
     lambda i: _vector(i)["hnsw_config"]["m"] == 6),
    ("vectors.quantization", {"vectors": {"quantization": {"scalar": None,
                                                           "product": {"compression": "x4"}}}},
     lambda i: _vector(i)["quantization_config"] == {"product": {"compression": "x4"}}),
    ("sparseVectors.keywords.modifier", {"sparseVectors": {"keywords": {"modifier": "idf"}}},
     lambda i: i["config"]["params"]["sparse_vectors"]["keywords"]["modifier"] == "idf"),
    ("a payload index added",
     {"payloadIndexes": [*CHANGE_SPEC["payloadIndexes"],
                         {"field": "rating", "type": "integer", "range": True}]},
     lambda i: (_index(i, "rating") or {}).get("params", {}).get("range") is True),
    ("a payload index removed", {"payloadIndexes": CHANGE_SPEC["payloadIndexes"][1:]},
     lambda i: _index(i, "taken_at") is None and _index(i, "album_id") is not None),
    ("a payload index option changed",
     {"payloadIndexes": [{"field": "taken_at", "type": "datetime", "isPrincipal": True},
                         CHANGE_SPEC["payloadIndexes"][1]]},
     lambda i: (_index(i, "taken_at") or {}).get("params", {}).get("is_principal") is True),
]


SPEC_CHANGES = {case[0]: case[1:] for case in SPEC_CHANGE_CASES}


def one_resource_per_case(namespace: str, cases: list[str], stem: str
                          ) -> dict[str, tuple[str, str]]:
    """Case -> (resource, collection): the cases of one table run side by side, each on
    its own resource, instead of one after another."""
    return {what: (f"{stem}-{i}", collection_name(namespace, f"_{i}"))
            for i, what in enumerate(cases)}


def left_of(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.5)


@pytest.mark.qdrant_server
def test_server_spec_changes_are_applied_within_one_resync(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
        qdrant_server: ServerTarget) -> None:
    cases = one_resource_per_case(namespace, list(SPEC_CHANGES), "change")
    for resource, name in cases.values():
        kubectl.apply(album(resource, name, **CHANGE_SPEC), namespace)
    for what, (resource, name) in cases.items():
        wait_condition(kubectl, resource, namespace, "Synced", "True", "InSync", timeout=60)
        applied = SPEC_CHANGES[what][1]
        assert not applied(rest_collection(qdrant_server, name)), \
            f"{what}: already so before the change"
    applied_by: dict[str, float] = {}
    for what, (resource, name) in cases.items():
        changed = album(resource, name, **CHANGE_SPEC)
        changed["spec"] = _merge(changed["spec"], SPEC_CHANGES[what][0])
        kubectl.apply(changed, namespace)
        applied_by[what] = time.monotonic() + RESYNC_S + 3
    for what, (resource, name) in cases.items():
        applied = SPEC_CHANGES[what][1]

        def now_applied(n: str = name, a: Check = applied) -> bool:
            return a(rest_collection(qdrant_server, n))
        wait_for(now_applied, timeout=left_of(applied_by[what]), interval=0.1,
                 what=f"{what} applied in Qdrant")
        obj = wait_condition(kubectl, resource, namespace, "Synced", "True", "InSync",
                             timeout=RESYNC_S * 3 + 5)
        assert obj["status"]["drift"] == [], what
    # Converged: a further reconcile finds nothing to write.
    for what, (resource, name) in cases.items():
        assert_reconciles_write_nothing(kubectl, resource, namespace, name,
                                        f"{what}: Qdrant never converges on the spec")
        assert SPEC_CHANGES[what][1](rest_collection(qdrant_server, name)), what


# (case, hand changes [(method, path under /collections/NAME, body)], drift paths reported,
#  the spec's value is back, the hand value is still there)
Check = Callable[[dict[str, Any]], bool]
HAND_CHANGE_CASES: list[tuple[str, list[tuple[str, str, Any]], list[str], Check, Check]] = [
    ("hnsw", [("PATCH", "", {"hnsw_config": {"m": 4}})], ["hnsw.m"],
     lambda i: i["config"]["hnsw_config"]["m"] == 16,
     lambda i: i["config"]["hnsw_config"]["m"] == 4),
    ("quantization disabled", [("PATCH", "", {"quantization_config": "Disabled"})],
     ["quantization"],
     lambda i: i["config"]["quantization_config"] == {
         "scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}},
     lambda i: i["config"].get("quantization_config") is None),
    ("quantization quantile and alwaysRam", [("PATCH", "", {"quantization_config": {
        "scalar": {"type": "int8", "quantile": 0.5, "always_ram": False}}})],
     ["quantization.scalar.quantile", "quantization.scalar.alwaysRam"],
     lambda i: i["config"]["quantization_config"]["scalar"]["quantile"] == 0.99,
     lambda i: i["config"]["quantization_config"]["scalar"]["quantile"] == 0.5),
    ("optimizers", [("PATCH", "", {"optimizers_config": {"indexing_threshold": 0,
                                                         "deleted_threshold": 0.5}})],
     ["optimizers.indexingThreshold", "optimizers.deletedThreshold"],
     lambda i: (i["config"]["optimizer_config"]["indexing_threshold"],
                i["config"]["optimizer_config"]["deleted_threshold"]) == (20000, 0.2),
     lambda i: i["config"]["optimizer_config"]["indexing_threshold"] == 0),
    ("params", [("PATCH", "", {"params": {"on_disk_payload": False, "replication_factor": 3,
                                          "write_consistency_factor": 2}})],
     ["onDiskPayload", "replicationFactor", "writeConsistencyFactor"],
     lambda i: (i["config"]["params"]["on_disk_payload"],
                i["config"]["params"]["replication_factor"],
                i["config"]["params"]["write_consistency_factor"]) == (True, 1, 1),
     lambda i: i["config"]["params"]["replication_factor"] == 3),
    ("vector settings", [("PATCH", "", {"vectors": {"": {
        "on_disk": True, "hnsw_config": {"m": 4},
        "quantization_config": {"binary": {}}}}})],
     ["vectors.hnsw.m", "vectors.quantization", "vectors.onDisk"],
     lambda i: (_vector(i)["on_disk"], _vector(i)["hnsw_config"]["m"],
                _vector(i)["quantization_config"]) == (
         False, 12, {"scalar": {"type": "int8", "quantile": 0.95}}),
     lambda i: _vector(i)["on_disk"] is True),
    # A per-vector override made by hand shadows the collection-wide efConstruct the spec sets.
    ("a vector override shadowing the collection hnsw",
     [("PATCH", "", {"vectors": {"": {"hnsw_config": {"ef_construct": 40}}}})],
     ["vectors.hnsw.efConstruct"],
     lambda i: _vector(i)["hnsw_config"].get("ef_construct") in (None, 128),
     lambda i: _vector(i)["hnsw_config"].get("ef_construct") == 40),
    ("sparse modifier", [("PATCH", "", {"sparse_vectors": {"keywords": {"modifier": "idf"}}})],
     ["sparseVectors.keywords.modifier"],
     lambda i: i["config"]["params"]["sparse_vectors"]["keywords"]["modifier"] == "none",
     lambda i: i["config"]["params"]["sparse_vectors"]["keywords"]["modifier"] == "idf"),
    ("payload index dropped", [("DELETE", "/index/taken_at?wait=true", None)],
     ["payloadIndexes.taken_at"],
     lambda i: _index(i, "taken_at") is not None,
     lambda i: _index(i, "taken_at") is None),
    ("payload index recreated without its options",
     [("DELETE", "/index/album_id?wait=true", None),
      ("PUT", "/index?wait=true", {"field_name": "album_id", "field_schema": "keyword"})],
     ["payloadIndexes.album_id"],
     lambda i: (_index(i, "album_id") or {}).get("params", {}).get("is_tenant") is True,
     lambda i: not (_index(i, "album_id") or {}).get("params", {}).get("is_tenant")),
]


HAND_CHANGES = {case[0]: case[1:] for case in HAND_CHANGE_CASES}


@pytest.mark.qdrant_server
@pytest.mark.parametrize("policy", ["Repair", "Report"])
def test_server_settings_changed_by_hand_are_repaired_or_reported(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
        qdrant_server: ServerTarget, policy: str) -> None:
    cases = one_resource_per_case(namespace, list(HAND_CHANGES), "hand")
    for resource, name in cases.values():
        kubectl.apply(album(resource, name, driftPolicy=policy, **CHANGE_SPEC), namespace)
    writes: dict[str, float] = {}
    for what, (resource, name) in cases.items():
        wait_condition(kubectl, resource, namespace, "Synced", "True", "InSync", timeout=60)
        assert HAND_CHANGES[what][2](rest_collection(qdrant_server, name)), what
        writes[what] = collection_writes(name)
    seen_by: dict[str, float] = {}
    for what, (_, name) in cases.items():
        by_hand, _paths, _repaired, still_by_hand = HAND_CHANGES[what]
        for method, path, body in by_hand:
            qdrant_server.rest(method, f"/collections/{name}{path}",
                               **({"json": body} if body is not None else {}))
        seen_by[what] = time.monotonic() + HAND_CHANGE_SEEN_S
        assert still_by_hand(rest_collection(qdrant_server, name)), what
    for what, (resource, name) in cases.items():
        if policy == "Repair":
            writes[what] = assert_repaired(kubectl, namespace, qdrant_server, what, resource,
                                           name, left_of(seen_by[what]), writes[what])
        else:
            assert_reported(kubectl, namespace, what, resource, left_of(seen_by[what]))
    # Nothing more to do: a further reconcile writes nothing (neither a repair again and
    # again, nor anything under Report), and under Report the hand change stays.
    for what, (resource, name) in cases.items():
        assert_reconciles_write_nothing(kubectl, resource, namespace, name,
                                        f"{what} ({policy})")
        assert collection_writes(name) == writes[what], f"{what}: {policy} wrote to Qdrant"
        if policy == "Report":
            assert HAND_CHANGES[what][3](rest_collection(qdrant_server, name)), \
                f"{what}: changed under Report"


def assert_repaired(kubectl: Kubectl, namespace: str, server: ServerTarget, what: str,
                    resource: str, name: str, timeout: float, writes: float) -> float:
    """The case repaired in Qdrant, said in status and in one event; the writes it took."""
    by_hand, paths, repaired, _ = HAND_CHANGES[what]
    wait_for(lambda: repaired(rest_collection(server, name)), timeout=timeout, interval=0.1,
             what=f"{what} repaired in Qdrant")
    obj = wait_condition(kubectl, resource, namespace, "Synced", "True", "InSync",
                         timeout=RESYNC_S * 3 + 5)
    # kopf posts events from a queue of its own: the event may follow the status write
    repairs = wait_for(lambda: [e["message"] for e in kubectl.events(resource, namespace)
                                if e["reason"] == "Repaired"], 15, what="Repaired event")
    # One event per repair; a change made by hand in two requests may meet a resync in
    # between, and then takes two repairs.
    assert set(repairs) == {f"collection {name} repaired: {', '.join(paths)}"}, repairs
    assert len(repairs) <= len(by_hand), repairs
    assert obj["status"]["drift"] == [], what
    written = collection_writes(name)
    assert written > writes, what
    return written


def assert_reported(kubectl: Kubectl, namespace: str, what: str, resource: str,
                    timeout: float) -> None:
    paths = HAND_CHANGES[what][1]
    obj = wait_condition(kubectl, resource, namespace, "Synced", "False", "DriftReported",
                         timeout=timeout)
    assert obj["status"]["drift"] == paths, what
    assert ", ".join(paths) in condition(obj, "Synced")["message"]  # type: ignore[index]
    assert condition(obj, "Ready")["status"] == "True", what  # type: ignore[index]


@pytest.mark.qdrant_server
@pytest.mark.parametrize("policy", ["Repair", "Report"])
def test_server_index_added_by_hand_is_reported_and_kept(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
        qdrant_server: ServerTarget, policy: str) -> None:
    name = collection_name(namespace)
    kubectl.apply(album("photos", name, driftPolicy=policy, **CHANGE_SPEC), namespace)
    wait_condition(kubectl, "photos", namespace, "Synced", "True", "InSync")
    writes = collection_writes(name)
    qdrant_server.rest("PUT", f"/collections/{name}/index?wait=true",
                       json={"field_name": "camera", "field_schema": "keyword"})
    obj = resource_when(kubectl, "photos", namespace,
                        lambda o: bool(o["status"].get("unmanagedPayloadIndexes")),
                        timeout=HAND_CHANGE_SEEN_S, what="the hand-made index reported")
    assert obj["status"]["unmanagedPayloadIndexes"] == ["camera"]
    assert obj["status"]["ownedPayloadIndexes"] == ["album_id", "taken_at"]
    assert obj["status"]["drift"] == []
    synced = condition(obj, "Synced")
    assert synced is not None
    assert (synced["status"], synced["reason"]) == ("True", "InSync")
    assert "not declared by this resource, left in place: camera" in synced["message"]
    assert_reconciles_write_nothing(kubectl, "photos", namespace, name, "a hand-made index")
    assert _index(rest_collection(qdrant_server, name), "camera") is not None
    assert collection_writes(name) == writes


def _recreate_by_hand(server: ServerTarget, name: str, body: dict[str, Any]) -> None:
    """Deletes and creates the collection; the operator may recreate it in between (it
    resyncs every RESYNC_S), so until the hand-made one is what stands."""
    def attempt() -> bool:
        server.rest("DELETE", f"/collections/{name}")
        response = requests.put(f"{server.url}/collections/{name}", json=body, timeout=60,
                                headers={"api-key": server.api_key or ""})
        return response.status_code < 300
    wait_for(attempt, timeout=30, interval=0.1, what="the collection recreated by hand")
    server.rest("PUT", f"/collections/{name}/points?wait=true", json={"points": [
        {"id": i, "vector": [1.0 + i] + [0.5] * (body["vectors"]["size"] - 1),
         "payload": {"keep": True}} for i in range(3)]})


# case -> (the collection made by hand (Qdrant's REST body), the mismatch named, Ready's
# reason: Conflict when the hand-made collection carries no owner stamp)
RECREATED_BY_HAND: dict[str, tuple[dict[str, Any], str, str]] = {
    "another vector size, owner kept": ({"vectors": {"size": 4, "distance": "Cosine"}},
                                        "vectors.size (spec 8, Qdrant 4)",
                                        "ImmutableFieldMismatch"),
    "another shard number, no owner": ({"vectors": {"size": 8, "distance": "Cosine"},
                                        "shard_number": 3},
                                       "shardNumber (spec 1, Qdrant 3)", "Conflict"),
}


@pytest.mark.qdrant_server
@pytest.mark.parametrize("what", list(RECREATED_BY_HAND))
def test_server_immutable_drift_is_reported_and_nothing_is_destroyed(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
        qdrant_server: ServerTarget, what: str) -> None:
    recreated, mismatch, ready_reason = RECREATED_BY_HAND[what]
    name = collection_name(namespace)
    kubectl.apply(album("photos", name, **CHANGE_SPEC), namespace)
    wait_condition(kubectl, "photos", namespace, "Synced", "True", "InSync")
    body = dict(recreated)
    if ready_reason == "ImmutableFieldMismatch":
        body["metadata"] = rest_collection(qdrant_server, name)["config"]["metadata"]
    _recreate_by_hand(qdrant_server, name, body)
    before = rest_collection(qdrant_server, name)
    writes = collection_writes(name)
    obj = wait_condition(kubectl, "photos", namespace, "Synced", "False",
                         "ImmutableFieldMismatch", timeout=RESYNC_S * 2 + 5)
    assert mismatch in condition(obj, "Synced")["message"]  # type: ignore[index]
    assert mismatch in obj["status"]["drift"]
    assert condition(obj, "Ready")["reason"] == ready_reason  # type: ignore[index]
    reconcile_now(kubectl, "albumcollection", "photos", namespace)
    after = rest_collection(qdrant_server, name)
    assert collection_writes(name) == writes, "written to despite the immutable mismatch"
    assert after["points_count"] == 3
    assert after["config"]["params"] == before["config"]["params"]
    assert after["config"].get("metadata") == before["config"].get("metadata")
    assert after["payload_schema"] == {}


@pytest.mark.qdrant_server
def test_server_cluster_spreads_shards_and_replicas_over_every_peer(
        kubectl: Kubectl, namespace: str, operator: OperatorThread,
        qdrant_cluster: LocalQdrant) -> None:
    """Three peers, six shards, two replicas each: Ready, every peer holds shards, every shard
    has two replicas; then idle, a hand change on one peer is repaired through another."""
    name = collection_name(namespace)
    kubectl.run("create", "secret", "generic", "cluster",
                f"--from-literal=url={qdrant_cluster.url}",
                f"--from-literal=apiKey={qdrant_cluster.api_key}", namespace=namespace)
    kubectl.apply(album("photos", name, shardNumber=6, replicationFactor=2,
                        writeConsistencyFactor=1, hnsw={"m": 16},
                        payloadIndexes=[{"field": "album_id", "type": "keyword"}],
                        connection={"secretRef": {"name": "cluster"}}), namespace)
    obj = wait_condition(kubectl, "photos", namespace, "Ready", "True", timeout=60)
    assert obj["status"]["engine"] == "server"
    placement: dict[int, list[int]] = {}

    def all_active() -> bool:
        placement.clear()
        for index, peer in enumerate(qdrant_cluster.peers):
            answer = peer.get(f"/collections/{name}/cluster").json()["result"]
            for shard in answer["local_shards"]:
                if shard["state"] != "Active":
                    return False
                placement.setdefault(shard["shard_id"], []).append(index)
        return sorted(placement) == list(range(6))
    wait_for(all_active, timeout=30, what="every shard active")
    assert all(len(peers) == 2 for peers in placement.values()), placement
    per_peer = {i: sorted(s for s, peers in placement.items() if i in peers)
                for i in range(len(qdrant_cluster.peers))}
    assert all(per_peer.values()), per_peer
    print(f"local shards per peer: {per_peer}")
    for peer in qdrant_cluster.peers:
        params = peer.get(f"/collections/{name}").json()["result"]["config"]["params"]
        assert (params["shard_number"], params["replication_factor"]) == (6, 2)
    # Idle on the cluster: no writes, no status patches.
    wait_for(lambda: settled_status(kubectl, "photos", namespace), timeout=30,
             what="a settled status")
    assert_reconciles_write_nothing(kubectl, "photos", namespace, name, "idle on a cluster",
                                    idle=True)
    # A change by hand on the last peer is repaired (the operator talks to the first).
    last = qdrant_cluster.peers[-1]
    response = requests.patch(f"{last.url}/collections/{name}", json={"hnsw_config": {"m": 4}},
                              headers={"api-key": qdrant_cluster.api_key}, timeout=30)
    assert response.status_code == 200, response.text
    wait_for(lambda: all(p.get(f"/collections/{name}").json()["result"]["config"][
        "hnsw_config"]["m"] == 16 for p in qdrant_cluster.peers), timeout=RESYNC_S * 2 + 5,
        what="hnsw.m repaired on every peer")


# case -> (spec changes, the field the API server names)
REFUSED_BY_QDRANT: dict[str, tuple[dict[str, Any], str]] = {
    "an integer index with neither lookup nor range": (
        {"payloadIndexes": [{"field": "count", "type": "integer", "lookup": False,
                             "range": False}]}, "spec.payloadIndexes[0].lookup"),
    "vacuumMinVectorNumber below Qdrant's minimum of 100": (
        {"optimizers": {"vacuumMinVectorNumber": 50}}, "spec.optimizers.vacuumMinVectorNumber"),
    "maxSegmentSize zero": ({"optimizers": {"maxSegmentSize": 0}},
                            "spec.optimizers.maxSegmentSize"),
}


@pytest.mark.parametrize("what", list(REFUSED_BY_QDRANT))
def test_settings_a_qdrant_server_refuses_are_refused_by_the_api_server(
        kubectl: Kubectl, namespace: str, what: str) -> None:
    changes, field = REFUSED_BY_QDRANT[what]
    """Once accepted, these never reached Qdrant (422) and the resource retried forever."""
    result = kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(
        album("photos", collection_name(namespace), **changes)), namespace=namespace,
        check=False)
    assert result.returncode != 0, f"accepted: {what}"
    assert f"{field}: " in result.stderr, result.stderr
