"""The snapshot endpoint's HTTP server: aiohttp, on an event loop in a thread of its own.

Devices reach it from the internet, so every request is bounded before it costs anything:

- connections (``max_connections``) and requests being handled (``max_in_flight``) are
  capped; beyond, ``503`` with ``Retry-After``;
- a request's head must arrive within ``header_timeout_s`` (an idle keep-alive connection is
  closed after the same time), and aiohttp caps its line, field and header count;
- a body is refused before it is read when its ``Content-Length`` is above the route's limit
  (``MAX_MANIFEST_BYTES``, ``MAX_POINTS_BODY_BYTES``), and counted while it streams when
  chunked; bodies held in memory at once share ``body_budget_bytes``; the body must arrive
  within ``body_timeout_s`` with no pause longer than ``body_idle_s`` (``408``);
- JSON is parsed off the loop and refused deeper than ``MAX_JSON_DEPTH`` (``400``);
- every error is ``{"error": ...}`` with its status, aiohttp's own parser errors included; a
  request refused before its body is read closes the connection, so that body can never be
  parsed as a next request.

The domain functions of ``endpoint.py`` are blocking (Qdrant, disk): they run on a bounded
thread pool, and answers stream chunk by chunk, a snapshot never held whole. Full snapshots
that are whole snapshots (``Reply.byte_range``) are served with byte ranges. Every answer
gets a JSON access log line (``album_operator.edge.access``; never a header, so never a
token) and request metrics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler

from album_operator.adapters.edge.endpoint import (
    EdgeRegistry,
    HttpError,
    PolicyAccess,
    Reply,
    full_snapshot,
    list_snapshots,
    partial_snapshot,
    upload_points,
)
from album_operator.adapters.metrics import (
    EDGE_HTTP_BYTES_RECEIVED,
    EDGE_HTTP_BYTES_SENT,
    EDGE_HTTP_CONNECTIONS,
    EDGE_HTTP_IN_FLIGHT,
    EDGE_HTTP_REQUESTS,
    EDGE_HTTP_SECONDS,
)
from album_operator.adapters.qdrant.connection import QdrantError
from album_operator.edge.protocol import (
    AUTHORIZATION,
    BEARER,
    JSON,
    MAX_JSON_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_POINTS_BODY_BYTES,
    PARTIAL,
    POINTS,
    SNAPSHOT_SHA256,
    RouteMatch,
    match_route,
)

log = logging.getLogger("album_operator.edge.http")
ACCESS_LOG = logging.getLogger("album_operator.edge.access")
T = TypeVar("T")
METHODS = ("GET", "POST")
STOP_TIMEOUT_S = 10.0
ROUTE = web.RequestKey("route", str)
"""The route's action (list, full, partial, points), or none."""
RECEIVED = web.RequestKey("received", int)
"""Request body bytes read."""
REF = web.RequestKey("ref", dict)
"""The policy a request names, for the access log line's namespace and name."""


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int = 1024
    """Open connections; a new one beyond is answered 503 and closed."""
    max_in_flight: int = 64
    """Requests being handled (a download counts until its last byte); beyond: 503."""
    workers: int = 8
    """Threads running the blocking domain calls and reading snapshot chunks."""
    header_timeout_s: float = 10.0
    """The request head (from the connection's start or the previous answer's end)."""
    body_idle_s: float = 15.0
    """Longest pause while a request body arrives."""
    body_timeout_s: float = 120.0
    """The whole request body."""
    send_timeout_s: float = 60.0
    """One chunk of an answer (about 1 MiB) to a client that does not read."""
    body_budget_bytes: int = MAX_POINTS_BODY_BYTES
    """Request bodies held in memory (read, parsed, handled) at once; beyond: 503."""
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 64
    retry_after_s: int = 1
    standby_retry_after_s: int = 5
    """Retry-After of a replica that is not serving: about as long as a Service takes to
    stop routing to it, or a standby to take over."""


