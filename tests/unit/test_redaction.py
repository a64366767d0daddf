"""Secrets never leave the process in logs or error text."""

from __future__ import annotations

import io
import json
import logging

import pytest

from album_operator.adapters.logs import JsonFormatter
from album_operator.adapters.qdrant.connection import ConnectionSettings, QdrantEngine, QdrantError
from album_operator.adapters.redaction import RedactingFilter, redact, register_secret
from album_operator.core.engine import SERVER


def test_a_registered_secret_is_replaced_everywhere_in_text() -> None:
    register_secret("s3cr3t-key-value")
    assert redact("key=s3cr3t-key-value, again s3cr3t-key-value") == "key=***, again ***"


def test_short_values_are_not_treated_as_secrets() -> None:
    register_secret("ab")
    assert redact("abc") == "abc"


def test_log_records_and_their_tracebacks_are_redacted() -> None:
    register_secret("tb-secret-123")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("connecting with %s", "tb-secret-123")
        try:
            raise RuntimeError("header api-key: tb-secret-123")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "tb-secret-123" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["message"] == "connecting with ***"
    assert "api-key: ***" in lines[1]["error"]


def test_engine_errors_never_carry_the_key() -> None:
    register_secret("engine-secret-xyz")

    def failing(_: object) -> None:
        raise ValueError("server said: bad key engine-secret-xyz")

    engine = QdrantEngine(object(), SERVER, "test", ConnectionSettings(url="http://x"))  # type: ignore[arg-type]
    with pytest.raises(QdrantError) as caught:
        engine.call(failing)
    assert "engine-secret-xyz" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_connection_settings_repr_hides_the_key() -> None:
    settings = ConnectionSettings(url="http://q", api_key="repr-secret-1")
    assert "repr-secret-1" not in repr(settings)


def test_values_under_eight_characters_are_never_redacted_from_text() -> None:
    register_secret("a1b2c3")  # a short value would mangle every text holding its characters
    assert redact("error a1b2c3 at a1b2c3d") == "error a1b2c3 at a1b2c3d"


def test_a_qdrant_url_stays_readable_and_a_password_inside_it_does_not() -> None:
    import base64

    from album_operator.adapters.kube import SecretData

    def encoded(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    data = SecretData("ns/qdrant", {
        "url": encoded("https://operator:pa55-in-the-url@qdrant.example:6333"),
        "apiKey": encoded("an-api-key-of-some-length")})
    url, key = data["url"], data["apiKey"]
    assert redact(f"cannot reach {url} with {key}") == (
        "cannot reach https://operator:***@qdrant.example:6333 with ***")
