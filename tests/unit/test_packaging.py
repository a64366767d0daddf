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
