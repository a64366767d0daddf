"""The snapshot endpoint's HTTP layer under attack, on the real operator and API server.

Each test replays an attack found against the stdlib server it replaced (raw sockets where a
client library would hide it) and checks it now fails safely: a JSON error with the right
status, the connection never desynchronised, slow clients cut off while others are served.
The HTTP layer does not depend on the engine: these run on the embedded one.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from io import StringIO
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY

from album_operator.adapters.edge.http import EdgeEndpoint, HttpLimits
from album_operator.adapters.kube import SecretUnavailable
from album_operator.adapters.logs import JsonFormatter
from album_operator.adapters.qdrant.connection import QdrantPool
from album_operator.adapters.redaction import RedactingFilter
from album_operator.edge.protocol import MAX_JSON_DEPTH, MAX_MANIFEST_BYTES
from album_operator.runner import OperatorThread, snapshot_tls
from tests.conftest import create_namespace, engine_namespace_prefix, pool_engine
from tests.helpers import Kubectl
from tests.integration.test_edge_snapshot_policy import (
    DIM,
    policy,
    prefix,
    seed_collection,
    token_secret,
    wait_snapshots,
)

pytestmark = [pytest.mark.cluster, pytest.mark.embedded_only]
TOKEN = "http-device-token-0123456789abcdef"
LIMITS = HttpLimits()  # what the operator fixture's endpoint runs with
QUICK = HttpLimits(header_timeout_s=3.0, body_idle_s=2.0)
"""Limits of a second endpoint on the operator's registry, for the tests that wait for a
timeout to cut a client off: the same code, seconds instead of tens of seconds."""


@dataclass(frozen=True)
class Published:
    namespace: str
    collection: str
    port: int
    path: str
    """The policy's path prefix, ``/v1/namespaces/{ns}/policies/edge``."""
    sha256: str
    size: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


@pytest.fixture(scope="module")
def published(kubectl: Kubectl, operator: OperatorThread, qdrant_pool: QdrantPool
              ) -> Published:
    """One policy with a published snapshot and uploads on, for the whole module."""
    namespace = create_namespace(kubectl, engine_namespace_prefix(pool_engine(qdrant_pool)))
    collection = seed_collection(kubectl, namespace,
                                 lambda fn: qdrant_pool.engine().call(fn))
    kubectl.apply(token_secret("kiosk-token", TOKEN), namespace)
    kubectl.apply(policy("edge", collection, "kiosk-token", upload={
        "routeBy": {"field": "year", "template": f"{prefix(namespace)}_{{year}}"}}),
        namespace)
    snapshot = wait_snapshots(kubectl, namespace, "edge", 1)["status"]["snapshots"][0]
    assert operator.services is not None
    assert operator.services.edge_port is not None
    return Published(namespace, collection, operator.services.edge_port,
                     f"/v1/namespaces/{namespace}/policies/edge", snapshot["sha256"],
                     snapshot["sizeBytes"])


@pytest.fixture(scope="module")
def quick(published: Published, operator: OperatorThread) -> Iterator[Published]:
    """The published policy behind an endpoint with the ``QUICK`` limits."""
    assert operator.services is not None
    endpoint = EdgeEndpoint(operator.services.edge, 0, "127.0.0.1", limits=QUICK).start()
    try:
        yield replace(published, port=endpoint.port)
    finally:
        endpoint.stop()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def exchange(port: int, data: bytes, wait: float = 5.0, answers: int | None = None
             ) -> tuple[list[RawResponse], bool]:
    """Sends raw bytes on one connection; the responses read back, and whether the server
    closed the connection (False: still open after ``wait`` seconds of silence, or once
    ``answers`` whole responses have come back on a connection kept alive)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        received, closed = b"", False
        try:
            while answers is None or len(parse_responses(received, whole_only=True)) < answers:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    closed = True
                    break
                received += chunk
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
    return parse_responses(received), closed


def parse_responses(data: bytes, whole_only: bool = False) -> list[RawResponse]:
    """The responses in ``data``; with ``whole_only``, those that have fully arrived (the
    last one may still be on its way) instead of failing on a truncated one."""
    responses = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if whole_only and not separator:
            break
        assert separator, f"a truncated response: {data[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if whole_only and len(rest) < length:
            break
        responses.append(RawResponse(status, headers, rest[:length]))
        data = rest[length:]
    return responses


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"",
                  length: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: device"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def assert_json_error(response: RawResponse, status: int) -> str:
    assert response.status == status, (response.status, response.body[:300])
    assert response.headers["content-type"].startswith("application/json")
    error = json.loads(response.body)["error"]
    assert isinstance(error, str)
    assert error
    return error


def point_exists(qdrant_pool: QdrantPool, collection: str, point_id: int) -> bool:
    found = qdrant_pool.engine().call(lambda c: c.retrieve(collection, [point_id]))
    return bool(found)


def test_a_refused_body_is_never_read_as_a_second_request(
        published: Published, qdrant_pool: QdrantPool) -> None:
    """The stdlib server left a refused request's body on the keep-alive connection, where
    it ran as the next request: here it smuggles an authorised upload."""
    point = {"id": 424242, "vector": [0.25] * DIM, "payload": {"year": 2025}}
    smuggled_body = json.dumps({"points": [point]}).encode()
    smuggled = request_bytes("POST", f"{published.path}/points",
                             {**auth(), "Content-Type": "application/json"}, smuggled_body)
    for headers, path, status in [
            ({}, f"{published.path}/points", 401),
            (auth("not-a-token-of-anyone-at-all"), f"{published.path}/points", 401),
            (auth(), "/v1/namespaces/nowhere/policies/none/points", 403),
            (auth(), f"{published.path}/no-such-route", 404),
            ({**auth(), "Content-Type": "text/plain"}, f"{published.path}/points", 415)]:
        outer = request_bytes("POST", path, {**headers}, smuggled)
        responses, closed = exchange(published.port, outer)
        assert len(responses) == 1, [r.status for r in responses]
        assert_json_error(responses[0], status)
        assert closed  # the unread body goes with the connection
    assert not point_exists(qdrant_pool, published.collection, 424242)
    # The same upload sent as itself is accepted: the smuggled request was a real one.
    responses, _ = exchange(published.port, smuggled, wait=10, answers=1)
    assert responses[0].status == 200, responses[0].body
    assert json.loads(responses[0].body)["accepted"] == [424242]


def test_keep_alive_still_works_for_well_formed_requests(published: Published) -> None:
    listing = request_bytes("GET", f"{published.path}/snapshots", auth(), length=False)
    responses, closed = exchange(published.port, listing * 3, wait=5, answers=3)
    assert [r.status for r in responses] == [200, 200, 200]
    assert not closed


def test_slow_headers_are_cut_off_while_others_are_served(quick: Published) -> None:
    published = quick
    slow = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", published.port))
        sock.sendall(f"GET {published.path}/snapshots HTTP/1.1\r\nHost: x\r\n".encode())
        slow.append(sock)
    started = time.monotonic()
    try:
        # Dripping one more header line now and then does not extend the deadline.
        for sock in slow[:10]:
            sock.sendall(b"X-Drip: 1\r\n")
        for _ in range(5):
            answer = requests.get(f"{published.base}/snapshots", headers=auth(), timeout=5)
            assert answer.status_code == 200
        assert time.monotonic() - started < QUICK.header_timeout_s
        closed_after = []
        for sock in slow:
            sock.settimeout(QUICK.header_timeout_s + 10)
            try:
                rest = sock.recv(1 << 16)
            except ConnectionResetError:
                rest = b""
            assert rest == b""  # closed, nothing answered to a request never finished
            closed_after.append(time.monotonic() - started)
        assert max(closed_after) < QUICK.header_timeout_s + 5
        assert min(closed_after) > QUICK.header_timeout_s - 1
    finally:
        for sock in slow:
            sock.close()


def test_bad_lengths_and_bodies_get_json_errors(published: Published) -> None:
    partial = f"{published.path}/shards/0/partial"
    json_type = {**auth(), "Content-Type": "application/json"}
    cases: list[tuple[bytes, int, str]] = [
        (request_bytes("POST", partial, {**json_type, "Content-Length": "-1"}, length=False),
         400, "Content-Length"),
        (request_bytes("POST", partial, {**json_type, "Content-Length": "abc"}, length=False),
         400, "Content-Length"),
        (request_bytes("POST", partial, {**json_type, "Content-Length": str(1 << 40)},
                       length=False), 413, "at most"),
        (request_bytes("POST", partial, json_type, b"[" * 40 + b"]" * 40), 400,
         f"deeper than {MAX_JSON_DEPTH}"),
        (request_bytes("POST", partial, json_type, b"[" * 100_000 + b"]" * 100_000), 400,
         f"deeper than {MAX_JSON_DEPTH}"),
        (request_bytes("POST", partial, json_type, b'{"segments": [1, 2,'), 400, "not JSON"),
        (request_bytes("POST", partial, json_type, b"\xff\xfe{}"), 400, "not JSON"),
        (request_bytes("POST", partial, json_type, b"[1, 2]"), 400, "manifest"),
        (request_bytes("POST", partial, json_type, length=False), 411, "Content-Length"),
        (request_bytes("POST", partial, {**json_type, "Content-Encoding": "gzip"}, b"{}"),
         415, "Content-Encoding"),
        (request_bytes("DELETE", partial, auth()), 405, "not allowed"),
        (request_bytes("GET", f"{published.path}/snapshots",
                       {**auth(), "X-Huge": "a" * (LIMITS.max_field_size + 10)}), 400,
         "malformed"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 400, "malformed"),
    ]
    # A well-formed request right behind each bad one: exactly one answer to the bad one,
    # then either the connection is closed or the next request is answered as itself.
    probe = request_bytes("GET", f"{published.path}/snapshots", auth(), length=False)
    for data, status, reason in cases:
        responses, closed = exchange(published.port, data + probe, wait=5, answers=2)
        error = assert_json_error(responses[0], status)
        assert reason in error, (status, error)
        after = [r.status for r in responses[1:]]
        assert after == [200] or (closed and after == []), (data[:80], after, closed)
    deep = exchange(published.port, request_bytes("DELETE", partial, auth()),
                    answers=1)[0][0]
    assert deep.headers["allow"] == "POST"

    # Chunked and over the limit: refused while it streams, once the limit is passed.
    sent = 0
    with socket.create_connection(("127.0.0.1", published.port), timeout=10) as sock:
        sock.sendall(request_bytes("POST", partial, {**json_type,
                                                     "Transfer-Encoding": "chunked"},
                                   length=False))
        block = b"x" * (1 << 16)
        try:
            while sent < 8 * MAX_MANIFEST_BYTES:
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := sock.recv(1 << 16):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert_json_error(parse_responses(answer)[0], 413)
    assert sent < 8 * MAX_MANIFEST_BYTES  # cut off (loopback buffers take a few MiB more)


def test_a_body_that_stalls_gets_408(quick: Published) -> None:
    published = quick
    started = time.monotonic()
    head = request_bytes("POST", f"{published.path}/points",
                         {**auth(), "Content-Type": "application/json",
                          "Content-Length": "100"}, length=False)
    responses, closed = exchange(published.port, head + b'{"points": [',
                                 wait=QUICK.body_idle_s + 10)
    assert_json_error(responses[0], 408)
    assert closed
    assert time.monotonic() - started < QUICK.body_idle_s + 5


def test_a_full_snapshot_download_resumes_with_ranges(published: Published) -> None:
    url = f"{published.base}/shards/0/snapshot"
    whole = requests.get(url, headers=auth(), timeout=30)
    assert whole.status_code == 200
    assert whole.headers["Accept-Ranges"] == "bytes"
    etag = whole.headers["ETag"]
    assert etag == f'"{published.sha256}"'
    size = published.size

    # A flaky link: the first attempt dies a third of the way in.
    got = bytearray()
    with requests.get(url, headers=auth(), stream=True, timeout=30) as first:
        for chunk in first.iter_content(4096):
            got += chunk
            if len(got) >= size // 3:
                break
    while len(got) < size:
        step = min(size - len(got), size // 4 + 1)
        piece = requests.get(url, timeout=30, headers={
            **auth(), "Range": f"bytes={len(got)}-{len(got) + step - 1}", "If-Range": etag})
        assert piece.status_code == 206, piece.text[:200]
        assert piece.headers["Content-Range"] == (
            f"bytes {len(got)}-{len(got) + step - 1}/{size}")
        assert len(piece.content) == step
        got += piece.content
    assert hashlib.sha256(got).hexdigest() == published.sha256

    tail = requests.get(url, headers={**auth(), "Range": "bytes=-100"}, timeout=30)
    assert tail.status_code == 206
    assert tail.content == bytes(got[-100:])
    stale = requests.get(url, headers={**auth(), "Range": "bytes=0-9",
                                       "If-Range": '"another-snapshot"'}, timeout=30)
    assert stale.status_code == 200
    assert len(stale.content) == size
    for bad in (f"bytes={size}-", "bytes=9-3", "bytes=abc", "bytes=-0"):
        refused = requests.get(url, headers={**auth(), "Range": bad}, timeout=30)
        assert refused.status_code == 416, bad
        assert refused.headers["Content-Range"] == f"bytes */{size}"
        assert "error" in refused.json()


@pytest.fixture
def access_lines() -> Iterator[StringIO]:
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("album_operator.edge.access")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_access_logs_are_json_without_tokens_and_metrics_move(
        published: Published, access_lines: StringIO) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "list": sample("albumops_edge_http_requests_total", route="list", status="200"),
        "full": sample("albumops_edge_http_requests_total", route="full", status="200"),
        "denied": sample("albumops_edge_http_requests_total", route="list", status="401"),
        "malformed": sample("albumops_edge_http_requests_total", route="none", status="400"),
        "sent": sample("albumops_edge_http_sent_bytes_total", route="full"),
        "received": sample("albumops_edge_http_received_bytes_total", route="partial"),
        "timed": sample("albumops_edge_http_request_duration_seconds_count", route="list"),
    }
    for _ in range(3):
        assert requests.get(f"{published.base}/snapshots", headers=auth(),
                            timeout=10).status_code == 200
    assert requests.get(f"{published.base}/snapshots", headers=auth("wrong-token-xyz-123"),
                        timeout=10).status_code == 401
    assert requests.get(f"{published.base}/shards/0/snapshot", headers=auth(),
                        timeout=30).status_code == 200
    manifest = [1, 2]  # not a manifest: 400, but its bytes were read
    assert requests.post(f"{published.base}/shards/0/partial", json=manifest,
                         headers=auth(), timeout=30).status_code == 400
    exchange(published.port, request_bytes("POST", f"{published.path}/points",
                                           {"Content-Length": "abc", **auth()}, length=False))
    # aiohttp logs after the answer is out: give the last line a moment.
    deadline = time.monotonic() + 5
    while access_lines.getvalue().count("\n") < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(line) for line in access_lines.getvalue().splitlines()]
    assert len(lines) >= 7
    text = access_lines.getvalue()
    assert TOKEN not in text
    assert "wrong-token-xyz-123" not in text
    assert "Bearer" not in text
    assert "Authorization" not in text
    for line in lines:
        assert line["logger"] == "album_operator.edge.access"
        assert line["level"] == "info"
    listing = [line for line in lines if f"GET {published.path}/snapshots" in line["message"]]
    assert len(listing) == 4
    assert listing[0]["namespace"] == published.namespace
    assert listing[0]["name"] == "edge"
    assert any('" 401 ' in line["message"] for line in listing)
    assert any('" 400 ' in line["message"] for line in lines)  # the malformed one too

    after = {
        "list": sample("albumops_edge_http_requests_total", route="list", status="200"),
        "full": sample("albumops_edge_http_requests_total", route="full", status="200"),
        "denied": sample("albumops_edge_http_requests_total", route="list", status="401"),
        "malformed": sample("albumops_edge_http_requests_total", route="none", status="400"),
        "sent": sample("albumops_edge_http_sent_bytes_total", route="full"),
        "received": sample("albumops_edge_http_received_bytes_total", route="partial"),
        "timed": sample("albumops_edge_http_request_duration_seconds_count", route="list"),
    }
    assert after["list"] - before["list"] == 3
    assert after["full"] - before["full"] == 1
    assert after["denied"] - before["denied"] == 1
    assert after["malformed"] - before["malformed"] == 1
    assert after["sent"] - before["sent"] >= published.size
    assert after["received"] - before["received"] == len(json.dumps(manifest))
    assert after["timed"] - before["timed"] == 4


def test_requests_beyond_the_in_flight_cap_get_503(quick: Published) -> None:
    """Clients that stall their uploads hold their slots; past the cap, new requests are told
    to come back later instead of queueing without bound, and served again once the stalled
    ones are timed out."""
    published = quick
    holders = []
    try:
        for _ in range(QUICK.max_in_flight):
            sock = socket.create_connection(("127.0.0.1", published.port))
            sock.sendall(request_bytes("POST", f"{published.path}/points",
                                       {**auth(), "Content-Type": "application/json",
                                        "Content-Length": "1000"}, length=False))
            holders.append(sock)
        deadline = time.monotonic() + 10
        status, answer = 0, None
        while time.monotonic() < deadline:
            answer = requests.get(f"{published.base}/snapshots", headers=auth(), timeout=10)
            status = answer.status_code
            if status == 503:
                break
            time.sleep(0.1)
        assert answer is not None
        assert status == 503
        assert answer.headers["Retry-After"] == str(QUICK.retry_after_s)
        assert "retry" in answer.json()["error"]
        for sock in holders:
            sock.settimeout(QUICK.body_idle_s + 10)
            assert_json_error(parse_responses(sock.recv(1 << 16))[0], 408)
    finally:
        for sock in holders:
            sock.close()
    assert requests.get(f"{published.base}/snapshots", headers=auth(),
                        timeout=10).status_code == 200


def test_the_endpoint_serves_tls_from_a_secret(
        published: Published, kubectl: Kubectl, operator: OperatorThread,
        tmp_path: Path) -> None:
    """``--snapshot-tls-secret``: the certificate and key come from a kubernetes.io/tls
    Secret read through the API server; devices then talk HTTPS to the endpoint."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "snapshots.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    kubectl.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                   "metadata": {"name": "snapshots-tls"},
                   "data": {"tls.crt": base64.b64encode(cert_pem).decode(),
                            "tls.key": base64.b64encode(key_pem).decode()}},
                  published.namespace)
    kubectl.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "no-key"},
                   "stringData": {"tls.crt": cert_pem.decode()}}, published.namespace)
    assert operator.services is not None
    kube = operator.services.kube
    with pytest.raises(SecretUnavailable, match=r"tls\.key"):
        asyncio.run(snapshot_tls(kube, f"{published.namespace}/no-key"))
    context = asyncio.run(snapshot_tls(kube, f"{published.namespace}/snapshots-tls"))
    endpoint = EdgeEndpoint(operator.services.edge, 0, "127.0.0.1",
                            ssl_context=context).start()
    try:
        ca = tmp_path / "ca.pem"
        ca.write_bytes(cert_pem)
        url = f"https://127.0.0.1:{endpoint.port}{published.path}/snapshots"
        answer = requests.get(url, headers=auth(), verify=str(ca), timeout=10)
        assert answer.status_code == 200
        assert answer.json()["snapshots"][0]["sha256"] == published.sha256
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url.replace("https:", "http:"), headers=auth(), timeout=10)
    finally:
        endpoint.stop()
