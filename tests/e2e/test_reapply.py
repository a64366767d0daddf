"""GitOps replace and backup restore: the namespace's resources deleted and applied again (new
uids; the collections, the alias and the masters left in Qdrant) adopt their own collections,
alias and masters and swap again, instead of rebuilding and failing at the swap forever."""

from __future__ import annotations

import json

from tests.e2e.conftest import QdrantInCluster, Release
from tests.e2e.story import apply_collections, apply_merge, fill_sources, merge_status
from tests.helpers import Kubectl, wait_for


def _backup(kube: Kubectl, namespace: str) -> str:
    """The namespace's resources as a backup tool keeps them: spec and labels, no uid."""
    listed = json.loads(kube.run("get", "albumcollections,mastermerges", "-o", "json",
                                 namespace=namespace).stdout)
    for item in listed["items"]:
        item.pop("status", None)
        item["metadata"] = {key: item["metadata"][key] for key in ("name", "labels")
                            if key in item["metadata"]}
    return json.dumps(listed)


def test_a_backup_restore_of_the_namespace_adopts_its_collections_alias_and_masters(
        server_release: tuple[Release, QdrantInCluster]) -> None:
    release, qdrant = server_release
    release.install()
    kube, namespace = release.kube, release.namespace
    apply_collections(kube, namespace, (2024, 2025))
    total = fill_sources(qdrant, (2024, 2025), 300)
    apply_merge(kube, namespace)
    kube.run("wait", "--for=condition=Ready", "mastermerge/album-master", "--timeout=300s",
             namespace=namespace)
    first = merge_status(kube, namespace)["aliasTarget"]
    uid = kube.get("mastermerge", "album-master", namespace)["metadata"]["uid"]

    backup = _backup(kube, namespace)
    kube.run("delete", "mastermerges,albumcollections", "--all", "--timeout=120s",
             namespace=namespace)
    kube.run("apply", "-f", "-", stdin=backup, namespace=namespace)
    assert kube.get("mastermerge", "album-master", namespace)["metadata"]["uid"] != uid
    kube.run("wait", "--for=condition=Ready", "albumcollection", "--all", "--timeout=120s",
             namespace=namespace)

    def swapped_again() -> str | None:
        status = merge_status(kube, namespace)
        target = status.get("aliasTarget")
        return target if target and target != first else None

    second = wait_for(swapped_again, timeout=300, interval=2, what="a new master swapped in")
    aliases = qdrant.rest("GET", "/aliases")["aliases"]
    assert {"alias_name": "album_master", "collection_name": second} in aliases
    assert qdrant.rest("POST", "/collections/album_master/points/count",
                       json={"exact": True})["count"] == total
    conditions = {c["type"]: c for c in merge_status(kube, namespace)["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert first in {c["name"] for c in qdrant.rest("GET", "/collections")["collections"]}
