"""Which Qdrant server versions are supported, and what the operator says about the others."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from album_operator.adapters.qdrant.connection import ConnectionSettings, open_engine
from album_operator.core.versions import parse_version, version_warning


@pytest.mark.parametrize(("reported", "expected"), [
    ("1.18.0", None),
    ("1.18.3", None),
    ("1.20.9", None),
    ("v1.19.1", None),
    ("1.17.9", "Qdrant server 1.17.9 is older than this operator supports (>= 1.18.0, "
               "< 1.21.0); it keeps running, but settings or snapshot calls may fail: "
               "upgrade the server"),
    ("1.21.0", "Qdrant server 1.21.0 is newer than this operator supports (>= 1.18.0, "
               "< 1.21.0); it keeps running, but settings or snapshot calls may fail: "
               "upgrade the operator"),
    ("2.0.0-rc1", "Qdrant server 2.0.0 is newer than this operator supports (>= 1.18.0, "
                  "< 1.21.0); it keeps running, but settings or snapshot calls may fail: "
                  "upgrade the operator"),
    ("dev", "the Qdrant server did not report a version it could parse ('dev'); "
            "supported: >= 1.18.0, < 1.21.0"),
    (None, "the Qdrant server did not report a version it could parse (None); "
           "supported: >= 1.18.0, < 1.21.0"),
])
def test_versions_outside_the_supported_range_get_one_clear_line(
        reported: str | None, expected: str | None) -> None:
    assert version_warning(reported) == expected


def test_versions_parse_to_numbers() -> None:
    assert parse_version("1.18.3") == (1, 18, 3)
    assert parse_version(" v1.2.3-beta ") == (1, 2, 3)
    assert parse_version("1.18") is None


@pytest.fixture
def old_server() -> Iterator[str]:
    """A loopback HTTP endpoint answering Qdrant's root route as a 1.9.0 server would."""
    class Root(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"title": "qdrant - vector search engine",
                               "version": "1.9.0"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_connecting_to_an_unsupported_server_warns_once_and_does_not_fail(
        old_server: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        engine = open_engine(ConnectionSettings(url=old_server))
    assert engine.version_warning is not None
    assert "Qdrant server 1.9.0 is older" in engine.version_warning
    warnings = [r.getMessage() for r in caplog.records if "is older" in r.getMessage()]
    assert warnings == [f"{engine.version_warning} ({old_server})"]


def test_an_unreachable_server_is_not_reported_as_a_version_problem() -> None:
    engine = open_engine(ConnectionSettings(url="http://127.0.0.1:9"))
    assert engine.version_warning is None


def test_a_supported_server_gives_no_warning(qdrant_server_target: object) -> None:
    from tests.conftest import ServerTarget

    assert isinstance(qdrant_server_target, ServerTarget)
    engine = open_engine(qdrant_server_target.settings())
    assert engine.version_warning is None
    engine.close()