class Refusal(Exception):
    """An answer other than the route's: status, message (the JSON ``error``), headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None
                   ) -> web.Response:
    return web.Response(status=status, headers=headers,
                        body=json.dumps({"error": message}).encode(), content_type=JSON)


# -- JSON -----------------------------------------------------------------------------------

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_SLICE = 1 << 20


def json_depth(valid: bytes | bytearray) -> int:
    """How deep arrays and objects nest in a valid JSON text (0 for a scalar). Linear, in C
    and numpy: strings are blanked (they may hold brackets), then brackets are summed."""
    brackets = _STRING.sub(b"", valid).translate(None, _NOT_BRACKETS)
    deepest = level = 0
    for start in range(0, len(brackets), _DEPTH_SLICE):
        codes = np.frombuffer(brackets, dtype=np.uint8, count=min(
            _DEPTH_SLICE, len(brackets) - start), offset=start)
        steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
        levels = np.cumsum(steps) + level
        deepest = max(deepest, int(levels.max()))
        level = int(levels[-1])
    return deepest


def parse_json(raw: bytes | bytearray) -> Any:
    """The body as JSON, or a 400 Refusal saying why (not JSON, nested too deep)."""
    too_deep = Refusal(400, f"the body nests arrays or objects deeper than {MAX_JSON_DEPTH}")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise Refusal(400, f"the body is not JSON: {str(exc)[:200]}") from None
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise too_deep
    return value


# -- ranges ---------------------------------------------------------------------------------

def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte a ``Range`` header asks of ``size`` bytes; None to
    send the whole body (another unit, or several ranges); ValueError when malformed or
    unsatisfiable (416)."""
    unit, equals, spec = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        raise ValueError(header)
    if not first:
        if not last or int(last) == 0:
            raise ValueError(header)
        return max(size - int(last), 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise ValueError(header)
    return start, end


# -- the server -----------------------------------------------------------------------------

class _Protocol(RequestHandler):
    """aiohttp's connection handler, with its own errors (malformed request lines, headers,
    lengths) answered as JSON and logged as one quiet line instead of a traceback."""

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        log.debug("refused a malformed request from %s: %s", request.remote,
                  type(exc).__name__ if exc is not None else status)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already being sent")
        # the first line only: later ones quote the offending header, maybe a token
        detail = (message or (str(exc) if exc else "")).strip().split("\n")[0]
        detail = detail.split(" b'")[0].split(' b"')[0].rstrip(":")
        text = f"malformed request: {detail}"[:300] if status == 400 else "internal error"
        response = error_response(status, text)
        response.force_close()
        return response


class _Server(web.Server):
    def __init__(self, handler: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits

    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if len(self._connections) >= self.limits.max_connections:
            body = json.dumps({"error": "too many connections; retry later"}).encode()
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                            + JSON.encode() + b"\r\nRetry-After: "
                            + str(self.limits.retry_after_s).encode()
                            + b"\r\nConnection: close\r\nContent-Length: "
                            + str(len(body)).encode() + b"\r\n\r\n" + body)
            transport.close()
            return
        super().connection_made(handler, transport)
        EDGE_HTTP_CONNECTIONS.set(len(self._connections))

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None
                        ) -> None:
        super().connection_lost(handler, exc)
        EDGE_HTTP_CONNECTIONS.set(len(self._connections))


