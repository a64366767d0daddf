"""A volume provisioner for the one-node test cluster: a directory on the node per claim.

Kubernetes ships no provisioner that works without a cloud or helper images. This one gives
each Pending claim of its StorageClass a hostPath PersistentVolume bound to it, on a directory
any user may write (hostPath volumes take no fsGroup, and the chart's Pods run as non-root),
and removes the directory and the volume when the claim is gone. It polls once a second:
plenty for tests, and nothing to resume after a dropped watch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config

PROVISIONER = "albumops.io/local-directory"
STORAGE_CLASS = "albumops-local"


def _items(response: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(response.data)["items"]
    return items


def _volume(claim: dict[str, Any], path: Path) -> dict[str, Any]:
    meta = claim["metadata"]
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta['uid']}",
                     "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": claim["spec"]["accessModes"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "claimRef": {key: meta[key] for key in ("namespace", "name", "uid")},
        },
    }


def provision_pending(core: client.CoreV1Api, root: Path) -> None:
    claims = core.list_persistent_volume_claim_for_all_namespaces(_preload_content=False)
    for claim in _items(claims):
        spec, meta = claim["spec"], claim["metadata"]
        if (spec.get("storageClassName") != STORAGE_CLASS or spec.get("volumeName")
                or claim.get("status", {}).get("phase") != "Pending"
                or meta.get("deletionTimestamp")):
            continue
        path = root / f"{meta['namespace']}-{meta['name']}-{meta['uid']}"
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o1777)
        try:
            core.create_persistent_volume(cast(Any, _volume(claim, path)))
        except client.ApiException as error:
            if error.status != 409:
                raise


def release_unclaimed(core: client.CoreV1Api) -> None:
    for volume in _items(core.list_persistent_volume(_preload_content=False)):
        annotations = volume["metadata"].get("annotations") or {}
        if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            continue
        if volume.get("status", {}).get("phase") in {"Released", "Failed"}:
            shutil.rmtree(volume["spec"]["hostPath"]["path"], ignore_errors=True)
            core.delete_persistent_volume(volume["metadata"]["name"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    api_client = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    core = client.CoreV1Api(api_client)
    while True:
        try:
            provision_pending(core, args.root)
            release_unclaimed(core)
        except client.ApiException as error:
            print(f"[provisioner] {error.status} {error.reason}", flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
