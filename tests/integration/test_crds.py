"""The CRDs on a real API server: installed, documented, and refusing bad input by field."""

from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from album_operator.core.crdgen import build_crd
from album_operator.models.kinds import ALL_KINDS
from tests.helpers import Kubectl, load_yaml_documents

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
KINDS: dict[str, dict[str, Any]] = {
    "AlbumCollection": {"year": 2020, "vectors": {"size": 512}},
    "MasterMerge": {"sources": ["album_2020", "album_2021"]},
    "EdgeSnapshotPolicy": {"collection": "album_2020"},
}


@pytest.fixture
def crd_namespace(kubectl: Kubectl) -> str:
    """A namespace no operator watches: these tests are about the API server alone."""
    name = f"crd-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    return name


def manifest(kind: str, spec: dict[str, Any], name: str = "subject") -> dict[str, Any]:
    return {"apiVersion": "albumops.io/v1alpha1", "kind": kind,
            "metadata": {"name": name}, "spec": spec}


def with_changes(kind: str, changes: dict[str, Any], removed: tuple[str, ...] = ()
                 ) -> dict[str, Any]:
    spec = copy.deepcopy(KINDS[kind])
    spec.update(copy.deepcopy(changes))
    for key in removed:
        spec.pop(key, None)
    return manifest(kind, spec)


def test_the_three_crds_are_established(kubectl: Kubectl) -> None:
    for plural in ("albumcollections", "mastermerges", "edgesnapshotpolicies"):
        result = kubectl.run("get", "crd", f"{plural}.albumops.io", "-o",
                             "jsonpath={.status.conditions[?(@.type=='Established')].status}")
        assert result.stdout == "True"


def test_every_example_manifest_is_accepted(kubectl: Kubectl, crd_namespace: str) -> None:
    files = sorted(REPO.glob("examples/**/*.yaml"))
    assert files, "examples/ holds manifests"
    for path in files:
        for document in load_yaml_documents(path):
            result = kubectl.run("create", "--dry-run=server", "-f", "-",
                                 stdin=yaml.safe_dump(document), namespace=crd_namespace,
                                 check=False)
            assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_kubectl_explain_documents_the_spec(kubectl: Kubectl) -> None:
    out = kubectl.run("explain", "albumcollection.spec").stdout
    assert "Album year this collection holds." in out
    assert "deletionPolicy" in out
    assert "Retain" in out
    nested = kubectl.run("explain", "mastermerge.spec.verify.minTopKOverlap").stdout
    assert "Minimum fraction of top-k IDs" in nested


def test_kubectl_get_albumops_lists_all_three_kinds(kubectl: Kubectl, crd_namespace: str
                                                    ) -> None:
    for kind, spec in KINDS.items():
        kubectl.apply(manifest(kind, spec, name=f"{kind.lower()}-one"), crd_namespace)
    out = kubectl.run("get", "albumops", namespace=crd_namespace).stdout
    for kind in KINDS:
        assert f"{kind.lower()}.albumops.io/{kind.lower()}-one" in out


def test_defaults_are_filled_in_by_the_api_server(kubectl: Kubectl, crd_namespace: str) -> None:
    kubectl.apply(manifest("MasterMerge", KINDS["MasterMerge"]), crd_namespace)
    spec = kubectl.get("mastermerge", "subject", crd_namespace)["spec"]
    assert spec["alias"] == "album_master"
    assert spec["copy"] == {"batchSize": 256, "parallelism": 2}
    assert spec["retention"] == {"keepPrevious": 2}
    assert spec["idConflictPolicy"] == "Fail"


