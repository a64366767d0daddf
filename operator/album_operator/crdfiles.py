"""Writes the generated CRDs to ``crds/`` and the Helm chart, and checks they are current."""

from __future__ import annotations

from pathlib import Path

import yaml

from album_operator.core.crdgen import build_crd
from album_operator.core.reference import splice
from album_operator.models.kinds import ALL_KINDS, KindInfo

HEADER = (
    "# Generated from operator/album_operator/models by `album-operator crds generate`.\n"
    "# Do not edit: change the pydantic models and regenerate.\n"
)
CRD_DIRS = ("crds", "charts/album-operator/crds")
README = "README.md"


def file_name(info: KindInfo) -> str:
    return f"{info.crd_name}.yaml"


def render(info: KindInfo) -> str:
    return HEADER + yaml.safe_dump(build_crd(info), sort_keys=False, width=100)


def rendered_files() -> dict[str, str]:
    return {file_name(info): render(info) for info in ALL_KINDS}


def write(repo: Path) -> list[Path]:
    written = []
    for directory in CRD_DIRS:
        target = repo / directory
        target.mkdir(parents=True, exist_ok=True)
        for name, text in rendered_files().items():
            path = target / name
            path.write_text(text)
            written.append(path)
    readme = repo / README
    if readme.is_file():
        readme.write_text(splice(readme.read_text()))
        written.append(readme)
    return written


def stale(repo: Path) -> list[str]:
    """Files in the repository that differ from what the models generate."""
    problems = []
    expected = rendered_files()
    for directory in CRD_DIRS:
        target = repo / directory
        for name, text in expected.items():
            path = target / name
            if not path.is_file() or path.read_text() != text:
                problems.append(str(Path(directory) / name))
        present = {p.name for p in target.glob("*.yaml")} if target.is_dir() else set()
        extra = present - set(expected)
        problems += [str(Path(directory) / name) + " (not generated)" for name in sorted(extra)]
    readme = repo / README
    if readme.is_file() and splice(readme.read_text()) != readme.read_text():
        problems.append(f"{README} field reference")
    return problems
