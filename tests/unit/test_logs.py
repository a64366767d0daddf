"""Every line the operator writes is one JSON object, library warnings included."""

from __future__ import annotations

import io
import json
import logging
import warnings

from album_operator.adapters.logs import configure_logging


def test_a_library_warning_becomes_a_json_log_line() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(stream=stream)
        warnings.warn("a library has something to say", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert lines, "the warning was not logged"
    entry = json.loads(lines[-1])
    assert entry["level"] == "warning"
    assert entry["logger"] == "py.warnings"
    assert "a library has something to say" in entry["message"]


def test_kopf_timer_successes_are_not_logged_but_other_handler_lines_are() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(stream=stream)
        kopf_objects = logging.getLogger("kopf.objects")
        kopf_objects.info("Timer 'step' succeeded.")
        kopf_objects.info("Handler 'update' succeeded.")
        kopf_objects.error("Timer 'step' failed with an exception.")
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["Handler 'update' succeeded.", "Timer 'step' failed with an exception."]