INVALID_ON_CREATE = [
    ("year below range", "AlbumCollection", {"year": 1800}, (), "spec.year"),
    ("year of the wrong type", "AlbumCollection", {"year": "twenty"}, (), "spec.year"),
    ("year missing", "AlbumCollection", {}, ("year",), "spec.year"),
    ("both vectors and namedVectors", "AlbumCollection",
     {"namedVectors": {"image": {"size": 512}}}, (), "spec: Required value: set exactly one of"),
    ("neither vectors nor namedVectors", "AlbumCollection", {}, ("vectors",),
     "spec: Required value: set exactly one of"),
    ("vector size zero", "AlbumCollection", {"vectors": {"size": 0}}, (), "spec.vectors.size"),
    ("unknown distance", "AlbumCollection", {"vectors": {"size": 8, "distance": "Hamming"}},
     (), "spec.vectors.distance"),
    ("collection name with a slash", "AlbumCollection", {"collectionName": "bad/name"}, (),
     "spec.collectionName"),
    ("two quantization kinds", "AlbumCollection",
     {"quantization": {"scalar": {}, "binary": {}}}, (), "spec.quantization"),
    ("scalar quantile out of range", "AlbumCollection",
     {"quantization": {"scalar": {"quantile": 0.2}}}, (), "spec.quantization.scalar.quantile"),
    ("hnsw m too large", "AlbumCollection", {"hnsw": {"m": 1000}}, (), "spec.hnsw.m"),
    ("unknown payload index type", "AlbumCollection",
     {"payloadIndexes": [{"field": "x", "type": "vector"}]}, (), "spec.payloadIndexes[0].type"),
    ("tokenizer on a keyword index", "AlbumCollection",
     {"payloadIndexes": [{"field": "x", "type": "keyword", "tokenizer": "word"}]}, (),
     "spec.payloadIndexes[0].type"),
    ("two indexes on one field", "AlbumCollection",
     {"payloadIndexes": [{"field": "x", "type": "keyword"}, {"field": "x", "type": "integer"}]},
     (), "spec.payloadIndexes[1]"),
    ("write consistency above replication", "AlbumCollection",
     {"replicationFactor": 1, "writeConsistencyFactor": 3}, (), "spec.writeConsistencyFactor"),
    ("unknown deletion policy", "AlbumCollection", {"deletionPolicy": "Purge"}, (),
     "spec.deletionPolicy"),
    ("deleted threshold above one", "AlbumCollection",
     {"optimizers": {"deletedThreshold": 1.5}}, (), "spec.optimizers.deletedThreshold"),
    ("merge without sources or selector", "MasterMerge", {}, ("sources",),
     "spec: Required value: set sources, sourceSelector"),
    ("merge source with a bad name", "MasterMerge", {"sources": ["bad name!"]}, (),
     "spec.sources[0]"),
    ("merge source listed twice", "MasterMerge", {"sources": ["a", "a"]}, (), "spec.sources[1]"),
    ("merge batch size zero", "MasterMerge", {"copy": {"batchSize": 0}}, (),
     "spec.copy.batchSize"),
    ("merge overlap above one", "MasterMerge", {"verify": {"minTopKOverlap": 1.5}}, (),
     "spec.verify.minTopKOverlap"),
    ("merge schedule that is not cron", "MasterMerge", {"schedule": "every day"}, (),
     "spec.schedule"),
    ("unknown id conflict policy", "MasterMerge", {"idConflictPolicy": "Merge"}, (),
     "spec.idConflictPolicy"),
    ("merge alias naming a source", "MasterMerge",
     {"alias": "album_2021", "sources": ["album_2020", "album_2021"]}, (),
     "spec.alias: Invalid value: alias must not name one of the sources"),
    ("filter with the Server source", "EdgeSnapshotPolicy",
     {"source": "Server", "filter": {"must": [{"key": "a", "keyword": "b"}]}}, (),
     "spec.source"),
    ("shards and shard keys together", "EdgeSnapshotPolicy",
     {"shards": [0], "shardKeys": ["k"]}, (), "spec.shardKeys"),
    ("upload to a collection and by route", "EdgeSnapshotPolicy",
     {"upload": {"collection": "album_2020", "routeBy": {"field": "year",
                                                          "template": "album_{year}"}}},
     (), "spec.upload"),
    ("route template without its field", "EdgeSnapshotPolicy",
     {"upload": {"routeBy": {"field": "year", "template": "album_all"}}}, (),
     "spec.upload.routeBy.template"),
    ("retention age that is not a duration", "EdgeSnapshotPolicy",
     {"retention": {"maxAge": "1week"}}, (), "spec.retention.maxAge"),
    ("one device listed twice", "EdgeSnapshotPolicy",
     {"devices": [{"name": "d", "tokenSecretRef": "s"}, {"name": "d", "tokenSecretRef": "t"}]},
     (), "spec.devices[1]"),
    ("policy without a collection", "EdgeSnapshotPolicy", {}, ("collection",),
     "spec.collection"),
]


