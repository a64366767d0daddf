"""``album-operator crds check|generate`` find the checkout around the current directory, or
say in one line that there is none; in a checkout they name exactly the files that drifted."""

from __future__ import annotations

from pathlib import Path

import pytest

from album_operator.cli import main
from album_operator_dev import crdfiles

REPO = Path(__file__).resolve().parents[2]


def fake_checkout(root: Path) -> Path:
    (root / "pyproject.toml").write_text(f'[project]\nname = "{crdfiles.DISTRIBUTION}"\n')
    return root


def test_outside_a_checkout_check_fails_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["crds", "check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"album-operator: not a checkout: {tmp_path.resolve()}")
    assert err[0].endswith("use --repo PATH")


def test_generate_outside_a_checkout_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["crds", "generate"]) == 2
    assert list(tmp_path.iterdir()) == []
    assert "not a checkout" in capsys.readouterr().err


def test_another_projects_pyproject_is_not_a_checkout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert main(["crds", "check", "--repo", str(tmp_path)]) == 2
    assert "not a checkout" in capsys.readouterr().err


def test_from_a_subdirectory_of_the_repository_check_finds_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO / "charts" / "album-operator" / "templates")
    assert main(["crds", "check"]) == 0, capsys.readouterr().err


def test_in_a_checkout_check_names_exactly_the_drifted_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = fake_checkout(tmp_path)
    assert main(["crds", "generate", "--repo", str(repo)]) == 0
    assert main(["crds", "check", "--repo", str(repo)]) == 0
    capsys.readouterr()

    edited = repo / crdfiles.CHART_CRDS / "mastermerges.albumops.io.yaml"
    edited.write_text(edited.read_text() + "# edited\n")
    (repo / crdfiles.CHART / "crds").mkdir()
    assert main(["crds", "check", "--repo", str(repo)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"stale: {crdfiles.CHART_CRDS}/mastermerges.albumops.io.yaml "
        "(run: album-operator crds generate)",
        f"stale: {crdfiles.CHART}/crds/ (must not exist: Helm would install it besides the "
        "templated CRDs) (run: album-operator crds generate)"]
