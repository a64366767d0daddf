"""Turns the pydantic models into CustomResourceDefinitions (pure: values in, values out).

Pydantic emits JSON Schema with ``$ref``s, ``anyOf: [X, null]`` for optional fields and
``title``s. Kubernetes wants a structural schema: everything inlined, one type per node, no
nulls. This module does that translation and nothing else.
"""

from __future__ import annotations

from typing import Any

from album_operator.models.common import CATEGORY, GROUP, VERSION
from album_operator.models.kinds import KindInfo

Schema = dict[str, Any]

_DROPPED_KEYS = {"title"}
_MERGED_LISTS = {"x-kubernetes-validations"}


class SchemaError(ValueError):
    """The models produced a schema Kubernetes cannot take."""


def _merge(base: Schema, overlay: Schema) -> Schema:
    merged = dict(base)
    for key, value in overlay.items():
        if key in _MERGED_LISTS and key in merged:
            merged[key] = [*merged[key], *value]
        else:
            merged[key] = value
    return merged


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Inlines $ref and collapses optional ``anyOf`` into one node."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve(_merge(target, rest), defs)
    if "anyOf" in node:
        options = [opt for opt in node["anyOf"] if opt.get("type") != "null"]
        if len(options) != 1:
            raise SchemaError(f"union types are not structural: {node['anyOf']}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _resolve(_merge(options[0], rest), defs)
    return node


def _convert(node: Schema, defs: dict[str, Schema], with_defaults: bool) -> Schema:
    node = _resolve(node, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or key == "$defs":
            continue
        if key == "default" and (value is None or not with_defaults):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {
                name: _convert(prop, defs, with_defaults) for name, prop in value.items()
            }
        elif key in {"items", "additionalProperties"} and isinstance(value, dict):
            out[key] = _convert(value, defs, with_defaults)
        else:
            out[key] = value
    if "properties" in out:
        out["type"] = "object"
    if out.get("type") == "object" and isinstance(out.get("default"), dict):
        # Kubernetes fills nested defaults itself; an empty default lets it do so.
        out["default"] = {}
    return out


def structural_schema(json_schema: Schema, with_defaults: bool = True) -> Schema:
    """Converts one pydantic JSON Schema into a structural Kubernetes schema."""
    defs = json_schema.get("$defs", {})
    return _convert(json_schema, defs, with_defaults)


def missing_descriptions(schema: Schema, path: str = "") -> list[str]:
    """Paths of properties that lack a description (``kubectl explain`` would be blank)."""
    found: list[str] = []
    for name, prop in schema.get("properties", {}).items():
        here = f"{path}.{name}"
        if not prop.get("description"):
            found.append(here)
        found += missing_descriptions(prop, here)
    for key in ("items", "additionalProperties"):
        child = schema.get(key)
        if isinstance(child, dict):
            found += missing_descriptions(child, f"{path}[]")
    return found


def _printer_columns(info: KindInfo) -> list[Schema]:
    columns = []
    for column in info.columns:
        entry: Schema = {"name": column.name, "type": column.type,
                         "jsonPath": column.json_path, "description": column.description}
        if column.priority:
            entry["priority"] = column.priority
        columns.append(entry)
    return columns


def build_crd(info: KindInfo) -> Schema:
    """The complete CustomResourceDefinition of one kind."""
    spec = structural_schema(info.spec.model_json_schema(by_alias=True, mode="validation"))
    status = structural_schema(
        info.status.model_json_schema(by_alias=True, mode="validation"), with_defaults=False)
    spec.pop("default", None)
    root: Schema = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/part-of": "qdrant-album-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": _printer_columns(info),
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }
