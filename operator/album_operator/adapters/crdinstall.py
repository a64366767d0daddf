"""Installs (or updates) the generated CRDs and waits until the API server serves them."""

from __future__ import annotations

import time
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from album_operator.core.crdgen import build_crd
from album_operator.models.kinds import ALL_KINDS

ESTABLISHED_TIMEOUT_S = 60.0


def _established(crd: Any) -> bool:
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def install_crds(api_client: kubernetes.client.ApiClient) -> list[str]:
    api = kubernetes.client.ApiextensionsV1Api(api_client)
    names = []
    for info in ALL_KINDS:
        body = build_crd(info)
        name = body["metadata"]["name"]
        try:
            current = api.read_custom_resource_definition(name)
            assert current.metadata is not None
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            api.replace_custom_resource_definition(name, body)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 404:
                raise
            api.create_custom_resource_definition(body)  # type: ignore[arg-type]
        names.append(name)
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    pending = set(names)
    while pending and time.monotonic() < deadline:
        pending = {n for n in pending
                   if not _established(api.read_custom_resource_definition(n))}
        if pending:
            time.sleep(0.2)
    if pending:
        raise RuntimeError(f"CRDs not Established after {ESTABLISHED_TIMEOUT_S:.0f}s: {pending}")
    return names
