"""The images a real node runs, built here without any container registry.

No registry is reachable from these machines, so nothing is pulled: a Debian base made by
mmdebstrap stands in for the public Python image (the Dockerfile takes it as its
``PYTHON_IMAGE`` build argument), the operator image is built from the repository's
Dockerfile unchanged, the Qdrant image wraps a server binary, and the pause image is the
Kubernetes module's pause.c compiled statically. Each image is saved as a tar in the cache,
keyed by a hash of what it is made from, so a warm run only imports tars into containerd.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from album_operator_dev.localcluster.build import KUBERNETES_VERSION, cache_root

REPO = Path(__file__).resolve().parents[3]
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3",
                 "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
QDRANT_IMAGE_REPOSITORY = "albumops-qdrant"
OPERATOR_IMAGE_REPOSITORY = "album-operator"
# What the Dockerfile's build context holds (see .dockerignore).
OPERATOR_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "LICENSE",
                   "operator/album_operator")
DOCKER = "/usr/bin/docker"


def _say(message: str) -> None:
    print(f"[local-cluster] {message}", file=sys.stderr, flush=True)


def images_dir() -> Path:
    return cache_root() / "images"


def _digest(paths: Iterable[Path], *extra: str) -> str:
    digest = hashlib.sha256()
    for part in extra:
        digest.update(part.encode())
    for path in sorted(paths):
        if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
            continue
        digest.update(str(path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _tree(root: Path, names: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for name in names:
        path = root / name
        files += [p for p in path.rglob("*") if ".egg-info" not in str(p)] if path.is_dir() \
            else [path]
    return files


@dataclass(frozen=True)
class ImageSet:
    """Saved image tars and the references Pods use."""

    tars: tuple[Path, ...]
    operator: str
    qdrant: str
    pause: str


@contextlib.contextmanager
def docker_daemon() -> Iterator[dict[str, str]]:
    """A dockerd of our own that leaves the host's network alone (no iptables, no bridge)."""
    run_dir = Path("/run/albumops-docker")
    run_dir.mkdir(parents=True, exist_ok=True)
    socket_path = run_dir / "docker.sock"
    log = cache_root() / "dockerd.log"
    args = ["/usr/sbin/dockerd", "--data-root", str(cache_root() / "docker"),
            "--exec-root", str(run_dir / "exec"), "--pidfile", str(run_dir / "docker.pid"),
            "-H", f"unix://{socket_path}", "--iptables=false", "--ip-forward=false",
            "--bridge=none", "--ip-masq=false"]
    with log.open("ab") as out:
        daemon = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket_path}", "DOCKER_BUILDKIT": "0"}
    try:
        _wait_for_docker(env, daemon, log)
        yield env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        _kill_matching(str(run_dir))


