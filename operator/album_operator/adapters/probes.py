"""The operator's probe endpoints on ``--health-port``: ``/healthz`` (liveness) and
``/readyz`` (readiness), served on the operator's own event loop.

Liveness answers as long as that loop runs (a wedged loop answers nothing, and the kubelet
restarts the container) and the snapshot endpoint's thread is alive. Readiness is the
replica's role: only the working replica, its policies registered, is Ready, so a Service
routes devices to it alone. Both answer JSON; not-OK is 503.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from album_operator.core.replica import Readiness

HEALTHZ = "/healthz"
READYZ = "/readyz"


@dataclass(frozen=True)
class Liveness:
    alive: bool
    detail: dict[str, Any]


class ProbeServer:
    def __init__(self, port: int, liveness: Callable[[], Liveness],
                 readiness: Callable[[], Readiness], host: str = "0.0.0.0") -> None:
        self._port = port
        self._host = host
        self._liveness = liveness
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> ProbeServer:
        app = web.Application()
        app.router.add_get(HEALTHZ, self._healthz)
        app.router.add_get(READYZ, self._readyz)
        runner = web.AppRunner(app, handle_signals=False, access_log=None,
                               shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        liveness = self._liveness()
        return web.json_response({"alive": liveness.alive, **liveness.detail},
                                 status=200 if liveness.alive else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        readiness = self._readiness()
        return web.json_response({"ready": readiness.ready, "reason": readiness.reason},
                                 status=200 if readiness.ready else 503)
