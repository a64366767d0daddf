"""The chart README's table of values is generated from values.schema.json and values.yaml,
lists every value with its type, default and description, and a test fails when it is stale."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from album_operator_dev import chartdocs

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / chartdocs.CHART


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return loaded


def test_the_chart_readme_is_current_and_every_property_is_described() -> None:
    assert chartdocs.stale(REPO) == [], f"run: {chartdocs.COMMAND}"
    assert chartdocs.undocumented(schema()) == []


def leaves(values: Any, prefix: str = "") -> list[str]:
    if not isinstance(values, dict) or not values:
        return [prefix.rstrip(".")]
    return [leaf for key, value in values.items() for leaf in leaves(value, f"{prefix}{key}.")]


def test_every_value_has_a_row_with_its_default() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = {row.key: row for row in chartdocs.rows(schema(), values)}
    for leaf in leaves(values):
        # a map value (labels, resources.requests) is one row, its entries are not
        key = next((k for k in (leaf, leaf.rsplit(".", 1)[0]) if k in rows), None)
        assert key is not None, f"{leaf} has no row"
        assert rows[key].description, key
    assert rows["replicaCount"].default == "`1`"
    assert rows["pdb.maxUnavailable"].default == "`null`"
    assert rows["pdb.maxUnavailable"].type == "integer or string or null"
    assert rows["image.pullPolicy"].type == "string (Always, IfNotPresent, Never)"
    assert rows["metrics.service.annotations"].type == "map of string"
    assert rows["image"].default == "", "an object whose keys have rows of their own"
    readme = (CHART / "README.md").read_text()
    for key in rows:
        assert f"| `{key}` |" in readme


def copy_chart(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(CHART, repo / chartdocs.CHART,
                    ignore=shutil.ignore_patterns("templates", "files", "charts"))
    return repo


def test_a_changed_description_makes_the_readme_stale_until_generated(tmp_path: Path) -> None:
    repo = copy_chart(tmp_path)
    path = repo / chartdocs.CHART / "values.schema.json"
    text = path.read_text()
    assert text.count('"Render the NetworkPolicy."') == 1
    path.write_text(text.replace('"Render the NetworkPolicy."', '"Render a | policy."'))
    assert chartdocs.stale(repo) == [
        f"{chartdocs.README} values table (run: {chartdocs.COMMAND})"]
    chartdocs.write(repo)
    assert chartdocs.stale(repo) == []
    assert "| Render a \\| policy. |" in (repo / chartdocs.README).read_text()


def test_a_property_without_description_is_named(tmp_path: Path) -> None:
    repo = copy_chart(tmp_path)
    path = repo / chartdocs.CHART / "values.schema.json"
    text = path.read_text()
    old = '"Render the NetworkPolicy."'
    path.write_text(text.replace(f', "description": {old}', ""))
    chartdocs.write(repo)
    assert chartdocs.stale(repo) == [
        "values.schema.json: networkPolicy.enabled has no description"]


def test_the_command_outside_a_checkout_says_so_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert chartdocs.main(["check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "not a checkout" in err[0]
