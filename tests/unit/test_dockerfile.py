"""The Dockerfile, checked without a Docker engine: a non-root user, the console script as
entrypoint, and a build context that holds everything ``pip install .`` needs."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def project() -> dict[str, object]:
    loaded: dict[str, object] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return loaded


def test_every_stage_builds_on_python_3_11_slim() -> None:
    bases = [args.split()[0] for op, args in instructions() if op == "FROM"]
    assert len(bases) >= 2, "multi-stage"
    assert set(bases) == {"python:3.11-slim"}
    assert project()["requires-python"] == ">=3.11"


def test_the_image_runs_as_the_non_root_uid_10001() -> None:
    users = [args for op, args in final_stage() if op == "USER"]
    assert users, "the final stage sets a USER"
    user = users[-1].split(":")[0]
    assert user.isdigit(), "numeric, so runAsNonRoot can verify it"
    assert int(user) == 10001
    last_user = max(i for i, (op, _) in enumerate(final_stage()) if op == "USER")
    assert [op for op, _ in final_stage()[last_user:]] == ["USER", "EXPOSE", "ENTRYPOINT"], (
        "nothing runs after switching to the unprivileged user")


def test_the_entrypoint_is_the_console_script_declared_in_pyproject() -> None:
    entrypoints = [args for op, args in final_stage() if op == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    command = json.loads(entrypoints[0])  # exec form: signals reach the operator
    assert command == ["album-operator", "run"]
    scripts = project()["scripts"]
    assert isinstance(scripts, dict)
    assert scripts[command[0]] == "album_operator.cli:main"
    installed = Path(sys.executable).parent / command[0]
    result = subprocess.run([str(installed), *command[1:], "--help"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "--health-port" in result.stdout


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a leading ``!`` re-includes."""
    allowed = True
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            allowed = negated
    return allowed


def copied_sources() -> list[str]:
    sources = []
    for op, args in instructions():
        if op == "COPY" and "--from=" not in args:
            sources += [part.rstrip("/") for part in args.split()[:-1]]
    return sources


def test_the_build_context_holds_what_the_copies_name() -> None:
    sources = copied_sources()
    assert {"pyproject.toml", "README.md", "operator/album_operator"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        assert dockerignore_allows(source), f"{source} is excluded by .dockerignore"
    assert dockerignore_allows("operator/album_operator/cli.py")
    assert not dockerignore_allows("tests/conftest.py")
    assert not dockerignore_allows(".venv")


def test_the_image_carries_only_the_operator_not_the_developer_tooling() -> None:
    """album_operator_dev (local control plane, demo, CRD files) stays out of the image: no
    COPY names it or a folder above it, and the build context leaves it out as well."""
    assert (REPO / "operator/album_operator_dev/__init__.py").is_file()
    for source in copied_sources():
        assert source not in {".", "operator"}, f"COPY {source} would take the dev package"
        assert not source.startswith("operator/album_operator_dev"), source
    assert not dockerignore_allows("operator/album_operator_dev/demo.py")
    assert not dockerignore_allows("operator/album_operator_dev/localcluster/pki.py")


def test_the_copied_context_builds_a_wheel_with_both_console_scripts(tmp_path: Path) -> None:
    """What the build stage's ``pip install .`` starts from: only the copied files."""
    context = tmp_path / "context"
    context.mkdir()
    for source in copied_sources():
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, context / source,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(origin, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path),
         str(context)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("qdrant_album_operator-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        text = archive.read(entry_points).decode()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "album-operator = album_operator.cli:main" in text
    assert "album_operator/runner.py" in names
    assert not [n for n in names if n.startswith("album_operator_dev/")], "dev tooling left out"
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    runtime = [r for r in requires if "extra ==" not in r]
    assert not [r for r in runtime if r.startswith("cryptography")], "only the dev extra"
    assert [r for r in requires if r.startswith("cryptography") and "extra == \"dev\"" in r]


def test_what_the_operator_writes_is_group_0_writable_for_openshifts_arbitrary_uids() -> None:
    """OpenShift runs the image under an arbitrary uid in group 0 (the chart then sets no
    runAsUser): the directories the image itself offers for writing belong to group 0."""
    run = " ".join(args for op, args in final_stage() if op == "RUN")
    for directory in ("/var/lib/album-operator", "/home/album"):
        assert re.search(rf"chown 10001:0 [^&]*{directory}", run), directory
        assert re.search(rf"chmod g=u [^&]*{directory}", run), directory
