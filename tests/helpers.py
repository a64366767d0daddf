"""Test helpers that talk to the real API server (through kubectl) and wait for outcomes."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


@dataclass(frozen=True)
class Kubectl:
    binary: str
    kubeconfig: str
    cache_dir: str

    def run(self, *args: str, stdin: str | None = None, check: bool = True,
            namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache_dir}"]
        if namespace:
            cmd.append(f"--namespace={namespace}")
        result = subprocess.run([*cmd, *args], input=stdin, capture_output=True, text=True,
                                timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def apply(self, manifest: dict[str, Any] | str, namespace: str) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        self.run("apply", "-f", "-", stdin=text, namespace=namespace)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        out = self.run("get", kind, name, "-o", "json", namespace=namespace).stdout
        loaded: dict[str, Any] = json.loads(out)
        return loaded

    def exists(self, kind: str, name: str, namespace: str) -> bool:
        result = self.run("get", kind, name, "--ignore-not-found", "-o", "name",
                          namespace=namespace, check=False)
        return bool(result.stdout.strip())

    def events(self, name: str, namespace: str) -> list[dict[str, Any]]:
        out = self.run("get", "events", "-o", "json",
                       f"--field-selector=involvedObject.name={name}",
                       namespace=namespace).stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items


def wait_for(check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2,
             what: str = "condition") -> T:
    """Polls until ``check`` returns something truthy; fails with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


TOUCH_ANNOTATION = "tests.albumops.example/touched"
"""Outside the operator's own ``albumops.io/`` prefix, which kopf leaves out of the essence
it compares: a new value here is a change kopf hands to the update handler."""
HANDLED_ANNOTATION = "albumops.io/last-handled-configuration"


def reconcile_now(kubectl: Kubectl, kind: str, name: str, namespace: str,
                  timeout: float = 30.0) -> dict[str, Any]:
    """Has the operator reconcile the resource once more, now (the update handler runs the
    same reconcile as a resync), and returns the resource as that reconcile left it: kopf
    records the annotation it handled in ``last-handled-configuration`` after writing the
    handler's status, so a test waits for that instead of sleeping through resyncs."""
    token = uuid.uuid4().hex
    kubectl.run("annotate", "--overwrite", f"{kind}/{name}", f"{TOUCH_ANNOTATION}={token}",
                namespace=namespace)

    def handled() -> dict[str, Any] | None:
        obj = kubectl.get(kind, name, namespace)
        return obj if token in obj["metadata"].get("annotations", {}).get(
            HANDLED_ANNOTATION, "") else None
    return wait_for(handled, timeout, interval=0.1, what=f"{kind}/{name} reconciled")


def condition(obj: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == condition_type:
            found: dict[str, Any] = cond
            return found
    return None


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
