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


def _complete(line: str, tmp_path: Path, program: str = ALBUM_OPERATOR) -> list[str]:
    """What the shell would offer after ``line``, asked the way argcomplete's shell code asks."""
    out = tmp_path / "completions"
    env = {"_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
           "PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    result = subprocess.run([program], capture_output=True, text=True, env=env, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    return out.read_text().split("\n")


def test_completion_completes_commands_flags_and_kinds(tmp_path: Path) -> None:
    assert _complete("album-operator st", tmp_path) == ["status "]
    assert "--all-namespaces " in _complete("album-operator status --a", tmp_path)
    assert _complete("album-operator status mas", tmp_path) == ["mastermerge/"]
    assert _complete("album-operator local-cluster d", tmp_path) == ["down "]
    plugin = str(Path(sys.executable).parent / "kubectl-albumops")
    assert _complete("kubectl-albumops s", tmp_path, plugin) == ["status "]


def test_completion_prints_a_script_for_each_shell() -> None:
    for shell, marker in (("bash", "complete "), ("zsh", "compdef"), ("fish", "complete ")):
        result = _run("completion", shell)
        assert result.returncode == 0, result.stderr
        assert marker in result.stdout
        assert "kubectl-albumops" in result.stdout


def test_local_cluster_help_explains_every_action() -> None:
    text = _run("local-cluster", "--help").stdout
    for action in ("build", "up", "env", "status", "down"):
        assert re.search(rf"^  {action} +\S", text, re.MULTILINE), f"{action} not explained"


def test_status_help_shows_examples_and_where_qdrant_is_read_from() -> None:
    text = " ".join(_run("status", "--help").stdout.split())
    assert "kubectl albumops status -n photos mm/master" in text
    assert "[env QDRANT_URL]" in text
    assert "QDRANT_API_KEY" in text
