"""Installs (or updates) the generated CRDs and waits until the API server serves them."""

from __future__ import annotations

import time
from typing import Any

import kubernetes
from kubernetes.dynamic import DynamicClient

from album_operator.core.crdgen import build_crd
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


def install_crds(api_client: kubernetes.client.ApiClient) -> list[str]:
    names = apply_crds(api_client)
    wait_established(api_client, names)
    return names
