"""AlbumCollection end to end: kubectl apply -> operator -> a real Qdrant engine -> status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.localcluster.cluster import free_port
from album_operator.runner import OperatorThread
from tests.helpers import Kubectl, condition, wait_for

pytestmark = pytest.mark.cluster
T = TypeVar("T")
RESYNC_S = 2.0



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
    assert condition(obj, "Synced")["reason"] == "Created"  # type: ignore[index]
    assert [e["reason"] for e in kubectl.events("photos", namespace)] == ["Created"]


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
    obj = wait_condition(kubectl, "photos", namespace, "Synced", "True", "Recreated",
                         timeout=RESYNC_S * 2 + 5)
    assert qdrant(lambda c: c.collection_exists(name))
    assert obj["status"]["recreations"] == 1
    warnings = [e for e in kubectl.events("photos", namespace) if e["reason"] == "Recreated"]
    assert warnings
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
    wait_condition(kubectl, "photos", namespace, "Synced", "True", "Adopted")
    metadata = qdrant(lambda c: c.get_collection(name)).config.metadata
    assert metadata["albumops.io/owner"] == f"{namespace}/photos"
    assert "Adopted" in [e["reason"] for e in kubectl.events("photos", namespace)]


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
    wait_condition(kubectl, "photos", namespace, "Synced", "True", "Recreated")
    assert qdrant(lambda c: c.collection_exists(name))


def test_an_idle_resource_is_not_written_to(kubectl: Kubectl, namespace: str,
                                            qdrant: Callable[..., Any]) -> None:
    name = collection_name(namespace)
    kubectl.apply(album("photos", name), namespace)
    wait_condition(kubectl, "photos", namespace, "Ready", "True")
    settled = wait_for(lambda: _stable_version(kubectl, namespace), timeout=20,
                       what="a settled resourceVersion")
    # Three more resync intervals: no status patch, no Qdrant write changes the object.
    import time
    time.sleep(RESYNC_S * 3)
    assert kubectl.get("albumcollection", "photos", namespace)["metadata"][
        "resourceVersion"] == settled


def _stable_version(kubectl: Kubectl, namespace: str) -> str | None:
    import time
    before = kubectl.get("albumcollection", "photos", namespace)["metadata"]["resourceVersion"]
    time.sleep(RESYNC_S + 0.5)
    after = kubectl.get("albumcollection", "photos", namespace)["metadata"]["resourceVersion"]
    return after if before == after else None



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


SERVER_SPEC: dict[str, Any] = {
    "hnsw": {"m": 16, "efConstruct": 128},
    "quantization": {"scalar": {"quantile": 0.99}},
    "optimizers": {"indexingThreshold": 20000},
    "payloadIndexes": [{"field": "taken_at", "type": "datetime"}],
}


@pytest.mark.qdrant_server
@pytest.mark.parametrize(("what", "change_by_hand", "still_repaired"), [
    ("hnsw", lambda c, n: c.update_collection(n, hnsw_config=qm.HnswConfigDiff(m=4)),
     lambda i: i.config.hnsw_config.m == 16),
    ("quantization", lambda c, n: c.update_collection(
        n, quantization_config=qm.Disabled.DISABLED),
     lambda i: isinstance(i.config.quantization_config, qm.ScalarQuantization)),
    ("optimizers", lambda c, n: c.update_collection(
        n, optimizers_config=qm.OptimizersConfigDiff(indexing_threshold=0)),
     lambda i: i.config.optimizer_config.indexing_threshold == 20000),
    ("payload index", lambda c, n: c.delete_payload_index(n, "taken_at", wait=True),
     lambda i: "taken_at" in i.payload_schema),
])
def test_server_settings_changed_by_hand_are_repaired(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], what: str,
        change_by_hand: Callable[[QdrantClient, str], Any],
        still_repaired: Callable[[qm.CollectionInfo], bool]) -> None:
    name = collection_name(namespace)
    kubectl.apply(album("photos", name, **SERVER_SPEC), namespace)
    wait_condition(kubectl, "photos", namespace, "Ready", "True")
    assert qdrant(lambda c: still_repaired(c.get_collection(name)))
    qdrant(lambda c: change_by_hand(c, name))
    wait_condition(kubectl, "photos", namespace, "Synced", "True", "Repaired",
                   timeout=RESYNC_S * 3 + 10)
    assert qdrant(lambda c: still_repaired(c.get_collection(name))), what


@pytest.mark.qdrant_server
def test_server_drift_is_only_reported_under_report_policy(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    name = collection_name(namespace)
    kubectl.apply(album("photos", name, driftPolicy="Report", **SERVER_SPEC), namespace)
    wait_condition(kubectl, "photos", namespace, "Ready", "True")
    qdrant(lambda c: c.update_collection(name, hnsw_config=qm.HnswConfigDiff(m=4)))
    obj = wait_condition(kubectl, "photos", namespace, "Synced", "False", "DriftReported",
                         timeout=RESYNC_S * 3 + 10)
    assert obj["status"]["drift"] == ["hnsw.m"]
    assert qdrant(lambda c: c.get_collection(name)).config.hnsw_config.m == 4
