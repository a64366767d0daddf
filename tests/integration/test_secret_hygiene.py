"""An API key given to the operator never shows up in its logs, its status or its events.

The operator runs as a real ``album-operator run`` process, reading its default Qdrant
connection from a Secret. The URL points at a hostile loopback endpoint (not a Qdrant
stand-in) that records the key it receives and echoes it back inside every error, which is
the worst case for leaking it through exception text.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from album_operator_dev.localcluster.cluster import free_port
from tests.helpers import Kubectl, condition, wait_for

pytestmark = pytest.mark.cluster

API_KEY = f"key-{uuid.uuid4().hex}"


class EchoingEndpoint(BaseHTTPRequestHandler):
    received_keys: list[str] = []

    def _answer(self) -> None:
        key = self.headers.get("api-key", "")
        EchoingEndpoint.received_keys.append(key)
        body = json.dumps({"status": {"error": f"forbidden: api-key {key} is not valid"}})
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo-Key", key)
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def echoing_endpoint() -> Iterator[str]:
    EchoingEndpoint.received_keys = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()



def test_the_api_key_is_absent_from_logs_status_and_events(
        kubectl: Kubectl, echoing_endpoint: str, tmp_path: Path) -> None:
    namespace = f"keys-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", namespace)
    kubectl.run("create", "secret", "generic", "qdrant", f"--from-literal=url={echoing_endpoint}",
                f"--from-literal=apiKey={API_KEY}", namespace=namespace)
    log_path = tmp_path / "operator.log"
    env = {**os.environ, "KUBECONFIG": kubectl.kubeconfig}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "album_operator.cli", "run", "-n", namespace,
             "--qdrant-secret", f"{namespace}/qdrant", "--resync-seconds", "1",
             "--health-port", str(free_port()), "--embedded-path", str(tmp_path / "q"),
             "--verbose"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                       "metadata": {"name": "photos"},
                       "spec": {"year": 2020, "vectors": {"size": 8}}}, namespace)

        def failed_on_qdrant() -> bool:
            obj = kubectl.get("albumcollection", "photos", namespace)
            ready = condition(obj, "Ready")
            return bool(ready and ready["reason"] == "QdrantUnavailable")

        wait_for(failed_on_qdrant, timeout=60, what="Ready=False QdrantUnavailable")
        wait_for(lambda: len(EchoingEndpoint.received_keys) >= 3, timeout=30,
                 what="several requests carrying the key")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    assert set(EchoingEndpoint.received_keys) == {API_KEY}, "the operator did use the key"
    logs = log_path.read_text()
    assert "QdrantUnavailable" in logs or "forbidden" in logs, "the failures were logged"
    assert API_KEY not in logs
    records = [json.loads(line) for line in logs.splitlines()]  # every line is a JSON record
    library_warnings = [r["message"] for r in records if r.get("logger") == "py.warnings"]
    assert [m for m in library_warnings if "insecure connection" in m], \
        "qdrant-client's warning about an API key over http is a JSON line too"
    resource = yaml.safe_dump(kubectl.get("albumcollection", "photos", namespace))
    assert "forbidden: api-key ***" in resource, "the echoed error reached status, redacted"
    assert API_KEY not in resource
    # the URL is no secret: status and logs show it alike
    assert echoing_endpoint in resource
    assert echoing_endpoint in logs
    events = json.dumps(kubectl.events("photos", namespace))
    assert events != "[]"
    assert API_KEY not in events
