"""A stale read of the alias after the swap (a lagging peer behind a load-balanced Service, a
caching proxy), injected by a proxy between the operator Pod and Qdrant: the build is not
recorded as failed, and the master behind the alias is never deleted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from album_operator_dev.localcluster import node as local_node
from album_operator_dev.localcluster.nodehost import GATEWAY
from tests.e2e.conftest import (
    QDRANT_API_KEY,
    Helm,
    QdrantInCluster,
    Release,
    deploy_qdrant,
    finish,
    new_namespace,
)
from tests.e2e.story import (
    AliasWatch,
    apply_collections,
    apply_merge,
    fill_sources,
    merge_status,
    verified_masters,
)
from tests.faultproxy import FaultProxy
from tests.helpers import Kubectl


@pytest.fixture
def proxied_release(helm: Helm, kube: Kubectl, node: local_node.NodeState,
                    request: pytest.FixtureRequest) -> Iterator[
                        tuple[Release, QdrantInCluster, FaultProxy]]:
    release = Release(helm, kube, new_namespace("e2e-stale"))
    qdrant = deploy_qdrant(kube, node.qdrant_image, release.namespace, peers=1)
    with FaultProxy(qdrant.url, host=GATEWAY) as proxy:
        kube.run("create", "secret", "generic", "qdrant", f"--from-literal=url={proxy.url}",
                 f"--from-literal=apiKey={QDRANT_API_KEY}", namespace=release.namespace)
        release.values = ["--set", "qdrant.existingSecret=qdrant"]
        yield release, qdrant, proxy
        finish(release, request)


def test_a_stale_alias_read_after_the_swap_never_fails_the_build_nor_deletes_the_master(
        proxied_release: tuple[Release, QdrantInCluster, FaultProxy]) -> None:
    release, qdrant, proxy = proxied_release
    release.install()
    kube, namespace = release.kube, release.namespace
    apply_collections(kube, namespace, (2024, 2025))
    total = fill_sources(qdrant, (2024, 2025), 300)
    proxy.stale_alias_reads_after_swap(times=3)

    with AliasWatch(qdrant) as watch:
        apply_merge(kube, namespace)
        kube.run("wait", "--for=condition=Ready", "mastermerge/album-master",
                 "--timeout=300s", namespace=namespace)

    assert proxy.stale_reads_served >= 1
    status = merge_status(kube, namespace)
    assert [r["result"] for r in status["history"]] == ["Succeeded"]
    assert watch.seen == {status["aliasTarget"]}
    assert watch.seen <= verified_masters(kube, namespace)
    assert qdrant.rest("POST", "/collections/album_master/points/count",
                       json={"exact": True})["count"] == total
