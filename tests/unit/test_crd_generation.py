"""The CRDs are generated from the pydantic models, documented, structural, and in sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from album_operator.core.crdgen import build_crd, missing_descriptions, structural_schema
from album_operator.models.kinds import ALL_KINDS, KindInfo
from album_operator_dev import crdfiles

REPO = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    stale = crdfiles.stale(REPO)
    assert stale == [], f"regenerate with `album-operator crds generate`: {stale}"


def test_chart_crds_are_identical_to_crds_dir() -> None:
    for info in ALL_KINDS:
        name = crdfiles.file_name(info)
        assert (REPO / "crds" / name).read_text() == (
            REPO / crdfiles.CHART_CRDS / name).read_text()
    peering = crdfiles.PEERING_FILE
    assert (REPO / "crds" / peering).read_text() == (
        REPO / crdfiles.PEERING_SUBCHART_CRDS / peering).read_text()
    assert not (REPO / "charts/album-operator/crds").exists()


def _schema(info: KindInfo) -> dict[str, Any]:
    schema: dict[str, Any] = build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_every_field_has_a_description(info: KindInfo) -> None:
    missing = [p for p in missing_descriptions(_schema(info)) if p != ".metadata"]
    assert missing == []


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [node]
    for child in node.get("properties", {}).values():
        nodes += _walk(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            nodes += _walk(node[key])
    return nodes


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_schema_is_structural(info: KindInfo) -> None:
    for node in _walk(_schema(info)):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "$defs"} & set(node)
        assert "type" in node or node is _schema(info)["properties"]["metadata"]
        assert node.get("default", "") is not None


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_status_is_a_full_schema_with_conditions(info: KindInfo) -> None:
    status = _schema(info)["properties"]["status"]
    assert "x-kubernetes-preserve-unknown-fields" not in status
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert set(conditions["items"]["properties"]) >= {
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    assert "observedGeneration" in status["properties"]
    assert all("default" not in node for node in _walk(status))


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_crd_has_status_subresource_columns_short_names_and_category(info: KindInfo) -> None:
    crd = build_crd(info)
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Age"}
    assert crd["spec"]["names"]["shortNames"]
    assert crd["spec"]["names"]["categories"] == ["albumops"]


def test_optional_fields_collapse_to_their_type() -> None:
    schema = structural_schema({
        "type": "object",
        "properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "null"}],
                             "default": None, "description": "A."}},
    })
    assert schema["properties"]["a"] == {"type": "integer", "description": "A."}


def test_unions_are_refused() -> None:
    with pytest.raises(ValueError, match="not structural"):
        structural_schema({"anyOf": [{"type": "integer"}, {"type": "string"}]})


def test_printer_columns_of_album_collection() -> None:
    columns = build_crd(ALL_KINDS[0])["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == [
        "Collection", "Ready", "Synced", "Points", "Age"]
