"""The package layout keeps the standard library reachable and the commands installed; the
version is pyproject.toml's everywhere it is stated; the license is declared and shipped."""

from __future__ import annotations

import operator
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import album_operator

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "album-operator"


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def project_version() -> str:
    version: str = pyproject()["project"]["version"]
    return version


def chart_meta() -> dict[str, Any]:
    meta: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return meta


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


def test_the_chart_version_and_app_version_are_the_pyproject_version() -> None:
    meta = chart_meta()
    assert meta["version"] == project_version()
    assert meta["appVersion"] == project_version()


def test_the_default_image_tag_is_the_app_version() -> None:
    """An image tag set in values.yaml would have to be bumped by hand: it stays empty and the
    chart falls back to appVersion."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == ""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert "default .Chart.AppVersion .Values.image.tag" in helpers


def test_the_dockerfile_version_argument_defaults_to_the_pyproject_version() -> None:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    assert [line for line in lines if line.startswith("ARG VERSION=")] == [
        f"ARG VERSION={project_version()}"]


def test_the_installed_package_and_its_commands_report_the_pyproject_version() -> None:
    """A stale install (pyproject bumped, not reinstalled) fails here too: make reinstalls."""
    assert album_operator.__version__ == project_version()
    command = Path(sys.executable).parent / "album-operator"
    result = subprocess.run([str(command), "--version"], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.stdout.split() == ["album-operator", project_version()]


def test_the_version_is_unknown_where_the_distribution_is_not_installed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(album_operator, "DISTRIBUTION", "no-such-distribution")
    assert album_operator.__version__ == "unknown"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        album_operator.nothing  # noqa: B018


def test_the_license_is_apache_2_0_declared_once_and_shipped_as_license() -> None:
    """pyproject.toml's SPDX expression with license-files (setuptools >= 77; the TOML table
    form is deprecated), the LICENSE file beside it, and the chart's annotation agree."""
    project = pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert "setuptools>=77" in pyproject()["build-system"]["requires"]
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert chart_meta()["annotations"]["artifacthub.io/license"] == "Apache-2.0"