class _AccessLogger(AbstractAccessLogger):
    """One JSON line per answer (the operator's log format) and the request metrics. The
    line names the client, method, path (no query), status, bytes and time: never a header,
    so never a token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float
            ) -> None:
        try:
            route = request.get(ROUTE, "none")
            sent = response.body_length
            received = request.get(RECEIVED, 0)
            EDGE_HTTP_REQUESTS.labels(route, str(response.status)).inc()
            EDGE_HTTP_SECONDS.labels(route).observe(time)
            EDGE_HTTP_BYTES_SENT.labels(route).inc(sent)
            EDGE_HTTP_BYTES_RECEIVED.labels(route).inc(received)
            ref = request.get(REF)
            self.logger.info(
                '%s "%s %s" %d sent=%d received=%d %.1fms', request.remote or "-",
                request.method, request.rel_url.raw_path[:200], response.status, sent,
                received, time * 1000.0,
                extra={"k8s_ref": ref} if isinstance(ref, dict) else None)
        except Exception:  # an access log line must never break an answer
            log.debug("access log failed", exc_info=True)


class _Budget:
    """Bytes of request bodies in memory; used from the event loop only."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.total:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class _App:
    def __init__(self, registry: EdgeRegistry, limits: HttpLimits) -> None:
        self.registry = registry
        self.limits = limits
        self.pool = concurrent.futures.ThreadPoolExecutor(limits.workers,
                                                          thread_name_prefix="edge-http")
        self.budget = _Budget(limits.body_budget_bytes)
        self.in_flight = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, functools.partial(fn, *args))

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        request[RECEIVED] = 0
        match = match_route(request.method, request.path)
        request[ROUTE] = match.route.action if match is not None else "none"
        if match is not None:
            request[REF] = {"namespace": match.namespace, "name": match.policy,
                              "kind": "EdgeSnapshotPolicy"}
        if not self.registry.serving:
            return _refused(request, Refusal(
                503, "this replica does not serve snapshots now (it stands by, or is "
                "starting); retry later", {hdrs.RETRY_AFTER:
                                           str(self.limits.standby_retry_after_s)}))
        if self.in_flight >= self.limits.max_in_flight:
            return _refused(request, Refusal(
                503, "too many requests in flight; retry later",
                {hdrs.RETRY_AFTER: str(self.limits.retry_after_s)}))
        self.in_flight += 1
        EDGE_HTTP_IN_FLIGHT.inc()
        try:
            return await self._serve(request, match)
        except Refusal as exc:
            return _refused(request, exc)
        except HttpError as exc:
            return _refused(request, Refusal(exc.status, str(exc)))
        except QdrantError as exc:  # the Server source: Qdrant or a shard's peer failed
            return _refused(request, Refusal(404 if exc.status_code == 404 else 502,
                                             str(exc)))
        except ConnectionError:
            raise
        except Exception:
            log.exception("the snapshot endpoint failed on %s %s", request.method,
                          request.rel_url.raw_path[:200])
            return _refused(request, Refusal(500, "internal error"))
        finally:
            self.in_flight -= 1
            EDGE_HTTP_IN_FLIGHT.dec()

    async def _serve(self, request: web.BaseRequest, match: RouteMatch | None
                     ) -> web.StreamResponse:
        if match is None:
            allowed = [m for m in METHODS if match_route(m, request.path) is not None]
            if allowed:
                raise Refusal(405, f"{request.method} is not allowed here",
                              {hdrs.ALLOW: ", ".join(allowed)})
            raise Refusal(404, "no such route")
        access = self.registry.authorize(_token(request), match.namespace, match.policy)
        if isinstance(access, int):
            raise Refusal(access, "missing or invalid device token" if access == 401
                          else "this token does not open this policy")
        action = match.route.action
        if action == "list":
            return await self._send(request, await self.run(list_snapshots, access))
        if action == "full":
            assert match.shard is not None
            return await self._send(request, await self.run(full_snapshot, access,
                                                            match.shard))
        return await self._post(request, match, access)

    async def _post(self, request: web.BaseRequest, match: RouteMatch, access: PolicyAccess
                    ) -> web.StreamResponse:
        limit = MAX_MANIFEST_BYTES if match.route is PARTIAL else MAX_POINTS_BODY_BYTES
        encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
        if encoding != "identity":
            raise Refusal(415, f"Content-Encoding {encoding[:40]} is not accepted")
        if hdrs.CONTENT_TYPE in request.headers and request.content_type != JSON:
            raise Refusal(415, f"the body must be {JSON}")
        chunked = "chunked" in request.headers.get(hdrs.TRANSFER_ENCODING, "").lower()
        declared = request.content_length
        if declared is None and not chunked:
            raise Refusal(411, "Content-Length (or a chunked body) is required")
        if declared is not None and declared > limit:
            raise Refusal(413, f"the body is {declared} bytes; this route takes at most "
                          f"{limit}")
        reserved = declared or 0
        if not self.budget.take(reserved):
            raise Refusal(503, "too many request bodies in memory; retry later",
                          {hdrs.RETRY_AFTER: str(self.limits.retry_after_s)})
        try:
            if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            raw, reserved = await self._read(request, limit, chunked, reserved)
            body = await self.run(parse_json, raw)
            del raw
            if match.route is POINTS:
                reply = await self.run(upload_points, access, body)
            else:
                assert match.shard is not None
                reply = await self.run(partial_snapshot, access, match.shard, body)
            del body
        finally:
            self.budget.give(reserved)
        return await self._send(request, reply)

    async def _read(self, request: web.BaseRequest, limit: int, chunked: bool, reserved: int
                    ) -> tuple[bytearray, int]:
        """The body, counted as it streams: (body, bytes now reserved in the budget)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout_s
        raw = bytearray()
        while True:
            wait = min(self.limits.body_idle_s, deadline - loop.time())
            try:
                if wait <= 0:
                    raise TimeoutError
                async with asyncio.timeout(wait):
                    chunk = await request.content.readany()
            except TimeoutError:
                raise Refusal(408, "the request body did not arrive in time") from None
            if not chunk:
                break
            if len(raw) + len(chunk) > limit:
                raise Refusal(413, f"the body is more than {limit} bytes, this route's limit")
            if chunked:
                if not self.budget.take(len(chunk)):
                    raise Refusal(503, "too many request bodies in memory; retry later",
                                  {hdrs.RETRY_AFTER: str(self.limits.retry_after_s)})
                reserved += len(chunk)
            raw += chunk
            request[RECEIVED] = len(raw)
        return raw, reserved

    async def _send(self, request: web.BaseRequest, reply: Reply) -> web.StreamResponse:
        body = reply.body
        if isinstance(body, bytes):
            if reply.cleanup is not None:
                await self.run(reply.cleanup)
            headers = {k: v for k, v in reply.headers.items()
                       if k.lower() != "content-length"}
            return web.Response(status=reply.status, headers=headers, body=body)
        return await self._stream(request, reply, body)

    async def _stream(self, request: web.BaseRequest, reply: Reply, chunks: Iterator[bytes]
                      ) -> web.StreamResponse:
        status, headers = reply.status, dict(reply.headers)
        try:
            if reply.byte_range is not None and status == 200:
                status, chunks = self._ranged(request, reply.byte_range, headers, chunks)
            length = headers.pop("Content-Length", None)
            response = web.StreamResponse(status=status, headers=headers)
            if length is not None:
                response.content_length = int(length)
            else:
                response.enable_chunked_encoding()
            # The first chunk before the head: a failure to start (Qdrant down, a file just
            # deleted by retention) still gets its status.
            try:
                chunk = await self.run(next, chunks, None)
            except OSError:
                raise Refusal(503, "the snapshot changed while it was opened; retry",
                              {hdrs.RETRY_AFTER: str(self.limits.retry_after_s)}) from None
            await response.prepare(request)
            try:
                while chunk is not None:
                    async with asyncio.timeout(self.limits.send_timeout_s):
                        await response.write(chunk)
                    chunk = await self.run(next, chunks, None)
                await response.write_eof()
            except Exception as exc:
                # The head is out: the only way to say "failed" is to cut the connection
                # short of Content-Length (or of the last chunk); the device resumes.
                log.info("a download was cut short: %s", type(exc).__name__)
                if request.transport is not None:
                    request.transport.close()
            return response
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                await self.run(close)
            if reply.cleanup is not None:
                await self.run(reply.cleanup)

    def _ranged(self, request: web.BaseRequest,
                open_range: Callable[[int, int], Iterator[bytes]], headers: dict[str, str],
                chunks: Iterator[bytes]) -> tuple[int, Iterator[bytes]]:
        """A full snapshot: Accept-Ranges and an ETag (its sha256); a Range (when If-Range,
        if any, names this snapshot) gets 206 or 416."""
        size = int(headers["Content-Length"])
        headers[hdrs.ACCEPT_RANGES] = "bytes"
        etag = f'"{headers[SNAPSHOT_SHA256]}"' if headers.get(SNAPSHOT_SHA256) else None
        if etag:
            headers[hdrs.ETAG] = etag
        wanted = request.headers.get(hdrs.RANGE)
        if_range = request.headers.get(hdrs.IF_RANGE)
        if wanted is None or (if_range is not None and if_range.strip() != etag):
            return 200, chunks
        try:
            found = byte_range(wanted, size)
        except ValueError:
            raise Refusal(416, f"the range {wanted[:100]!r} is not satisfiable: the snapshot "
                          f"has {size} bytes", {hdrs.CONTENT_RANGE: f"bytes */{size}"}
                          ) from None
        if found is None:
            return 200, chunks
        start, end = found
        headers["Content-Length"] = str(end - start + 1)
        headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{end}/{size}"
        getattr(chunks, "close", lambda: None)()  # never started: nothing to read
        return 206, open_range(start, end - start + 1)


def _token(request: web.BaseRequest) -> str | None:
    header = request.headers.get(AUTHORIZATION, "")
    return header[len(BEARER):].strip() if header.startswith(BEARER) else None


def _refused(request: web.BaseRequest, refusal: Refusal) -> web.Response:
    """The JSON error; the connection closes when a body was left unread, so its bytes are
    never taken for a next request and never drained at the endpoint's expense."""
    response = error_response(refusal.status, str(refusal), refusal.headers)
    if request.can_read_body or refusal.status in (408, 413, 503):
        response.force_close()
    return response