@pytest.mark.parametrize(("kind", "changes", "removed", "field"),
                         [case[1:] for case in INVALID_ON_CREATE],
                         ids=[case[0] for case in INVALID_ON_CREATE])
def test_invalid_manifest_is_rejected_naming_the_field(
        kubectl: Kubectl, crd_namespace: str, kind: str, changes: dict[str, Any],
        removed: tuple[str, ...], field: str) -> None:
    result = kubectl.run("create", "-f", "-", stdin=yaml.safe_dump(
        with_changes(kind, changes, removed)), namespace=crd_namespace, check=False)
    assert result.returncode != 0, f"accepted: {changes}"
    assert "is invalid" in result.stderr
    expected = field if ": " in field else f"{field}: "
    assert expected in result.stderr, result.stderr


INVALID_ON_UPDATE = [
    ("year changed", "AlbumCollection", {}, {"year": 2021}, "spec.year"),
    ("vector size changed", "AlbumCollection", {}, {"vectors": {"size": 768}},
     "spec.vectors.size"),
    ("vector distance changed", "AlbumCollection", {},
     {"vectors": {"size": 512, "distance": "Dot"}}, "spec.vectors.distance"),
    ("shard number changed", "AlbumCollection", {}, {"shardNumber": 3}, "spec.shardNumber"),
    ("collection name changed", "AlbumCollection", {"collectionName": "one"},
     {"collectionName": "two"}, "spec.collectionName"),
    ("named vector added", "AlbumCollection",
     {"vectors": None, "namedVectors": {"a": {"size": 4}}},
     {"vectors": None, "namedVectors": {"a": {"size": 4}, "b": {"size": 4}}},
     "spec.namedVectors"),
    ("merge alias changed", "MasterMerge", {}, {"alias": "other_alias"}, "spec.alias"),
]


@pytest.mark.parametrize(("kind", "initial", "update", "field"),
                         [case[1:] for case in INVALID_ON_UPDATE],
                         ids=[case[0] for case in INVALID_ON_UPDATE])
def test_immutable_field_change_is_rejected_naming_the_field(
        kubectl: Kubectl, crd_namespace: str, kind: str, initial: dict[str, Any],
        update: dict[str, Any], field: str) -> None:
    def spec_of(changes: dict[str, Any]) -> dict[str, Any]:
        spec = {**copy.deepcopy(KINDS[kind]), **copy.deepcopy(changes)}
        return {k: v for k, v in spec.items() if v is not None}

    kubectl.apply(manifest(kind, spec_of(initial)), crd_namespace)
    result = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(
        manifest(kind, spec_of({**initial, **update}))), namespace=crd_namespace, check=False)
    assert result.returncode != 0, f"accepted: {update}"
    assert f"{field}: " in result.stderr, result.stderr


READY_COLUMN = '.status.conditions[?(@.type=="Ready")].status'


@pytest.mark.parametrize("crd_file", [
    *sorted(REPO.glob("crds/*.albumops.io.yaml")),
    *sorted(REPO.glob("charts/album-operator/files/crds/*.albumops.io.yaml"))],
    ids=lambda path: f"{path.parent.parent.name}/{path.name}")
