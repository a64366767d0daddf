"""The shipped Argo CD health check, run by a real Lua 5.1 interpreter (Argo CD's dialect) on a
status for every Ready reason of every kind, and kept equal to the catalogue in core/health.py
and to the README."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaRuntime  # type: ignore[import-untyped]

from album_operator.core.health import (
    HEALTHS,
    KINDS,
    READY_REASONS,
    assess,
    progressing_reasons,
    suspended_reasons,
)

REPO = Path(__file__).resolve().parents[2]
LUA_FILE = REPO / "gitops" / "argocd" / "health.lua"
CONFIGMAP = REPO / "gitops" / "argocd" / "argocd-cm.yaml"


def run_health(obj: dict[str, Any]) -> dict[str, Any]:
    """What Argo CD would compute: the shipped script run by Lua 5.1 with ``obj`` (an object
    as the API server returns it) as the global ``obj``; the returned table as a dict."""
    lua = LuaRuntime(unpack_returned_tuples=False)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(LUA_FILE.read_text())
    return {str(key): value for key, value in hs.items()}


def resource(kind: str, conditions: list[dict[str, Any]] | None, generation: int = 3,
             observed: int | None = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "albumops.io/v1alpha1", "kind": kind,
                           "metadata": {"name": "subject", "namespace": "ns",
                                        "generation": generation}}
    if conditions is not None:
        obj["status"] = {"conditions": conditions,
                         **({"observedGeneration": observed} if observed is not None else {})}
    return obj


def ready(status: str, reason: str, message: str = "what the operator said",
          observed: int | None = 3) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": "Ready", "status": status, "reason": reason, "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z"}
    if observed is not None:
        condition["observedGeneration"] = observed
    return condition


EVERY_REASON = [(kind, reason, entry.health) for kind in KINDS
                for reason, entry in sorted(READY_REASONS[kind].items())]


@pytest.mark.parametrize(("kind", "reason", "health"), EVERY_REASON,
                         ids=[f"{k}-{r}" for k, r, _ in EVERY_REASON])
def test_every_ready_reason_has_its_health_in_lua(kind: str, reason: str, health: str) -> None:
    status = "True" if health == "Healthy" else "False"
    obj = resource(kind, [ready(status, reason, f"message of {reason}"),
                          {"type": "Synced", "status": "True", "reason": "InSync",
                           "message": "", "observedGeneration": 3}])
    assert run_health(obj) == {"status": health, "message": f"{reason}: message of {reason}"}
    assert assess(obj) == (health, f"{reason}: message of {reason}")


@pytest.mark.parametrize("kind", KINDS)
def test_the_catalogue_covers_every_kind_and_the_reasons_being_introduced(kind: str) -> None:
    reasons = READY_REASONS[kind]
    assert {"Ready", "InvalidSpec", "InvalidSchedule", "QdrantUnavailable", "SecretUnavailable",
            "Suspended", "Paused", "InternalError"} <= set(reasons)
    assert {entry.health for entry in reasons.values()} <= set(HEALTHS)
    assert reasons["Suspended"].health == reasons["Paused"].health == "Suspended"
    assert all(entry.meaning for entry in reasons.values())


def test_master_merge_reasons() -> None:
    reasons = READY_REASONS["MasterMerge"]
    assert reasons["Building"].health == "Progressing"
    assert reasons["RetryScheduled"].health == "Degraded"
    assert {r for r, e in reasons.items() if e.health == "Healthy"} == {
        "Ready", "Succeeded", "RolledBack"}
    assert {"SourceMissing", "NoSources", "IncompatibleSources", "IdCollision", "Conflict",
            "TargetMissing", "IndexingFailed", "VerificationFailed", "SwapNotConfirmed",
            "UnorderedScroll", "AliasIsSource", "AliasIsCollection", "OwnedByAnotherNamespace",
            "NotOwned", "OwnerGone", "RollbackTargetMissing"} <= set(reasons)


def test_album_collection_reasons() -> None:
    reasons = READY_REASONS["AlbumCollection"]
    assert reasons["CollectionNameChanged"].health == "Degraded"
    assert {"ImmutableFieldMismatch", "Conflict", "InvalidConnection"} <= set(reasons)


def test_a_reason_means_the_same_on_every_kind() -> None:
    """One script serves the three kinds, so its lists cannot differ by kind."""
    health: dict[str, str] = {}
    for reasons in READY_REASONS.values():
        for reason, entry in reasons.items():
            assert health.setdefault(reason, entry.health) == entry.health, reason


def _lua_set(name: str) -> set[str]:
    match = re.search(rf"^local {name} = \{{(.*)\}}$", LUA_FILE.read_text(), re.MULTILINE)
    assert match, f"no `local {name} = {{...}}` line in {LUA_FILE.name}"
    entries = [entry.strip() for entry in match.group(1).split(",") if entry.strip()]
    assert all(re.fullmatch(r"\w+ = true", entry) for entry in entries), entries
    return {entry.split(" = ")[0] for entry in entries}


def test_the_lua_reason_lists_are_the_catalogues() -> None:
    assert _lua_set("progressing") == progressing_reasons()
    assert _lua_set("suspended") == suspended_reasons()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("obj_of", "health"), [
    (lambda kind: resource(kind, None), "Progressing"),
    (lambda kind: resource(kind, []), "Progressing"),
    (lambda kind: resource(kind, [{"type": "Synced", "status": "True", "reason": "InSync",
                                   "message": "", "observedGeneration": 3}]), "Progressing"),
    (lambda kind: {**resource(kind, None), "status": {}}, "Progressing"),
], ids=["no status", "no conditions", "no Ready", "empty status"])
def test_no_ready_condition_is_progressing(kind: str, obj_of: Any, health: str) -> None:
    obj = obj_of(kind)
    expected = {"status": health, "message": "waiting for the operator's Ready condition"}
    assert run_health(obj) == expected
    assert assess(obj) == (expected["status"], expected["message"])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("condition_generation", "status_generation"), [
    (2, 3),      # Ready's own observedGeneration is behind
    (None, 2),   # no observedGeneration on Ready: status.observedGeneration is read
])
def test_a_generation_not_handled_yet_is_progressing_even_when_ready(
        kind: str, condition_generation: int | None, status_generation: int) -> None:
    obj = resource(kind, [ready("True", "Ready", "was fine", observed=condition_generation)],
                   generation=3, observed=status_generation)
    result = run_health(obj)
    assert result["status"] == "Progressing"
    assert result["message"] == "generation 3 not handled yet (observed 2); Ready: was fine"
    assert assess(obj) == (result["status"], result["message"])


def test_ready_observed_generation_wins_over_a_stale_status_one() -> None:
    obj = resource("MasterMerge", [ready("True", "Ready", observed=3)], generation=3, observed=1)
    assert run_health(obj)["status"] == "Healthy"


@pytest.mark.parametrize(("status", "reason", "health"), [
    ("True", "SourceMissing", "Healthy"),   # a failed build; the previous master still serves
    ("Unknown", "QdrantUnavailable", "Degraded"),
    ("Unknown", "Building", "Progressing"),
    ("False", "SomethingNew", "Degraded"),  # a reason no catalogue knows
    ("False", "", "Degraded"),
])
def test_status_and_reason_combinations(status: str, reason: str, health: str) -> None:
    obj = resource("MasterMerge", [ready(status, reason, "m")])
    assert run_health(obj) == {"status": health, "message": f"{reason}: m"}
    assert assess(obj)[0] == health


def test_a_condition_without_reason_or_message_still_has_a_message() -> None:
    obj = resource("AlbumCollection", [{"type": "Ready", "status": "False",
                                        "observedGeneration": 3}])
    assert run_health(obj) == {"status": "Degraded", "message": ": "}


def test_the_configmap_carries_the_script_for_each_kind() -> None:
    data = yaml.safe_load(CONFIGMAP.read_text())["data"]
    assert set(data) == {f"resource.customizations.health.albumops.io_{kind}"
                         for kind in KINDS}
    assert all(script == LUA_FILE.read_text() for script in data.values())


def test_the_readme_shows_the_shipped_configmap_verbatim() -> None:
    readme = (REPO / "README.md").read_text()
    assert f"```yaml\n{CONFIGMAP.read_text()}```\n" in readme
    assert "gitops/argocd/health.lua" in readme


PACKAGE = REPO / "operator" / "album_operator"
# where each kind's Ready reasons are written, and the calls that carry them
REASON_SOURCES: list[tuple[str, tuple[str, ...], str]] = [
    ("handlers/common.py", KINDS, r'Failure\("(\w+)"'),
    ("core/album_status.py", ("AlbumCollection",),
     r'ConditionUpdate\(\s*"Ready",\s*"\w+",\s*"(\w+)"'),
    ("core/merge.py", ("MasterMerge",), r'ConditionUpdate\(\s*"Ready",\s*"\w+",\s*"(\w+)"'),
    ("reconcilers/master_merge.py", ("MasterMerge",), r'BuildFailed\(\s*"(\w+)"'),
    ("reconcilers/edge_snapshot_policy.py", ("EdgeSnapshotPolicy",),
     r'ConditionUpdate\(\s*"Ready",\s*"\w+",\s*"(\w+)"'),
    ("reconcilers/edge_snapshot_policy.py", ("EdgeSnapshotPolicy",),
     r'PolicyProblem\(\s*"(\w+)"'),
    ("core/tenancy.py", ("MasterMerge", "EdgeSnapshotPolicy"),
     r'AccessDecision\(\s*False,\s*"(\w+)"'),
]


@pytest.mark.parametrize(("path", "kinds", "pattern"), REASON_SOURCES,
                         ids=[f"{p}:{pat.split(chr(92))[0]}" for p, _, pat in REASON_SOURCES])
def test_every_reason_the_code_writes_is_in_the_catalogue(
        path: str, kinds: tuple[str, ...], pattern: str) -> None:
    found = set(re.findall(pattern, (PACKAGE / path).read_text()))
    assert found, f"{pattern} finds nothing in {path}: follow the code"
    for kind in kinds:
        assert found - set(READY_REASONS[kind]) == set(), f"{kind}: {path}"


def test_every_album_collection_outcome_that_is_not_ready_is_in_the_catalogue() -> None:
    from typing import get_args

    from album_operator.core.album_status import Outcome
    ready = {"InSync", "Created", "Recreated", "Repaired", "Adopted", "DriftReported"}
    assert set(get_args(Outcome)) - ready <= set(READY_REASONS["AlbumCollection"])
