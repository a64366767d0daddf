"""The Kubernetes API calls the operator makes itself (kopf does the watching and patching)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from album_operator.adapters.qdrant.connection import ConnectionSettings
from album_operator.adapters.redaction import register_secret
from album_operator.models.common import GROUP, VERSION


class SecretUnavailable(RuntimeError):
    """A referenced Secret or key does not exist (a user error, reported in status)."""


def load_api_client() -> kubernetes.client.ApiClient:
    """In-cluster credentials when running in a Pod, otherwise KUBECONFIG."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


class KubeApi:
    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretUnavailable(f"Secret {namespace}/{name} not found") from None
            raise RuntimeError(f"reading Secret {namespace}/{name}: HTTP {exc.status}") from None
        data = secret.data or {}
        decoded = {key: base64.b64decode(value).decode() for key, value in data.items()}
        for value in decoded.values():
            register_secret(value)
        return decoded

    async def connection_from_secret(self, namespace: str, name: str) -> ConnectionSettings:
        data = await self.read_secret(namespace, name)
        if not data.get("url"):
            raise SecretUnavailable(f"Secret {namespace}/{name} has no key 'url'")
        return ConnectionSettings(url=data["url"], api_key=data.get("apiKey") or None,
                                  ca_pem=data.get("ca.crt") or None)

    async def list_custom(self, plural: str, namespace: str,
                          label_selector: str | None = None) -> list[dict[str, Any]]:
        result = await asyncio.to_thread(
            self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural,
            label_selector=label_selector or "")
        items: list[dict[str, Any]] = result.get("items", [])
        return items
