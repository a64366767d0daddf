"""The package layout keeps the standard library reachable and the commands installed."""

from __future__ import annotations

import operator
import subprocess
import sys
from pathlib import Path


def test_the_standard_library_operator_module_is_not_shadowed() -> None:
    assert operator.add(2, 3) == 5
    assert "site-packages" not in str(getattr(operator, "__file__", ""))
    assert not str(getattr(operator, "__file__", "")).endswith("album_operator")


def test_both_console_scripts_are_installed_and_answer_help() -> None:
    for command in ("album-operator", "album-edge"):
        path = Path(sys.executable).parent / command
        assert path.is_file(), f"{command} is installed beside the interpreter"
        result = subprocess.run([str(path), "--help"], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


def test_developer_commands_without_the_dev_package_print_one_line() -> None:
    """Where album_operator_dev is not installed (the operator image), a developer command
    says what it is and how to get it, in one line and without a traceback."""
    hide = ("import sys; sys.modules['album_operator_dev'] = None; "
            "from album_operator.cli import main; sys.exit(main(sys.argv[1:]))")
    for command in (["demo"], ["local-cluster", "status"], ["crds", "check"]):
        result = subprocess.run([sys.executable, "-c", hide, *command], capture_output=True,
                                text=True, check=False, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "developer command" in lines[0]
        assert "album_operator_dev" in lines[0]
        assert "pip install -e '.[dev]'" in lines[0]
