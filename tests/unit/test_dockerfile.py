"""The Dockerfile, checked without a Docker engine: one pinned base that a builder without a
registry can replace, a non-root user, the console script as entrypoint, OCI labels from build
arguments, and a build context that holds everything ``pip install .`` needs."""

from __future__ import annotations

import fnmatch
import glob
import json
import re
import shlex
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


def build_args(steps: list[tuple[str, str]]) -> dict[str, str]:
    """Each ARG's default ("" when it has none), quotes removed."""
    declared = {}
    for op, args in steps:
        if op == "ARG":
            name, _, default = args.partition("=")
            declared[name] = "".join(shlex.split(default))
    return declared


def before_the_first_from() -> list[tuple[str, str]]:
    steps = instructions()
    return steps[:next(i for i, (op, _) in enumerate(steps) if op == "FROM")]


def test_every_stage_starts_from_one_base_argument_that_defaults_to_pinned_3_11_slim() -> None:
    """A builder without a registry passes --build-arg PYTHON_IMAGE=<a local image>; everyone
    else gets python:3.11-slim by digest, so that a rebuild does not change its base."""
    stages = [args.split() for op, args in instructions() if op == "FROM"]
    assert [stage[0] for stage in stages] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert [stage[1:] for stage in stages] == [["AS", "build"], ["AS", "runtime"]]
    default = build_args(before_the_first_from())["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", default), default
    assert project()["requires-python"] == ">=3.11"


def test_no_syntax_directive_and_no_buildkit_only_flags() -> None:
    """``# syntax=`` makes BuildKit pull a frontend image (no registry, no build); RUN --mount
    fails on the classic builder."""
    text = (REPO / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    assert not [args for op, args in instructions() if op == "RUN" and "--mount" in args]


def test_the_steps_find_python_and_the_tools_on_a_debian_base_too() -> None:
    """A base built from Debian packages has python at /usr/bin (python:3.11-slim: /usr/local/bin)
    and may declare no PATH: nothing names an interpreter's location or extends $PATH."""
    text = " ".join(args for _, args in instructions())
    assert "/usr/local/bin/python" not in text
    assert "python -m venv /opt/venv" in text
    paths = [args for op, args in instructions() if op == "ENV" and "PATH=" in args]
    assert len(paths) == 2
    for env in paths:
        value = re.search(r"(?:^|\s)PATH=(\S+)", env)
        assert value, env
        assert "$" not in value.group(1)
        assert value.group(1).split(":")[:1] == ["/opt/venv/bin"]
        assert {"/usr/bin", "/usr/sbin", "/bin", "/usr/local/bin"} <= set(value.group(1).split(":"))


def labels() -> dict[str, str]:
    found: dict[str, str] = {}
    for op, args in final_stage():
        if op == "LABEL":
            found |= dict(pair.split("=", 1) for pair in shlex.split(args))
    return found


def test_the_image_carries_oci_labels_from_build_arguments_with_defaults() -> None:
    oci = "org.opencontainers.image."
    assert {key.removeprefix(oci): value for key, value in labels().items()} == {
        "title": "album-operator",
        "description": "Kubernetes operator for Qdrant album collections",
        "licenses": "Apache-2.0",
        "version": "${VERSION}",
        "revision": "${REVISION}",
        "source": "${SOURCE_URL}",
        "created": "${CREATED}",
    }
    assert project()["license"] == "Apache-2.0"
    declared = build_args(final_stage())
    assert declared["VERSION"] == project()["version"]
    assert declared["REVISION"] == "unknown"
    assert {"SOURCE_URL", "CREATED"} <= set(declared)


def test_the_image_tells_the_operator_its_revision_for_the_build_info_metric() -> None:
    env = " ".join(args for op, args in final_stage() if op == "ENV")
    assert re.search(r"(?:^|\s)ALBUMOPS_REVISION=\$\{REVISION\}(?:\s|$)", env), env


def test_pip_trusts_a_ca_bundle_the_builder_puts_into_the_context_and_only_then() -> None:
    """TLS to the package index through a re-signing proxy: the builder copies its bundle to
    pip-ca.pem (docs/release.md); without one the optional pattern copies nothing."""
    build_stage = instructions()[:max(i for i, (op, _) in enumerate(instructions())
                                       if op == "FROM")]
    copies = " ".join(args for op, args in build_stage if op == "COPY")
    assert "pip-ca.pe[m]" in copies.split()
    assert dockerignore_allows("pip-ca.pem")
    install = next(args for op, args in build_stage if op == "RUN" and "pip install ." in args)
    assert install.startswith("if [ -f pip-ca.pem ]; then export PIP_CERT=/src/pip-ca.pem; fi")
    assert not [args for op, args in final_stage() if op == "COPY" and "--from" not in args]


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
    """What the COPY lines name, the optional patterns (pip-ca.pe[m]) included."""
    sources = []
    for op, args in instructions():
        if op == "COPY" and "--from=" not in args:
            sources += [part.rstrip("/") for part in args.split()[:-1]]
    return sources


def required_sources() -> list[str]:
    return [source for source in copied_sources() if not glob.has_magic(source)]


def test_the_build_context_holds_what_the_copies_name() -> None:
    sources = required_sources()
    assert {"pyproject.toml", "README.md", "LICENSE", "operator/album_operator"} <= set(sources)
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
    """What the build stage's ``pip install .`` starts from: only the copied files. The build
    gives no warning about the license, and the wheel declares it and carries its text."""
    context = tmp_path / "context"
    context.mkdir()
    for source in required_sources():
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, context / source,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(origin, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "-w", str(tmp_path),
         str(context)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    build_log = result.stdout + result.stderr
    assert "license" not in " ".join(
        line for line in build_log.splitlines() if "Warning" in line).lower(), build_log
    wheel = next(tmp_path.glob("qdrant_album_operator-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        text = archive.read(entry_points).decode()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "album-operator = album_operator.cli:main" in text
    assert "album_operator/runner.py" in names
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    license_text = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(license_text) == (REPO / "LICENSE").read_bytes()
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
