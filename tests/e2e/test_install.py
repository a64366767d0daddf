"""`helm install` of the image built here, as the README's Install section says, on a real node:
the Pod Ready under the chart's restricted security context, `helm test`, and the README's
story through the Pod (collections Ready, a verified master behind its alias)."""

from __future__ import annotations

import json
import re

from tests.e2e.conftest import REPO, Release
from tests.helpers import Kubectl, condition, wait_for


def _ready(kube: Kubectl, kind: str, name: str, namespace: str) -> bool:
    found = condition(kube.get(kind, name, namespace), "Ready")
    return bool(found and found["status"] == "True")


def test_helm_install_runs_the_operator_pod_and_helm_test_passes(release: Release) -> None:
    release.install()

    pods = release.pods()
    assert len(pods) == 1
    assert condition(pods[0], "Ready")["status"] == "True"  # type: ignore[index]
    tested = release.helm.run("test", release.name, "-n", release.namespace, "--timeout", "3m")
    assert re.search(r"Phase:\s+Succeeded", tested), tested


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
    wait_for(lambda: _ready(kube, "mastermerge", "album-master", namespace), timeout=10,
             what="the MasterMerge to stay Ready")