def test_generated_crds_show_ready_by_default_and_times_as_dates(crd_file: Path) -> None:
    crd = yaml.safe_load(crd_file.read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    ready = [c for c in columns if c["name"] == "Ready"]
    assert len(ready) == 1
    assert ready[0]["jsonPath"] == READY_COLUMN
    assert ready[0].get("priority", 0) == 0
    past = {c["name"]: c["type"] for c in columns
            if c["name"] in {"Age", "Last Run", "Last Swap"}}
    assert set(past.values()) == {"date"}, past
    # kubectl prints a future "date" as <invalid>, so times to come are RFC 3339 text
    future = {c["name"]: c["type"] for c in columns if c["name"] in {"Next Run", "Next Build"}}
    assert set(future.values()) <= {"string"}, future
    assert len([c for c in columns if not c.get("priority")]) <= 7


@pytest.mark.parametrize(("kind", "headers"), [
    ("AlbumCollection", ["NAME", "COLLECTION", "READY", "SYNCED", "POINTS", "AGE"]),
    ("MasterMerge", ["NAME", "ALIAS", "TARGET", "READY", "PHASE", "LAST SWAP", "NEXT BUILD",
                     "AGE"]),
    ("EdgeSnapshotPolicy", ["NAME", "COLLECTION", "READY", "SNAPSHOTS", "LAST RUN",
                            "NEXT RUN", "AGE"]),
])
def test_kubectl_get_shows_the_ready_column_by_default(
        kubectl: Kubectl, crd_namespace: str, kind: str, headers: list[str]) -> None:
    kubectl.apply(manifest(kind, KINDS[kind]), crd_namespace)
    out = kubectl.run("get", kind.lower(), "subject", namespace=crd_namespace).stdout
    header = out.splitlines()[0]
    assert re.split(r"\s{2,}", header.strip()) == headers, header
    wide = kubectl.run("get", kind.lower(), "subject", "-o", "wide",
                       namespace=crd_namespace).stdout.splitlines()[0]
    assert "READY" in wide.split()


def applied_by(kubectl: Kubectl, crd: str) -> set[tuple[str, str]]:
    out = kubectl.run("get", "crd", crd, "-o", "json", "--show-managed-fields").stdout
    fields = json.loads(out)["metadata"]["managedFields"]
    return {(entry["manager"], entry["operation"]) for entry in fields}


def served_spec(kubectl: Kubectl, crd: str) -> dict[str, Any]:
    spec: dict[str, Any] = kubectl.get("crd", crd, "")["spec"]
    return spec


def test_crds_install_applies_server_side_and_puts_hand_edits_back(kubectl: Kubectl) -> None:
    """`album-operator crds install` is a forced server-side apply by the field manager
    "album-operator": repeated, it changes nothing; after an edit by hand, the edited fields
    are the generated ones again."""
    from album_operator.adapters.crdinstall import FIELD_MANAGER, install_crds
    from album_operator.adapters.kube import load_api_client

    api_client = load_api_client()
    generated = {crd["metadata"]["name"]: crd["spec"]
                 for crd in (build_crd(info) for info in ALL_KINDS)}
    assert sorted(install_crds(api_client)) == sorted(generated)
    name = "mastermerges.albumops.io"
    before = kubectl.get("crd", name, "")["metadata"]["resourceVersion"]
    install_crds(api_client)
    assert kubectl.get("crd", name, "")["metadata"]["resourceVersion"] == before
    assert (FIELD_MANAGER, "Apply") in applied_by(kubectl, name)

    kubectl.run("patch", "crd", name, "--type=json", "-p", json.dumps([
        {"op": "add", "path": "/spec/versions/0/additionalPrinterColumns/-",
         "value": {"name": "Edited", "type": "string", "jsonPath": ".spec.alias"}},
        {"op": "replace", "path": "/spec/names/shortNames", "value": ["edited"]},
        {"op": "replace", "path": "/spec/versions/0/schema/openAPIV3Schema/description",
         "value": "edited by hand"}]))
    edited = served_spec(kubectl, name)
    assert edited["names"]["shortNames"] == ["edited"]
    install_crds(api_client)
    for crd, spec in generated.items():
        served = served_spec(kubectl, crd)
        assert served["versions"] == spec["versions"], crd
        assert served["names"] == spec["names"], crd
