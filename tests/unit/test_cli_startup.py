"""The commands that talk to the API server, started without a Kubernetes configuration: one
line naming the problem and exit status 2, not the kubernetes library's chained tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = Path(sys.executable).parent / "album-operator"
NO_CONFIGURATION = ("album-operator: no Kubernetes configuration: set KUBECONFIG or run inside "
                    "a cluster")


def _without_kubernetes(home: Path, **extra: str) -> dict[str, str]:
    """No $KUBECONFIG, an empty home (no ~/.kube/config), and not inside a Pod."""
    drop = {"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "HOME": str(home),
            **extra}


@pytest.mark.parametrize("arguments", [
    ["run", "--health-port", "0"],
    ["crds", "install"],
], ids=["run", "crds-install"])
def test_no_kubeconfig_is_one_line_and_exit_2(tmp_path: Path, arguments: list[str]) -> None:
    if arguments[0] == "run":
        arguments = [*arguments, "--embedded-path", str(tmp_path / "qdrant")]
    result = subprocess.run([str(COMMAND), *arguments], capture_output=True, text=True,
                            env=_without_kubernetes(tmp_path), timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [NO_CONFIGURATION], result.stderr
    assert result.stdout == ""


def test_a_kubeconfig_that_is_not_there_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "kubeconfig"
    result = subprocess.run([str(COMMAND), "crds", "install"], capture_output=True, text=True,
                            env=_without_kubernetes(tmp_path, KUBECONFIG=str(missing)),
                            timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"KUBECONFIG={missing} is not a file" in lines[0]


def test_an_unreadable_kubeconfig_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: [\n")
    result = subprocess.run([str(COMMAND), "crds", "install"], capture_output=True, text=True,
                            env=_without_kubernetes(tmp_path, KUBECONFIG=str(broken)),
                            timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"album-operator: no usable Kubernetes configuration in {broken}")
    assert "Traceback" not in result.stderr
