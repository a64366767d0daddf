"""Namespaces are tenants: nothing in one reads or writes what another owns, unless its owner
grants it; a device's access ends as soon as its spec, its Secret or its policy says so; a
Secret that cannot be used is reported as such and never blocks a deletion."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import requests
from qdrant_client import models as qm

from tests.conftest import sibling_namespace
from tests.helpers import Kubectl, condition, wait_for
from tests.integration.test_edge_snapshot_policy import policy, prefix, token_secret

pytestmark = pytest.mark.cluster
DIM = 16
POINTS = 50




def album(name: str, collection: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
            "metadata": {"name": name, "labels": {"album": "photos"}},
            "spec": {"year": 2024, "collectionName": collection,
                     "vectors": {"size": DIM, "distance": "Cosine"}, **spec}}


def owned_collection(kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
                     collection: str, **spec: Any) -> dict[Any, Any]:
    """An AlbumCollection in ``namespace`` holding POINTS points; returns them by id."""
    kubectl.apply(album("album-2024", collection, **spec), namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollection/album-2024",
                "--timeout=60s", namespace=namespace)
    rng = np.random.default_rng(11)
    points = [qm.PointStruct(id=i, vector=rng.normal(size=DIM).tolist(),
                             payload={"year": 2024, "owner": namespace}) for i in range(POINTS)]
    qdrant(lambda c: c.upsert(collection, points, wait=True))
    return {p.id: p.payload for p in points}


def payloads(qdrant: Callable[..., Any], collection: str) -> dict[Any, Any]:
    records = qdrant(lambda c: c.scroll(collection, limit=1000, with_payload=True)[0])
    return {r.id: r.payload for r in records}


def ready(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    found = condition(kubectl.get(kind, name, namespace), "Ready")
    return found if found and found.get("reason") not in (None, "Building") else None


def wait_reason(kubectl: Kubectl, kind: str, name: str, namespace: str, reason: str,
                timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = condition(kubectl.get(kind, name, namespace), "Ready")
        return found if found and found.get("reason") == reason else None
    return wait_for(check, timeout, what=f"{kind}/{name} Ready reason {reason}")


def reasons(kubectl: Kubectl, name: str, namespace: str) -> set[str]:
    return {e["reason"] for e in kubectl.events(name, namespace)}


def listing(edge_url: str, namespace: str, name: str, token: str) -> int:
    return requests.get(f"{edge_url}/v1/namespaces/{namespace}/policies/{name}/snapshots",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def merge(sources: list[str], alias: str) -> dict[str, Any]:
    return {"apiVersion": "albumops.io/v1alpha1", "kind": "MasterMerge",
            "metadata": {"name": "master"},
            "spec": {"alias": alias, "sources": sources, "verify": {"sampleQueries": 2}}}


def test_another_namespace_cannot_merge_publish_or_write_a_tenants_collection_without_a_grant(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], edge_url: str) -> None:
    tenant_a, tenant_b = namespace, sibling_namespace(kubectl, namespace)
    collection = f"{prefix(tenant_a)}_2024"
    original = owned_collection(kubectl, tenant_a, qdrant, collection)

    # B merges A's collection: refused before anything is read; the master never exists.
    alias = f"{prefix(tenant_b)}_master"
    kubectl.apply(merge([collection], alias), tenant_b)
    refused = wait_reason(kubectl, "mastermerge", "master", tenant_b, "OwnedByAnotherNamespace")
    assert (f"collection {collection} belongs to namespace {tenant_a}, which does not share "
            f"it with {tenant_b} for reading") in refused["message"]
    assert "Failed" in reasons(kubectl, "master", tenant_b)
    assert not qdrant(lambda c: c.collection_exists(f"{alias}_v1"))

    # B publishes A's collection to its devices: refused, its devices are served nothing.
    token_b = f"token-b-{uuid.uuid4().hex}"
    kubectl.apply(token_secret("kiosk-token", token_b), tenant_b)
    kubectl.apply(policy("steal", collection, "kiosk-token"), tenant_b)
    published = wait_reason(kubectl, "edgesnapshotpolicy", "steal", tenant_b,
                            "OwnedByAnotherNamespace")
    assert tenant_a in published["message"]
    assert listing(edge_url, tenant_b, "steal", token_b) == 401
    assert not kubectl.get("edgesnapshotpolicy", "steal", tenant_b)["status"].get("snapshots")

    # B claims the same collection with its own AlbumCollection: it loses (Conflict), and a
    # policy of B's routing device points to that name cannot write into A's collection.
    kubectl.apply(album("album-2024", collection), tenant_b)
    wait_reason(kubectl, "albumcollection", "album-2024", tenant_b, "Conflict")
    own = f"{prefix(tenant_b)}_own"
    kubectl.apply({**album("album-own", own), "spec": {**album("x", own)["spec"],
                                                       "year": 2023}}, tenant_b)
    kubectl.apply(policy("writer", own, "kiosk-token", upload={
        "routeBy": {"field": "year", "template": f"{prefix(tenant_a)}_{{year}}"}}), tenant_b)
    kubectl.run("wait", "--for=condition=Ready", "edgesnapshotpolicy/writer", "--timeout=60s",
                namespace=tenant_b)
    answer = requests.post(
        f"{edge_url}/v1/namespaces/{tenant_b}/policies/writer/points",
        headers={"Authorization": f"Bearer {token_b}"}, timeout=30,
        json={"points": [{"id": 3, "vector": [0.5] * DIM, "payload": {"year": 2024}}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == []
    assert [r["id"] for r in answer.json()["rejected"]] == [3]

    # A fixed upload target of A's: refused whole.
    kubectl.apply(policy("writer", own, "kiosk-token", upload={"collection": collection}),
                  tenant_b)
    fixed = wait_reason(kubectl, "edgesnapshotpolicy", "writer", tenant_b,
                        "OwnedByAnotherNamespace")
    assert fixed["message"].startswith("upload.collection: ")
    assert listing(edge_url, tenant_b, "writer", token_b) == 401
    assert payloads(qdrant, collection) == original, "nothing of A's was written"

    # A grants B read access: B's merge and publication now work; writing stays refused.
    kubectl.apply(album("album-2024", collection,
                        sharedWith=[{"namespace": tenant_b, "access": "Read"}]), tenant_a)
    kubectl.run("annotate", "mastermerge/master", "albumops.io/rebuild=granted",
                namespace=tenant_b)
    wait_for(lambda: kubectl.get("mastermerge", "master", tenant_b)["status"].get("phase")
             == "Succeeded", 120, what="B's merge of the shared collection")
    assert qdrant(lambda c: c.count(alias, exact=True).count) == POINTS
    wait_reason(kubectl, "edgesnapshotpolicy", "steal", tenant_b, "Ready")
    assert listing(edge_url, tenant_b, "steal", token_b) == 200
    still = wait_reason(kubectl, "edgesnapshotpolicy", "writer", tenant_b,
                        "OwnedByAnotherNamespace")
    assert "for writing" in still["message"]
    assert payloads(qdrant, collection) == original


def test_a_removed_device_a_deleted_token_and_a_failed_policy_lose_access_within_a_resync(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any], edge_url: str) -> None:
    collection = f"{prefix(namespace)}_2024"
    owned_collection(kubectl, namespace, qdrant, collection, deletionPolicy="Delete")
    tokens = {name: f"{name}-{uuid.uuid4().hex}" for name in ("lobby", "hall", "door")}
    for name, token in tokens.items():
        kubectl.apply(token_secret(f"{name}-token", token), namespace)
    devices = [{"name": name, "tokenSecretRef": f"{name}-token"} for name in tokens]
    kubectl.apply({**policy("edge", collection, "unused"), "spec": {
        **policy("edge", collection, "unused")["spec"], "devices": devices}}, namespace)
    kubectl.run("wait", "--for=condition=Ready", "edgesnapshotpolicy/edge", "--timeout=60s",
                namespace=namespace)
    assert {name: listing(edge_url, namespace, "edge", t) for name, t in tokens.items()} == {
        "lobby": 200, "hall": 200, "door": 200}

    # A device removed from the spec: refused within one resync (1 s in these tests).
    kubectl.run("patch", "edgesnapshotpolicy/edge", "--type=json", "-p", json.dumps(
        [{"op": "remove", "path": "/spec/devices/0"}]), namespace=namespace)
    wait_for(lambda: listing(edge_url, namespace, "edge", tokens["lobby"]) == 401, 10,
             what="the removed device to be refused")
    # A deleted token Secret: refused within one resync, and reported.
    kubectl.run("delete", "secret", "hall-token", namespace=namespace)
    wait_for(lambda: listing(edge_url, namespace, "edge", tokens["hall"]) == 401, 10,
             what="the device whose Secret was deleted to be refused")
    missing = wait_reason(kubectl, "edgesnapshotpolicy", "edge", namespace,
                          "DeviceSecretMissing")
    assert "device hall: Secret" in missing["message"]
    assert "hall-token not found" in missing["message"]
    assert listing(edge_url, namespace, "edge", tokens["door"]) == 200

    # The policy's reconcile fails (its collection is gone): nothing is served any more,
    # not what the last good reconcile allowed.
    kubectl.run("delete", "albumcollection/album-2024", "--timeout=60s", namespace=namespace)
    wait_reason(kubectl, "edgesnapshotpolicy", "edge", namespace, "CollectionMissing")
    assert listing(edge_url, namespace, "edge", tokens["door"]) == 401


def binary_secret(name: str, **keys: bytes) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v).decode() for k, v in keys.items()}}


def test_an_undecodable_secret_is_reported_by_name_and_key_and_never_blocks_deletion(
        kubectl: Kubectl, namespace: str, operator: Any) -> None:
    value = b"\xff\xfeqdrant-url-\x80"
    kubectl.apply(binary_secret("qdrant-conn", url=value), namespace)
    kubectl.apply({**album("album-2024", f"{prefix(namespace)}_x", deletionPolicy="Delete",
                           connection={"secretRef": {"name": "qdrant-conn"}})}, namespace)
    found = wait_for(lambda: ready(kubectl, "albumcollection", "album-2024", namespace), 60,
                     what="the AlbumCollection's Ready condition")
    assert found["status"] == "False"
    assert f"Secret {namespace}/qdrant-conn key 'url' is not UTF-8 text" in found["message"]

    kubectl.apply({**merge(["a_source"], f"{prefix(namespace)}_master"), "spec": {
        **merge(["a_source"], f"{prefix(namespace)}_master")["spec"],
        "connection": {"secretRef": {"name": "qdrant-conn"}}}}, namespace)
    merged = wait_reason(kubectl, "mastermerge", "master", namespace, "SecretUnavailable")
    assert "key 'url' is not UTF-8 text" in merged["message"]
    assert "SecretUnavailable" in reasons(kubectl, "master", namespace)

    for kind, name in (("albumcollection", "album-2024"), ("mastermerge", "master")):
        kubectl.run("delete", kind, name, "--timeout=60s", namespace=namespace)
        assert not kubectl.exists(kind, name, namespace)
    logged = json.dumps([kubectl.get("events", e["metadata"]["name"], namespace)
                         for e in kubectl.events("album-2024", namespace)])
    assert "qdrant-url" not in logged
