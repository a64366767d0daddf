"""Renders the field reference of the three kinds as Markdown, from the same CRD schemas."""

from __future__ import annotations

from typing import Any

from album_operator.core.crdgen import build_crd
from album_operator.models.kinds import ALL_KINDS, KindInfo

BEGIN = "<!-- BEGIN FIELD REFERENCE (generated: album-operator crds generate) -->"
END = "<!-- END FIELD REFERENCE -->"


def _type_of(node: dict[str, Any]) -> str:
    kind = node.get("type", "object")
    if kind == "array":
        return f"[]{_type_of(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type_of(node['additionalProperties'])}"
    return str(kind)


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append(" \\| ".join(f"`{v}`" for v in node["enum"]))
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None or high is not None:
        parts.append(f"{'' if low is None else low}..{'' if high is None else high}")
    if "pattern" in node:
        parts.append("pattern")
    if "default" in node and node["default"] != {}:
        parts.append(f"default `{node['default']}`")
    rules = node.get("x-kubernetes-validations", [])
    if any(r["rule"] == "self == oldSelf" for r in rules):
        parts.append("immutable")
    return ", ".join(parts)


def _rows(node: dict[str, Any], path: str, required: bool) -> list[str]:
    rows = []
    if path:
        description = " ".join(str(node.get("description", "")).split())
        rows.append(f"| `{path}` | {_type_of(node)} | {'yes' if required else ''} | "
                    f"{_constraints(node)} | {description} |")
    child = node
    suffix = ""
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        child, suffix = node["items"], "[]"
    elif isinstance(node.get("additionalProperties"), dict):
        child, suffix = node["additionalProperties"], ".<name>"
    needed = set(child.get("required", []))
    for name, prop in child.get("properties", {}).items():
        rows += _rows(prop, f"{path}{suffix}.{name}" if path else name, name in needed)
    return rows


def kind_reference(info: KindInfo) -> str:
    schema = build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    lines = [f"### {info.kind} (`{info.plural}`, short names: "
             f"{', '.join(info.short_names)})", "", info.description, ""]
    for part in ("spec", "status"):
        lines += [f"| {part} field | type | required | constraints | description |",
                  "|---|---|---|---|---|"]
        lines += _rows(schema["properties"][part], part, part == "spec")[1:]
        lines.append("")
    return "\n".join(lines)


def reference_markdown() -> str:
    return "\n".join([BEGIN, "", *(kind_reference(i) for i in ALL_KINDS), END])


def splice(document: str) -> str:
    """The document with its generated section replaced by the current reference."""
    start, end = document.index(BEGIN), document.index(END) + len(END)
    return document[:start] + reference_markdown() + document[end:]
