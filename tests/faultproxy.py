"""A fault-injecting HTTP proxy between the operator and a real Qdrant server.

Every request is forwarded to the server unchanged and its answer returned unchanged, except
for the faults a test arms, each a thing a real deployment does: a read served by a peer
that lags behind (a load-balanced Service, a caching proxy) answers with the state before a
write the server already acknowledged. It injects faults; it never answers in Qdrant's place
for anything it has not first read from Qdrant.

    with FaultProxy(server.url) as proxy:
        proxy.stale_alias_reads_after_swap(times=1)
        ... an engine or a Secret pointing at proxy.url ...
"""

from __future__ import annotations

import http.client
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                        "te", "trailer", "upgrade", "content-length", "host"})
ALIAS_CHANGE = ("POST", "/collections/aliases")
ALIAS_LIST = ("GET", "/aliases")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class _Faults:
    stale_alias_reads: int = 0
    """Alias-list reads still to answer with the list as it was before the last swap."""
    armed_reads: int = 0
    before_swap: Answer | None = None
    stale_reads_served: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultProxy:
    """Listens on a free loopback port and forwards to ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"an http:// upstream is needed, not {upstream}")
        self._upstream = (parts.hostname, parts.port or 80)
        self._faults = _Faults()
        # host: where the operator reaches it (loopback in-process, the node's bridge for a Pod).
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fault-proxy")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def stale_alias_reads_after_swap(self, times: int = 1) -> None:
        """After the next acknowledged alias change, the next ``times`` reads of the alias
        list (``GET /aliases``) get the list as Qdrant had it just before that change."""
        with self._faults.lock:
            self._faults.armed_reads = times

    @property
    def stale_reads_served(self) -> int:
        return self._faults.stale_reads_served

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request forwarded or answered so far: (method, path)."""
        with self._faults.lock:
            return list(self._faults.seen)

    def forward(self, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes | None) -> Answer:
        connection = http.client.HTTPConnection(*self._upstream, timeout=120)
        try:
            connection.request(method, path, body=body, headers=dict(headers))
            response = connection.getresponse()
            return Answer(response.status, response.getheaders(), response.read())
        finally:
            connection.close()

    def answer(self, method: str, path: str, headers: list[tuple[str, str]],
               body: bytes | None) -> Answer:
        route = (method, urlsplit(path).path.rstrip("/"))
        faults = self._faults
        with faults.lock:
            faults.seen.append((method, path))
            if route == ALIAS_LIST and faults.stale_alias_reads and faults.before_swap:
                faults.stale_alias_reads -= 1
                faults.stale_reads_served += 1
                return faults.before_swap
            armed = route == ALIAS_CHANGE and faults.armed_reads > 0
        before = self.forward("GET", "/aliases", _plain(headers), None) if armed else None
        answer = self.forward(method, path, headers, body)
        if armed and answer.status < 300:
            with faults.lock:
                faults.before_swap = before
                faults.stale_alias_reads, faults.armed_reads = faults.armed_reads, 0
        return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The head and the body go out in separate writes: with Nagle's algorithm the
            # body waits for the client's delayed ACK, about 40 ms on every request.
            disable_nagle_algorithm = True

            def _relay(self) -> None:
                headers = [(k, v) for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP]
                answer = proxy.answer(self.command, self.path, headers, self._body())
                self.send_response(answer.status)
                for key, value in answer.headers:
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    return b"".join(_chunks(self.rfile))
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler


def _plain(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request's headers for a read of the proxy's own: no compression asked for."""
    return [(k, v) for k, v in headers if k.lower() not in ("content-type", "accept-encoding")]


def _chunks(stream: io.BufferedIOBase) -> Iterator[bytes]:
    """A chunked request body's chunks."""
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            stream.readline()
            return
        yield stream.read(size)
        stream.readline()
