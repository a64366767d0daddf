"""GitOps replace and backup restore: a MasterMerge deleted and applied again (a new uid, the
alias still on the master it built) adopts its own alias and masters and swaps again, instead
of rebuilding and failing at the swap forever."""

from __future__ import annotations

from tests.e2e.conftest import QdrantInCluster, Release
from tests.e2e.story import apply_collections, apply_merge, fill_sources, merge_status
from tests.helpers import wait_for


def test_a_mastermerge_deleted_and_applied_again_adopts_its_alias_and_swaps(
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

    kube.run("delete", "mastermerge", "album-master", "--timeout=120s", namespace=namespace)
    apply_merge(kube, namespace)
    assert kube.get("mastermerge", "album-master", namespace)["metadata"]["uid"] != uid

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