def _kill_matching(marker: str) -> None:
    """dockerd's own containerd outlives it; it is found by the paths it was given."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    os.kill(int(proc.name), signal.SIGTERM)


def _wait_for_docker(env: dict[str, str], daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"dockerd exited with {daemon.returncode}; see {log}")
        if subprocess.run([DOCKER, "info"], env=env, capture_output=True,
                          check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"dockerd did not answer within 60 s; see {log}")


def _docker(env: dict[str, str], *args: str, stdin: bytes | None = None) -> None:
    subprocess.run([DOCKER, *args], env=env, check=True, input=stdin,
                   stdout=subprocess.DEVNULL if stdin is None else None)


def _base_tar() -> Path:
    key = _digest([HOST_CA_BUNDLE], BASE_SUITE, *BASE_PACKAGES)
    tar = images_dir() / f"debian-base-{key}.tar"
    if tar.is_file():
        return tar
    _say(f"making a Debian {BASE_SUITE} base with mmdebstrap (first time only)")
    # mmdebstrap writes a tarball only to a name ending in .tar (else a directory).
    partial = tar.with_name(f"{tar.stem}.partial.tar")
    # The machine's CA bundle may hold a TLS-intercepting proxy's CA; pip inside the image
    # build reaches PyPI through it, so the base trusts what the host trusts.
    hook = f'cp {HOST_CA_BUNDLE} "$1/etc/ssl/certs/ca-certificates.crt"'
    subprocess.run(["mmdebstrap", "--mode=root", "--variant=minbase",
                    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                    f"--include={','.join(BASE_PACKAGES)}",
                    f"--customize-hook={hook}",
                    BASE_SUITE, str(partial)], check=True, stdout=subprocess.DEVNULL)
    partial.replace(tar)
    return tar


def _base_image(env: dict[str, str]) -> str:
    tar = _base_tar()
    reference = f"albumops-base:{tar.stem.rsplit('-', 1)[1]}"
    with tar.open("rb") as source:
        subprocess.run([DOCKER, "import", "--change", "ENV LANG=C.UTF-8",
                        "--change", f"ENV PIP_CERT={HOST_CA_BUNDLE}", "-", reference],
                       env=env, check=True, stdin=source, stdout=subprocess.DEVNULL)
    return reference


def operator_reference(version: str) -> str:
    return f"{OPERATOR_IMAGE_REPOSITORY}:{version}"


def _build_operator(env: dict[str, str], base: str, reference: str, revision: str) -> None:
    _say(f"building {reference} from the Dockerfile on {base}")
    version = reference.rsplit(":", 1)[1]
    _docker(env, "build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}",
            "--build-arg", f"VERSION={version}", "--build-arg", f"REVISION={revision}",
            "-t", reference, str(REPO))


def _build_qdrant(env: dict[str, str], base: str, reference: str, binary: Path) -> None:
    with tempfile.TemporaryDirectory() as context:
        shutil.copy2(binary, Path(context) / "qdrant")
        (Path(context) / "Dockerfile").write_text(
            f"FROM {base}\nCOPY qdrant /usr/local/bin/qdrant\n"
            "RUN mkdir -p /qdrant/storage /qdrant/snapshots && chown -R 1000:1000 /qdrant\n"
            "WORKDIR /qdrant\nUSER 1000:1000\nENTRYPOINT [\"/usr/local/bin/qdrant\"]\n")
        _docker(env, "build", "--network", "host", "-t", reference, context)


def pause_source() -> Path:
    return (cache_root() / "go" / "mod" / "k8s.io" / f"kubernetes@v{KUBERNETES_VERSION}"
            / "build" / "pause" / "linux" / "pause.c")


def _build_pause(env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as root:
        subprocess.run(["gcc", "-Os", "-static", "-o", f"{root}/pause", str(pause_source())],
                       check=True)
        tar = subprocess.run(["tar", "-C", root, "-c", "pause"], check=True,
                             capture_output=True).stdout
        subprocess.run([DOCKER, "import", "--change", 'ENTRYPOINT ["/pause"]', "-", PAUSE_IMAGE],
                       env=env, check=True, input=tar, stdout=subprocess.DEVNULL)


def _saved(env: dict[str, str], reference: str, tar: Path) -> Path:
    partial = tar.with_suffix(".partial")
    _docker(env, "save", "-o", str(partial), reference)
    kind = tar.name.rsplit("-", 1)[0]
    for older in images_dir().glob(f"{kind}-*.tar"):
        older.unlink()
    partial.replace(tar)
    return tar


def _tar_name(kind: str, key: str) -> Path:
    return images_dir() / f"{kind}-{key}.tar"


def ensure_images(version: str, revision: str, qdrant_binary: Path) -> ImageSet:
    """The operator, Qdrant and pause images as saved tars, built when their inputs changed."""
    images_dir().mkdir(parents=True, exist_ok=True)
    operator = operator_reference(version)
    qdrant = f"{QDRANT_IMAGE_REPOSITORY}:{_digest([qdrant_binary])}"
    tars = {
        "operator": _tar_name("operator", _digest(_tree(REPO, OPERATOR_INPUTS), version)),
        "qdrant": _tar_name("qdrant", _digest([qdrant_binary])),
        "pause": _tar_name("pause", _digest([pause_source()])),
    }
    if not all(tar.is_file() for tar in tars.values()):
        started = time.monotonic()
        with docker_daemon() as env:
            base = _base_image(env)
            if not tars["operator"].is_file():
                _build_operator(env, base, operator, revision)
                _saved(env, operator, tars["operator"])
            if not tars["qdrant"].is_file():
                _build_qdrant(env, base, qdrant, qdrant_binary)
                _saved(env, qdrant, tars["qdrant"])
            if not tars["pause"].is_file():
                _build_pause(env)
                _saved(env, PAUSE_IMAGE, tars["pause"])
        _say(f"images ready in {time.monotonic() - started:.0f}s")
    return ImageSet(tars=tuple(tars.values()), operator=operator, qdrant=qdrant,
                    pause=PAUSE_IMAGE)
