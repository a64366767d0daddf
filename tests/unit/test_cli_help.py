"""What ``album-operator`` tells about itself: its version, and every flag's default and
environment variable in ``run --help``."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from album_operator import cli

ALBUM_OPERATOR = str(Path(sys.executable).parent / "album-operator")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ALBUM_OPERATOR, *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_version_is_the_installed_distributions() -> None:
    result = _run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"album-operator {metadata.version('qdrant-album-operator')}"


def test_run_help_shows_defaults_and_every_environment_variable_the_command_reads() -> None:
    result = _run("run", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "--resync-seconds RESYNC_SECONDS how often every resource is compared with Qdrant " \
           "(default: 60.0)" in text
    assert "--deletion-grace-seconds DELETION_GRACE_SECONDS" in text
    assert "(default: 300.0)" in text
    source = Path(cli.__file__).read_text(encoding="utf-8")
    read = set(re.findall(r'environ\.get\("([A-Z_]+)"', source))
    assert {"ALBUMOPS_QDRANT_SECRET", "QDRANT_URL", "QDRANT_PEER_URLS"} <= read
    missing = sorted(name for name in read if name not in text)
    assert not missing, f"run --help does not mention {missing}"
