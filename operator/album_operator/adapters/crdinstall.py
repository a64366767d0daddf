"""Installs (or updates) the generated CRDs and waits until the API server serves them."""

from __future__ import annotations

import time
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from album_operator.core.crdgen import build_crd
from album_operator.models.common import GROUP, VERSION
from album_operator.models.kinds import ALL_KINDS

ESTABLISHED_TIMEOUT_S = 60.0
FIELD_MANAGER = "album-operator"


def _established(crd: Any) -> bool:
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def apply_crds(api_client: kubernetes.client.ApiClient) -> list[str]:
    """Server-side apply of every generated CRD as field manager ``album-operator``.

    Forced: fields that someone else set (an edit by hand, an older client-side apply, a Helm
    release) are taken over and set to what the models generate. Fields no generated CRD
    mentions, such as a Helm release's labels, are left to whoever set them.
    """
    crds = DynamicClient(api_client).resources.get(  # type: ignore[no-untyped-call]
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    names = []
    for info in ALL_KINDS:
        body = build_crd(info)
        crds.server_side_apply(body=body, field_manager=FIELD_MANAGER, force_conflicts=True)
        names.append(body["metadata"]["name"])
    return names


def wait_established(api_client: kubernetes.client.ApiClient, names: list[str]) -> None:
    api = kubernetes.client.ApiextensionsV1Api(api_client)
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    pending = set(names)
    while pending and time.monotonic() < deadline:
        pending = {n for n in pending
                   if not _established(api.read_custom_resource_definition(n))}
        if pending:
            time.sleep(0.2)
    if pending:
        raise RuntimeError(f"CRDs not Established after {ESTABLISHED_TIMEOUT_S:.0f}s: {pending}")


def wait_served(api_client: kubernetes.client.ApiClient) -> None:
    """Until the API server's discovery lists every kind and each can be listed. A CRD is
    Established before discovery names it and before its storage is ready: an operator
    started in between finds nothing to watch (kopf then waits for the next CRD change) or is
    refused with 429 "storage is (re)initializing"."""
    api = kubernetes.client.CustomObjectsApi(api_client)
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    wanted = {info.plural for info in ALL_KINDS}
    while not _served(api, wanted):
        if time.monotonic() > deadline:
            raise RuntimeError(f"CRDs not served after {ESTABLISHED_TIMEOUT_S:.0f}s")
        time.sleep(0.2)


def _served(api: kubernetes.client.CustomObjectsApi, plurals: set[str]) -> bool:
    groups = kubernetes.client.ApisApi(api.api_client).get_api_versions().groups or []
    if not any(g.name == GROUP and any(v.version == VERSION for v in g.versions)
               for g in groups):
        return False  # kopf reads the group list first: a group missing there is not watched
    try:
        discovered = api.get_api_resources(GROUP, VERSION)
        if not plurals <= {resource.name for resource in discovered.resources}:
            return False
        for plural in plurals:
            api.list_cluster_custom_object(GROUP, VERSION, plural, limit=1)
    except ApiException as exc:
        if exc.status in (404, 429, 503):
            return False
        raise
    return True


def install_crds(api_client: kubernetes.client.ApiClient) -> list[str]:
    names = apply_crds(api_client)
    wait_established(api_client, names)
    wait_served(api_client)
    return names
