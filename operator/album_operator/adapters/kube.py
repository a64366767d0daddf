"""The Kubernetes API calls the operator makes itself (kopf does the watching and patching)."""

from __future__ import annotations

import asyncio
import base64
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import kopf
import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from album_operator.adapters.qdrant.connection import ConnectionSettings
from album_operator.adapters.redaction import register_secret
from album_operator.core.peers import parse_grpc_port, parse_peer_urls
from album_operator.models.common import GROUP, VERSION

KOPF_GROUP, KOPF_VERSION = "kopf.dev", "v1"


class SecretUnavailable(RuntimeError):
    """A referenced Secret or key cannot be used: missing, forbidden, unreadable or not text
    (a user error, reported in status)."""


PUBLIC_KEYS = frozenset({"url", "peerUrls", "grpcPort", "ca.crt", "tls.crt"})


class SecretData(Mapping[str, str]):
    """A Secret's keys; each value is decoded (base64, then UTF-8) when read and registered
    for redaction. An undecodable value raises ``SecretUnavailable`` naming only its key."""

    def __init__(self, where: str, encoded: dict[str, str]) -> None:
        self._where = where
        self._encoded = encoded

    def __getitem__(self, key: str) -> str:
        raw = self._encoded[key]
        try:
            value = base64.b64decode(raw, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise SecretUnavailable(f"{self._where} key '{key}' is not UTF-8 text") from None
        if key in PUBLIC_KEYS:
            # where Qdrant is, and certificates, are not secret: errors keep naming them;
            # a password inside the URL is
            register_secret(urllib.parse.urlsplit(value).password if key == "url" else None)
        else:
            register_secret(value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._encoded)

    def __len__(self) -> int:
        return len(self._encoded)


class NoKubeConfiguration(Exception):
    """Neither in-cluster credentials nor a usable kubeconfig: the commands that talk to the
    API server say so in one line instead of the kubernetes library's chained tracebacks."""


NO_CONFIGURATION = "no Kubernetes configuration: set KUBECONFIG or run inside a cluster"


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster credentials when running in a Pod, otherwise $KUBECONFIG as it is now.

    The kubernetes library reads $KUBECONFIG once at import; passing the path explicitly lets
    tests and the demo point the operator at a cluster they started afterwards.
    Raises ``NoKubeConfiguration`` when there is neither.
    """
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
        return configuration
    except kubernetes.config.ConfigException:
        pass
    named = os.environ.get("KUBECONFIG")
    path = (named or os.path.expanduser("~/.kube/config")).split(os.pathsep)[0]
    if not os.path.isfile(path):
        raise NoKubeConfiguration(
            f"no Kubernetes configuration: KUBECONFIG={path} is not a file; set KUBECONFIG "
            "or run inside a cluster" if named else NO_CONFIGURATION)
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, client_configuration=configuration)
    except Exception as exc:  # ConfigException, a YAML or file error: all a bad kubeconfig
        reason = " ".join(str(exc).split())  # one line, even for a YAML parser's message
        raise NoKubeConfiguration(
            f"no usable Kubernetes configuration in {path} ({type(exc).__name__}: {reason}); "
            "set KUBECONFIG or run inside a cluster") from None
    return configuration


IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def current_namespace() -> str:
    """kubectl's default namespace: the kubeconfig context's, the Pod's in a cluster, else
    ``default``."""
    if os.path.isfile(IN_CLUSTER_NAMESPACE):
        with open(IN_CLUSTER_NAMESPACE) as namespace_file:
            return namespace_file.read().strip() or "default"
    path = (os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")).split(
        os.pathsep)[0]
    try:
        _, context = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=path)
    except Exception:  # no or a broken kubeconfig: load_configuration names the problem
        return "default"
    return str((context or {}).get("context", {}).get("namespace") or "default")


def load_api_client() -> kubernetes.client.ApiClient:
    return kubernetes.client.ApiClient(load_configuration())


def kopf_login(*, logger: kopf.Logger, **_: Any) -> kopf.ConnectionInfo:
    """kopf login handler using the same credentials as ``load_api_client``."""
    try:
        config = load_configuration()
    except NoKubeConfiguration as exc:
        raise kopf.LoginError(str(exc)) from None
    header = (config.get_api_key_with_prefix("BearerToken")
              or config.get_api_key_with_prefix("authorization"))
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (
        (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1]))
    logger.debug("logging in to %s", config.host)
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


class KubeApi:
    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)

    async def read_secret(self, namespace: str, name: str) -> SecretData:
        """The Secret's data, decoded key by key when read. Every way it can be unusable
        (missing, forbidden, unreadable, a key that is not UTF-8 text) is a
        ``SecretUnavailable`` naming the Secret (and key), never quoting a value."""
        where = f"Secret {namespace}/{name}"
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretUnavailable(f"{where} not found") from None
            if exc.status == 403:
                raise SecretUnavailable(f"{where} is not readable by the operator (forbidden): "
                                        "grant its ServiceAccount get on it") from None
            raise SecretUnavailable(f"reading {where} failed: HTTP {exc.status}") from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise SecretUnavailable(f"reading {where} failed: {type(exc).__name__}") from None
        return SecretData(where, {key: str(value) for key, value in (secret.data or {}).items()})
    async def connection_from_secret(self, namespace: str, name: str) -> ConnectionSettings:
        data = await self.read_secret(namespace, name)
        if not data.get("url"):
            raise SecretUnavailable(f"Secret {namespace}/{name} has no key 'url'")
        try:
            peer_urls = parse_peer_urls(data.get("peerUrls"))
        except ValueError as exc:
            raise SecretUnavailable(
                f"Secret {namespace}/{name} key 'peerUrls': {exc}") from None
        try:
            grpc_port = parse_grpc_port(data.get("grpcPort"))
        except ValueError as exc:
            raise SecretUnavailable(
                f"Secret {namespace}/{name} key 'grpcPort': {exc}") from None
        return ConnectionSettings(url=data["url"], api_key=data.get("apiKey") or None,
                                  ca_pem=data.get("ca.crt") or None, peer_urls=peer_urls,
                                  grpc_port=grpc_port)

    async def get_custom(self, plural: str, namespace: str, name: str
                         ) -> dict[str, Any] | None:
        """One custom object of this operator's group; None when it does not exist.
        Raises ``PermissionError`` when the operator may not read it."""
        try:
            found: Any = await asyncio.to_thread(
                self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural,
                name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 403:
                raise PermissionError(f"{plural} {namespace}/{name}: forbidden") from None
            raise
        return dict(found)

    async def list_custom(self, plural: str, namespace: str,
                          label_selector: str | None = None) -> list[dict[str, Any]]:
        result: Any = await asyncio.to_thread(
            self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural,
            label_selector=label_selector or "")
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def list_custom_everywhere(self, plural: str) -> list[dict[str, Any]]:
        """Objects of this operator's group in every namespace (needs cluster-wide list)."""
        result: Any = await asyncio.to_thread(
            self._custom.list_cluster_custom_object, GROUP, VERSION, plural)
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def kopf_peerings(self, name: str, namespace: str | None
                            ) -> list[dict[str, Any]]:
        """kopf's peering objects named ``name``: the ClusterKopfPeering (namespace None),
        the KopfPeering of one namespace, or (namespace ``*``) every namespace's."""
        if namespace == "*":
            result: Any = await asyncio.to_thread(
                self._custom.list_cluster_custom_object, KOPF_GROUP, KOPF_VERSION,
                "kopfpeerings", field_selector=f"metadata.name={name}")
            return list(result.get("items", []))
        try:
            if namespace is None:
                found: Any = await asyncio.to_thread(
                    self._custom.get_cluster_custom_object, KOPF_GROUP, KOPF_VERSION,
                    "clusterkopfpeerings", name)
            else:
                found = await asyncio.to_thread(
                    self._custom.get_namespaced_custom_object, KOPF_GROUP, KOPF_VERSION,
                    namespace, "kopfpeerings", name)
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return [dict(found)]
