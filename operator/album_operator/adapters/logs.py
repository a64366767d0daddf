"""Structured JSON logs: one object a line, the resource's namespace/name on each, no secrets."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, TextIO

from album_operator.adapters.redaction import RedactingFilter, redact


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            entry["namespace"] = ref.get("namespace")
            entry["name"] = ref.get("name")
            entry["kind"] = ref.get("kind")
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["error"] = redact(record.exc_text)
        return json.dumps(entry, default=str)


class TimerSuccessFilter(logging.Filter):
    """Drops kopf's "Timer 'step' succeeded." lines: timers tick every few seconds and a
    tick that changed nothing is not news (what a tick changes has its own log line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.name.startswith("kopf.")
                    and isinstance(record.msg, str) and record.msg.startswith("Timer '")
                    and record.msg.endswith("' succeeded."))


def configure_logging(verbose: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """Routes every logger (kopf's included) through one redacting JSON handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    handler.addFilter(TimerSuccessFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes.client.rest", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Libraries' warnings (qdrant-client's about an API key over plain HTTP) become JSON
    # log lines like everything else instead of raw text on stderr.
    logging.captureWarnings(True)
    return handler
