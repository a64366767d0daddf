"""File-system steps the device needs to stay whole across crashes.

- ``atomic_write_text(path, text)``: write a temporary file, fsync, rename over ``path``,
  fsync the directory.
- ``sparse_copytree(src, dst)``: copy a shard directory keeping the holes of its sparse,
  preallocated files (``SEEK_DATA``/``SEEK_HOLE``) and turning all-zero 64 KiB blocks into
  holes, so a 32 MiB mostly empty mmap file costs what it holds, not 32 MiB.
- ``swap_in(staging, target)``: put ``staging`` at ``target`` by renames: ``target`` moves
  to ``target.old``, ``staging`` to ``target``, then ``target.old`` is removed.
  ``recover_swap(target)`` finishes or undoes an interrupted swap, so ``target`` always
  exists again after a crash at any step.
- ``DirLock(path)``: an exclusive ``flock``, held by one process at a time.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType

OLD_SUFFIX = ".old"
_BLOCK = 64 * 1024
_ZEROS = bytes(_BLOCK)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _copy_range(infd: int, outfd: int, start: int, length: int) -> None:
    """Copies ``length`` bytes at ``start``, seeking over all-zero blocks (they stay holes:
    the engine's preallocated files come out of ``update_from_snapshot`` dense)."""
    os.lseek(infd, start, os.SEEK_SET)
    position = start
    end = start + length
    while position < end:
        block = os.read(infd, min(_BLOCK, end - position))
        if not block:
            break
        if block != _ZEROS[:len(block)]:
            os.lseek(outfd, position, os.SEEK_SET)
            view = memoryview(block)
            while view:
                view = view[os.write(outfd, view):]
        position += len(block)


def _copy_sparse_file(src: Path, dst: Path) -> None:
    size = src.stat().st_size
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        infd, outfd = fin.fileno(), fout.fileno()
        offset = 0
        try:
            while offset < size:
                try:
                    data_at = os.lseek(infd, offset, os.SEEK_DATA)
                except OSError as error:
                    if error.errno == errno.ENXIO:  # only a hole is left
                        break
                    raise
                hole_at = os.lseek(infd, data_at, os.SEEK_HOLE)
                os.lseek(infd, data_at, os.SEEK_SET)
                os.lseek(outfd, data_at, os.SEEK_SET)
                _copy_range(infd, outfd, data_at, hole_at - data_at)
                offset = hole_at
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            _copy_range(infd, outfd, 0, size)
        fout.truncate(size)
        fout.flush()
        os.fsync(outfd)
    shutil.copystat(src, dst)


def sparse_copytree(src: Path, dst: Path) -> None:
    """Copies the tree at ``src`` to the new directory ``dst`` (files, dirs, symlinks)."""
    dst.mkdir(parents=True)
    for root, dirs, files in os.walk(src):
        here = Path(root)
        there = dst / here.relative_to(src)
        for name in dirs:
            source = here / name
            if source.is_symlink():
                os.symlink(os.readlink(source), there / name)
            else:
                (there / name).mkdir()
        for name in files:
            source = here / name
            if source.is_symlink():
                os.symlink(os.readlink(source), there / name)
            else:
                _copy_sparse_file(source, there / name)
        fsync_dir(there)


def _old(target: Path) -> Path:
    return target.with_name(target.name + OLD_SUFFIX)


def recover_swap(target: Path) -> None:
    """After a crash inside :func:`swap_in`: keep the new tree if it got in place, else
    put the old one back; remove the leftover."""
    old = _old(target)
    if not old.exists():
        return
    if target.exists():
        shutil.rmtree(old)
    else:
        os.rename(old, target)
    fsync_dir(target.parent)


def swap_in(staging: Path, target: Path) -> None:
    """Puts ``staging`` at ``target`` (same file system), replacing what was there."""
    recover_swap(target)
    old = _old(target)
    if target.exists():
        os.rename(target, old)
    os.rename(staging, target)
    fsync_dir(target.parent)
    if old.exists():
        shutil.rmtree(old)


class DirLock:
    """``with DirLock(path):`` holds an exclusive lock on ``path``; :class:`BlockingIOError`
    when another process holds it and ``wait`` is False."""

    def __init__(self, path: Path, *, wait: bool = False) -> None:
        self.path = path
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> DirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
