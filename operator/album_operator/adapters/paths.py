"""Directories the operator must write, checked before it starts.

On a read-only root filesystem every write goes to a volume. Without one where it is needed,
the failure surfaces far from its cause: the kubernetes client cannot write a kubeconfig's
certificates to the temporary directory and reports "no usable Kubernetes configuration";
the embedded engine fails on a directory above its path. These checks name the directory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

READ_ONLY_HINT = ("with a read-only root filesystem, mount a volume there (the chart mounts "
                  "an emptyDir at /tmp and sets HOME and TMPDIR to it)")


class PathNotWritable(Exception):
    """A directory the operator writes is not writable; the message names it and why."""


def _reason(exc: OSError, path: Path) -> str:
    """The OS's complaint and where: the part it names, or, when that is the directory
    itself, the deepest existing part of it (what stopped it from being made)."""
    where = exc.filename
    if where is None or Path(where) == path:
        where = next((p for p in (path, *path.parents) if p.exists()), path)
    return f"{exc.strerror or type(exc).__name__}: {where}"


def require_writable_dir(path: Path, what: str, fix: str) -> None:
    """Writes (and removes) a file in ``path``, or, when it does not exist yet, in the deepest
    part of it that does (where it would be made), or raises ``PathNotWritable`` saying which
    directory (``what``) failed, why, and ``fix``. It creates nothing: a start-up that stops
    at a later check leaves no trace."""
    existing = next((p for p in (path, *path.parents) if p.exists()), path)
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise PathNotWritable(f"{what} {path} is not writable ({_reason(exc, path)}); {fix}; "
                              f"{READ_ONLY_HINT}") from None


def require_temp_dir() -> Path:
    """The temporary directory (TMPDIR, else /tmp, /var/tmp, ...), known to be writable."""
    fix = ("the Kubernetes client writes a kubeconfig's certificates there, and the operator "
           "a Qdrant CA and the snapshot endpoint's TLS key; set TMPDIR to a writable "
           "directory")
    try:
        directory = Path(tempfile.gettempdir())
    except FileNotFoundError as exc:  # none of TMPDIR, /tmp, /var/tmp, /usr/tmp, cwd
        raise PathNotWritable(f"no writable temporary directory ({exc}); {fix}; "
                              f"{READ_ONLY_HINT}") from None
    require_writable_dir(directory, "the temporary directory", fix)
    return directory
