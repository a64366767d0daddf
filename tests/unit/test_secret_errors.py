"""Every way a Secret can be unusable is a SecretUnavailable that names the Secret and key,
never the value: missing, forbidden, failing, or holding bytes that are not UTF-8 text."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from album_operator.adapters.kube import KubeApi, SecretUnavailable
from album_operator.adapters.redaction import redact


class FakeSecret:
    def __init__(self, data: dict[str, str]) -> None:
        self.data = data


class FakeCore:
    """CoreV1Api's one call the operator makes for Secrets."""

    def __init__(self, answer: FakeSecret | Exception) -> None:
        self.answer = answer

    def read_namespaced_secret(self, name: str, namespace: str) -> FakeSecret:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def kube_answering(answer: FakeSecret | Exception) -> KubeApi:
    kube = KubeApi.__new__(KubeApi)
    kube._core = FakeCore(answer)  # type: ignore[assignment]
    return kube


def encoded(value: bytes) -> str:
    return base64.b64encode(value).decode()


@pytest.mark.parametrize(("answer", "message"), [
    (ApiException(status=404), "Secret photos/qdrant not found"),
    (ApiException(status=403), "Secret photos/qdrant is not readable by the operator "
                               "(forbidden): grant its ServiceAccount get on it"),
    (ApiException(status=500), "reading Secret photos/qdrant failed: HTTP 500"),
    (ConnectionRefusedError(), "reading Secret photos/qdrant failed: ConnectionRefusedError"),
])
def test_an_unreadable_secret_is_unavailable_by_name(answer: Exception, message: str) -> None:
    with pytest.raises(SecretUnavailable) as raised:
        asyncio.run(kube_answering(answer).read_secret("photos", "qdrant"))
    assert str(raised.value) == message


@pytest.mark.parametrize("raw", [b"\xff\xfesecret-\x80", b"caf\xe9-latin1"])
def test_a_key_that_is_not_utf8_is_unavailable_by_key_and_its_value_is_never_quoted(
        raw: bytes) -> None:
    secret = FakeSecret({"url": encoded(b"http://qdrant:6333"), "apiKey": encoded(raw)})
    data = asyncio.run(kube_answering(secret).read_secret("photos", "qdrant"))
    assert data["url"] == "http://qdrant:6333"
    with pytest.raises(SecretUnavailable) as raised:
        data.get("apiKey")
    assert str(raised.value) == "Secret photos/qdrant key 'apiKey' is not UTF-8 text"
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__  # the decode error, which quotes bytes, is gone


def test_a_connection_secret_with_an_undecodable_key_is_unavailable() -> None:
    secret = FakeSecret({"url": encoded(b"\xff")})
    with pytest.raises(SecretUnavailable, match="key 'url' is not UTF-8 text"):
        asyncio.run(kube_answering(secret).connection_from_secret("photos", "qdrant"))


def test_a_connection_secret_names_its_grpc_port_or_is_refused_by_key() -> None:
    secret = FakeSecret({"url": encoded(b"http://qdrant:6333"), "grpcPort": encoded(b"6334")})
    settings = asyncio.run(kube_answering(secret).connection_from_secret("photos", "qdrant"))
    assert settings.grpc_port == 6334
    bad = FakeSecret({"url": encoded(b"http://qdrant:6333"), "grpcPort": encoded(b"grpc")})
    with pytest.raises(SecretUnavailable, match="key 'grpcPort': 'grpc' is not a port number"):
        asyncio.run(kube_answering(bad).connection_from_secret("photos", "qdrant"))


def test_values_read_are_redacted_from_text() -> None:
    token = "s3cr3t-token-value-0123456789"
    secret = FakeSecret({"token": encoded(token.encode())})
    data: Any = asyncio.run(kube_answering(secret).read_secret("photos", "kiosk"))
    assert data["token"] == token
    assert token not in redact(f"failed with {token}")
