"""`helm install` of the image built here, as the README's Install section says, on a real node:
the Pod Ready under the chart's restricted security context, `helm test`, and the README's
story through the Pod (collections Ready, a verified master behind its alias)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from album_operator_dev.localcluster import node as local_node
from tests.e2e.conftest import REPO, Helm, Release
from tests.helpers import Kubectl, condition


def _readme_install_block() -> str:
    readme = (REPO / "README.md").read_text()
    marker = readme.index("<!-- tests/e2e/test_install.py runs this block")
    block = readme[marker:].split("```sh\n", 1)[1].split("```", 1)[0]
    return block.replace("registry.example.com/album-operator", "album-operator")


def test_the_readme_install_runs_the_operator_pod_and_helm_test_passes(
        helm: Helm, kube: Kubectl, node: local_node.NodeState) -> None:
    tools = f"{Path(node.helm).parent}:{Path(node.kubectl).parent}:/usr/bin:/bin"
    release = Release(helm, kube, "album-system")
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", _readme_install_block()],
                              cwd=REPO, capture_output=True, text=True, timeout=600,
                              env={"PATH": tools, "KUBECONFIG": node.kubeconfig,
                                   "HOME": str(Path.home())}, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"Phase:\s+Succeeded", done.stdout), done.stdout
        pods = release.pods()
        assert [condition(pod, "Ready")["status"] for pod in pods] == ["True"]  # type: ignore[index]
        assert pods[0]["spec"]["containers"][0]["image"] == node.operator_image
    finally:
        release.uninstall()


def test_the_pod_runs_read_only_as_non_root_with_every_capability_dropped(
        release: Release) -> None:
    release.install()
    pod = release.pods()[0]
    name = pod["metadata"]["name"]

    whoami = release.kube.run("exec", name, "--", "id", "-u", namespace=release.namespace)
    write_root = release.kube.run("exec", name, "--", "touch", "/opt/written",
                                  namespace=release.namespace, check=False)
    write_tmp = release.kube.run("exec", name, "--", "touch", "/tmp/written",
                                 namespace=release.namespace, check=False)

    assert whoami.stdout.strip() == "10001"
    assert write_root.returncode != 0
    assert "Read-only file system" in write_root.stderr
    assert write_tmp.returncode == 0
    container = pod["spec"]["containers"][0]["securityContext"]
    assert container["capabilities"]["drop"] == ["ALL"]
    assert container["allowPrivilegeEscalation"] is False


def test_the_readme_story_runs_through_the_pod(release: Release) -> None:
    release.install()
    kube, namespace = release.kube, release.namespace

    kube.run("apply", "-f", str(REPO / "examples" / "album-collections.yaml"),
             namespace=namespace)
    kube.run("wait", "--for=condition=Ready", "albumcollection", "--all", "--timeout=180s",
             namespace=namespace)
    kube.run("apply", "-f", str(REPO / "examples" / "master-merge.yaml"), namespace=namespace)
    kube.run("wait", "--for=condition=Ready", "mastermerge/album-master", "--timeout=300s",
             namespace=namespace)

    status = kube.get("mastermerge", "album-master", namespace)["status"]
    assert status["aliasTarget"].startswith("album_master_v"), json.dumps(status)[:2000]
