"""The shipped Argo CD health check (gitops/argocd/health.lua, run in Lua 5.1) on live objects
read from the real API server, with the operator running."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from album_operator.core.health import READY_REASONS, assess
from tests.helpers import Kubectl, condition, wait_for
from tests.unit.test_health_lua import run_health

# health is about the status the operator writes, not the engine behind it
pytestmark = [pytest.mark.cluster, pytest.mark.embedded_only]


def health_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The Lua's answer, checked to be the catalogue's (core/health.assess) too."""
    result = run_health(obj)
    assert (result["status"], result["message"]) == assess(obj)
    return result


def handled_ready(kubectl: Kubectl, kind: str, name: str, namespace: str,
                  settled: Callable[[dict[str, Any]], bool], timeout: float = 60
                  ) -> dict[str, Any]:
    """The object once its Ready condition is for the current generation and ``settled``."""
    def check() -> dict[str, Any] | None:
        obj = kubectl.get(kind, name, namespace)
        ready = condition(obj, "Ready")
        if ready and ready.get("observedGeneration") == obj["metadata"]["generation"] \
                and settled(ready):
            return obj
        return None
    return wait_for(check, timeout, what=f"{kind}/{name} Ready settled")


def album(name: str, collection: str) -> dict[str, Any]:
    return {"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
            "metadata": {"name": name},
            "spec": {"year": 2020, "collectionName": collection,
                     "vectors": {"size": 8, "distance": "Cosine"}}}


def test_a_ready_album_collection_is_healthy_and_a_newer_generation_progressing(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    collection = f"health_{namespace.replace('-', '_')}"
    kubectl.apply(album("photos", collection), namespace)
    obj = handled_ready(kubectl, "albumcollection", "photos", namespace,
                        lambda ready: ready["status"] == "True")

    assert health_of(obj) == {"status": "Healthy",
                              "message": f"Ready: Collection {collection} is ready."}

    # the spec changed and the operator has not handled it yet (too quick to catch live):
    # the API server bumps metadata.generation, Ready still reports the previous one
    newer = copy.deepcopy(obj)
    newer["metadata"]["generation"] += 1
    generation = newer["metadata"]["generation"]
    assert health_of(newer) == {
        "status": "Progressing",
        "message": f"generation {generation} not handled yet (observed {generation - 1}); "
                   f"Ready: Collection {collection} is ready."}


def test_a_master_merge_whose_source_does_not_exist_is_degraded(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    missing = f"health_missing_{uuid.uuid4().hex[:8]}"
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "MasterMerge",
                   "metadata": {"name": "master"},
                   "spec": {"alias": f"health_alias_{uuid.uuid4().hex[:8]}",
                            "sources": [missing]}}, namespace)
    obj = handled_ready(kubectl, "mastermerge", "master", namespace,
                        lambda ready: ready["status"] == "False"
                        and ready.get("reason") != "Building")

    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["reason"] in READY_REASONS["MasterMerge"], ready
    result = health_of(obj)
    assert result["status"] == "Degraded", result
    assert result["message"] == f"{ready['reason']}: {ready['message']}"
    assert missing in result["message"]


def test_an_edge_policy_of_a_missing_collection_is_degraded(
        kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any]) -> None:
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "EdgeSnapshotPolicy",
                   "metadata": {"name": "edge"},
                   "spec": {"collection": f"health_missing_{uuid.uuid4().hex[:8]}"}}, namespace)
    obj = handled_ready(kubectl, "edgesnapshotpolicy", "edge", namespace,
                        lambda ready: ready["status"] == "False"
                        and ready.get("reason") != "NothingPublished")

    ready = condition(obj, "Ready")
    assert ready is not None
    assert ready["reason"] in READY_REASONS["EdgeSnapshotPolicy"], ready
    assert health_of(obj) == {"status": "Degraded",
                              "message": f"{ready['reason']}: {ready['message']}"}


@pytest.mark.parametrize(("kind", "spec"), [
    ("AlbumCollection", {"year": 2020, "vectors": {"size": 8}}),
    ("MasterMerge", {"sources": ["album_2020"]}),
    ("EdgeSnapshotPolicy", {"collection": "album_2020"}),
])
def test_an_object_no_operator_has_reported_on_is_progressing(
        kubectl: Kubectl, kind: str, spec: dict[str, Any]) -> None:
    """As the API server returns it before any status: no operator watches this namespace."""
    unwatched = f"health-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", unwatched)
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": kind,
                   "metadata": {"name": "fresh"}, "spec": spec}, unwatched)
    obj = kubectl.get(kind.lower(), "fresh", unwatched)
    assert "status" not in obj or not condition(obj, "Ready")
    assert health_of(obj) == {"status": "Progressing",
                              "message": "waiting for the operator's Ready condition"}
