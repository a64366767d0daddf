"""`album-operator run` on a read-only root filesystem: a directory it must write that is not
writable is named in one line, before the kubernetes client fails on it and blames the
kubeconfig. The tests run as root, for whom permissions never deny a write, so an unwritable
directory is one under a regular file."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.unit.test_cli_startup import _without_kubernetes

# The real start-up path, with Python's temporary directory pinned where the test says: with
# TMPDIR alone, tempfile would quietly fall back to a writable /tmp.
RUN_WITH_TEMPDIR = ("import sys, tempfile; tempfile.tempdir = sys.argv[1]; "
                    "from album_operator.cli import main; sys.exit(main(sys.argv[2:]))")


def kubeconfig_with_certificates(path: Path) -> Path:
    """A kubeconfig whose client certificate is inline: the kubernetes client writes it to
    the temporary directory to hand it to its TLS library."""
    data = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1",
                                               "certificate-authority-data": data}}],
        "users": [{"name": "u", "user": {"client-certificate-data": data,
                                         "client-key-data": data}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def run(arguments: list[str], env: dict[str, str], tempdir: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    command = ([sys.executable, "-c", RUN_WITH_TEMPDIR, str(tempdir), *arguments]
               if tempdir else [sys.executable, "-m", "album_operator.cli", *arguments])
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_an_unwritable_temporary_directory_is_named_not_the_kubeconfig(tmp_path: Path) -> None:
    read_only = tmp_path / "a-file"
    read_only.write_text("")
    tempdir = read_only / "tmp"
    kubeconfig = kubeconfig_with_certificates(tmp_path / "kubeconfig")
    result = run(["run", "--health-port", "0", "--embedded-path", str(tmp_path / "qdrant")],
                 _without_kubernetes(tmp_path, KUBECONFIG=str(kubeconfig)), tempdir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"album-operator: the temporary directory {tempdir} is not "
                               "writable (Not a directory"), lines[0]
    assert "set TMPDIR to a writable directory" in lines[0]
    assert "kubeconfig" not in lines[0].split(";")[0]


def test_an_unwritable_embedded_path_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("")  # like /home/album on a read-only root: nothing can go under it
    embedded = blocker / ".local" / "share" / "album-operator" / "qdrant"
    result = run(["run", "--health-port", "0", "--embedded-path", str(embedded)],
                 _without_kubernetes(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"album-operator: the embedded Qdrant data path {embedded} is "
                               f"not writable (Not a directory: {blocker})"), lines[0]
    assert "give --embedded-path a writable directory" in lines[0]


def test_the_default_embedded_path_under_an_unwritable_home_is_named(tmp_path: Path) -> None:
    home = tmp_path / "album"
    home.write_text("")
    env = {k: v for k, v in _without_kubernetes(home).items() if k != "XDG_DATA_HOME"}
    result = run(["run", "--health-port", "0"], env)
    assert result.returncode == 2, result.stderr
    assert f"the embedded Qdrant data path {home}/.local/share/album-operator/qdrant is not " \
        "writable" in result.stderr
    assert os.path.isfile(home)