# -- lifecycle ------------------------------------------------------------------------------

class EdgeEndpoint:
    """Serves the registry on a port, on an event loop in a daemon thread of its own (so a
    busy endpoint never delays kopf's handlers, and tests can start it from sync code)."""

    def __init__(self, registry: EdgeRegistry, port: int, host: str = "0.0.0.0", *,
                 limits: HttpLimits | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.registry = registry
        self.limits = limits or HttpLimits()
        self._host = host
        self._wanted_port = port
        self._ssl = ssl_context
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.BaseRunner | None = None
        self._app: _App | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="edge-endpoint", daemon=True)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the endpoint is not started")
        return self._port

    @property
    def alive(self) -> bool:
        """Whether its event loop's thread still runs (it ends only with ``stop``)."""
        return self._thread.is_alive()

    def start(self) -> EdgeEndpoint:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError(f"the snapshot endpoint could not start: {self._error}"
                               ) from self._error
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(STOP_TIMEOUT_S * 2)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(STOP_TIMEOUT_S)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _startup(self) -> None:
        limits = self.limits
        app = _App(self.registry, limits)
        self._app = app
        server = _Server(
            app.handle, limits,
            keepalive_timeout=limits.header_timeout_s,
            max_line_size=limits.max_line_size, max_field_size=limits.max_field_size,
            max_headers=limits.max_headers, lingering_time=0,
            auto_decompress=False, access_log_class=_AccessLogger, access_log=ACCESS_LOG)
        runner = web.ServerRunner(server, shutdown_timeout=STOP_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._wanted_port, ssl_context=self._ssl,
                           backlog=512)
        self._runner = runner
        await site.start()
        addresses = runner.addresses
        self._port = int(addresses[0][1])

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._app is not None:
            self._app.pool.shutdown(wait=False, cancel_futures=True)
