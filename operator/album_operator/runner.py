"""Starts the operator: as the ``run`` command, or in a thread for tests and the demo."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ssl
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import kopf

from album_operator.adapters.edge.http import EdgeEndpoint
from album_operator.adapters.kube import KubeApi, SecretUnavailable, load_api_client
from album_operator.adapters.logs import configure_logging
from album_operator.adapters.metrics import serve as serve_metrics
from album_operator.adapters.paths import require_temp_dir, require_writable_dir
from album_operator.adapters.preflight import require_crds
from album_operator.adapters.probes import Liveness, ProbeServer
from album_operator.adapters.qdrant.connection import QdrantPool
from album_operator.adapters.redaction import register_secret
from album_operator.config import OperatorConfig
from album_operator.handlers.registration import build_registry, build_settings
from album_operator.replica import Replica, replica_identity
from album_operator.services import Services, build_services

STOP_TIMEOUT_S = 30.0


class EmbeddedPathInUse(Exception):
    """Another process (a second operator) holds the embedded engine's data directory."""


def _held_elsewhere(path: str) -> bool:
    """Whether another process holds the lock qdrant-client's local mode takes on
    ``<path>/.lock`` (an exclusive ``flock``)."""
    try:
        with open(Path(path) / ".lock", "rb") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES)
    return False


async def open_default_engine(services: Services) -> None:
    """Opens the default engine before kopf starts. The embedded engine allows one process
    per data path: a second operator on the same path stops here with one line, instead of
    retrying every handler on the lock error."""
    settings = services.pool.default
    try:
        await asyncio.to_thread(services.pool.engine)
    except RuntimeError:
        path = settings.embedded_path
        if settings.is_embedded and path and path != ":memory:" and _held_elsewhere(path):
            raise EmbeddedPathInUse(
                f"the embedded Qdrant data at {path} is in use by another process (another "
                "operator?); stop it, or give this one its own --embedded-path") from None
        raise


def require_writable_paths(config: OperatorConfig) -> None:
    """Every directory this run writes, before anything else fails for want of one."""
    require_temp_dir()
    embedded = not (config.qdrant_secret or config.qdrant_url)
    if embedded and config.embedded_path != ":memory:":
        require_writable_dir(Path(config.embedded_path), "the embedded Qdrant data path",
                             "give --embedded-path a writable directory")
    if config.snapshot_port is not None:
        require_writable_dir(Path(config.snapshot_root), "the snapshot directory",
                             "give --snapshot-dir a writable directory")


async def run_operator(
    config: OperatorConfig,
    services: Services,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
    replica: Replica | None = None,
) -> None:
    replica = replica or Replica(config, services, replica_identity())
    replica.start()
    endpoint = None
    if config.snapshot_port is not None:
        tls = (await snapshot_tls(services.kube, config.snapshot_tls_secret)
               if config.snapshot_tls_secret else None)
        endpoint = await asyncio.to_thread(
            EdgeEndpoint(services.edge, config.snapshot_port, ssl_context=tls).start)
    services.edge_port = endpoint.port if endpoint else None
    probes = None
    if config.health_port is not None:
        probes = await ProbeServer(config.health_port, lambda: _liveness(services, endpoint),
                                   replica.readiness).start()
    watching = asyncio.create_task(replica.run(), name="replica role")
    try:
        await _run_kopf(config, services, stop_flag, ready_flag, replica.identity)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        if probes is not None:
            await probes.stop()
        if endpoint is not None:
            await asyncio.to_thread(endpoint.stop)


def _liveness(services: Services, endpoint: EdgeEndpoint | None) -> Liveness:
    """Alive while the operator's loop answers this and the snapshot endpoint runs."""
    up = endpoint is None or endpoint.alive
    detail = {"qdrant": services.pool.default.describe()}
    if endpoint is not None:
        detail["snapshotEndpoint"] = "up" if up else "down"
    return Liveness(up, detail)


async def snapshot_tls(kube: KubeApi, secret: str) -> ssl.SSLContext:
    """A server TLS context from a Secret's ``tls.crt`` and ``tls.key`` (``namespace/name``).
    The PEMs pass through a private temporary directory, removed once loaded."""
    namespace, _, name = secret.partition("/")
    if not namespace or not name:
        raise ValueError(f"--snapshot-tls-secret {secret!r}: expected NAMESPACE/NAME")
    data = await kube.read_secret(namespace, name)
    missing = [key for key in ("tls.crt", "tls.key") if not data.get(key)]
    if missing:
        raise SecretUnavailable(f"Secret {secret} has no key {', '.join(missing)}")
    register_secret(data["tls.key"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="snapshot-tls-") as directory:
        cert, key = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        cert.write_text(data["tls.crt"])
        key.touch(mode=0o600)
        key.write_text(data["tls.key"])
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, ValueError) as exc:
            raise SecretUnavailable(f"Secret {secret}: tls.crt/tls.key are not a usable "
                                    f"certificate and key ({type(exc).__name__})") from None
    return context


async def _run_kopf(config: OperatorConfig, services: Services,
                    stop_flag: threading.Event | None, ready_flag: threading.Event | None,
                    identity: str) -> None:
    # The probes are the operator's own (ProbeServer): kopf's liveness endpoint would hold
    # the health port, and kopf has no readiness endpoint.
    await kopf.operator(
        registry=build_registry(config),
        settings=build_settings(config),
        memo=services,
        identity=cast(Any, identity),  # kopf's Identity, a NewType of str it does not export
        standalone=config.peering is None,
        peering_name=config.peering,
        priority=config.priority,
        clusterwide=config.all_namespaces,
        namespaces=config.namespaces,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def run_forever(config: OperatorConfig, verbose: bool = False) -> int:
    configure_logging(verbose)
    require_writable_paths(config)
    require_crds(load_api_client())

    if config.metrics_port:
        serve_metrics(config.metrics_port)

    async def main() -> None:
        services = await build_services(config)
        try:
            if services.pool.default.is_embedded:
                await open_default_engine(services)
            await run_operator(config, services)
        finally:
            await services.pool.aclose()  # the async clients' connections close on this loop

    asyncio.run(main())
    return 0


class OperatorThread:
    """The operator in a background thread of this process, sharing a Qdrant pool with it.

    The embedded engine allows one process per data path, so tests and the demo that want to
    look into Qdrant while the operator runs must share the operator's pool.
    """

    def __init__(self, config: OperatorConfig, pool: QdrantPool) -> None:
        self.config = config
        self.pool = pool
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.services: Services | None = None
        self.replica: Replica | None = None
        self._thread = threading.Thread(target=self._main, name="album-operator", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            services = await build_services(self.config, pool=self.pool)
            self.services = services
            self.replica = Replica(self.config, services, replica_identity())
            await run_operator(self.config, services, self._stop, self._ready, self.replica)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self, timeout: float = 60.0) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the operator did not become ready")
        if self._error is not None:
            raise RuntimeError("the operator failed to start") from self._error
        # standalone, it is Ready once its policies are registered; a peer may stand by
        if self.config.peering is None and self.replica is not None and \
                not self.replica.ready_event.wait(timeout):
            raise TimeoutError("the operator did not register its snapshot policies")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            raise TimeoutError("the operator did not stop")

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
