"""Keeps secret values out of logs, events, status and exception text.

Every secret the operator reads (Qdrant API keys, device tokens) is registered here; the log
filter and the adapters' exception wrappers replace any registered value with ``***``.
"""

from __future__ import annotations

import logging
import threading

REDACTED = "***"
_MIN_SECRET_LENGTH = 8  # shorter values are refused where read (device tokens >= 16)

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and its arguments) with secrets removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True
