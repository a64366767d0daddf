"""Checks ``album-operator run`` makes before kopf starts, so the common set-up mistakes end it
with one line that says the fix instead of a stream of retries."""

from __future__ import annotations

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from album_operator.models.kinds import ALL_KINDS


class CrdsMissing(Exception):
    """The API server does not serve this operator's kinds."""


def missing_crds(api_client: kubernetes.client.ApiClient) -> list[str]:
    """The operator's CRDs the API server does not have. Credentials that may not read CRDs
    (the chart's namespaced mode without cluster reads) and an unreachable API server tell
    nothing here: kopf reports those itself."""
    api = kubernetes.client.ApiextensionsV1Api(api_client)
    missing = []
    for info in ALL_KINDS:
        try:
            api.read_custom_resource_definition(info.crd_name, _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:
                return []
            missing.append(info.crd_name)
        except (OSError, urllib3.exceptions.HTTPError):
            return []
    return missing


def require_crds(api_client: kubernetes.client.ApiClient) -> None:
    missing = missing_crds(api_client)
    if missing:
        raise CrdsMissing(
            f"the API server has no CRD {', '.join(missing)}: install them with "
            "'album-operator crds install' (or 'kubectl apply -f crds/', or the Helm chart)")
