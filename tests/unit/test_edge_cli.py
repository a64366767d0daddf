"""The ``album-edge`` command end to end against the fake endpoint: JSON out, exit codes,
options remembered from ``state.json``, and a token that never shows."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.edge_fake_endpoint import FakeEndpoint, SourceShard

ALBUM_EDGE = str(Path(sys.executable).parent / "album-edge")
DIM = 8


@dataclass
class Setup:
    fake: FakeEndpoint
    source: SourceShard
    dir: Path
    token_file: Path

    def run(self, *args: str, env: dict[str, str] | None = None,
            connect: bool = True) -> subprocess.CompletedProcess[str]:
        command = [ALBUM_EDGE, args[0], "--dir", str(self.dir), *args[1:]]
        if connect:
            command += ["--token-file", str(self.token_file)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120,
                              check=False, env={**os.environ, **(env or {})})

    def ok(self, *args: str) -> Any:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    source = SourceShard(tmp_path, dim=DIM)
    source.change(source.random_points(range(300), random.Random(1)))
    fake = FakeEndpoint(tmp_path, source).start()
    fake.publish()
    token_file = tmp_path / "token"
    token_file.write_text(fake.token + "\n")
    yield Setup(fake, source, tmp_path / "device", token_file)
    fake.stop()


def _connect(setup: Setup) -> list[str]:
    return ["--endpoint", setup.fake.url, "--namespace", "albums", "--policy", "phones"]


def test_init_upsert_query_push_pull_status(setup: Setup, tmp_path: Path) -> None:
    init = setup.ok("init", *_connect(setup))
    assert init["points"] == 300
    assert init["snapshot"] == setup.fake.snapshot_name
    lines = [json.dumps({"id": 5000 + i, "vector": [1.0] + [0.0] * (DIM - 1),
                         "payload": {"i": i}}) for i in range(3)]
    jsonl = tmp_path / "points.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    assert setup.ok("upsert", str(jsonl)) == {"upserted": 3}
    hits = setup.ok("query", "--vector", json.dumps([1.0] + [0.0] * (DIM - 1)), "--limit", "4")
    assert [hit["source"] for hit in hits[:3]] == ["local"] * 3
    assert {hit["id"] for hit in hits[:3]} == {5000, 5001, 5002}
    vector_file = tmp_path / "q.json"
    vector_file.write_text(json.dumps({"vector": [0.0] * (DIM - 1) + [1.0]}))
    assert len(setup.ok("query", "--vector-file", str(vector_file), "--limit", "2")) == 2
    status = setup.ok("status")
    assert status["queueDepth"] == 3
    assert status["shardVersion"] == setup.fake.snapshot_name
    assert status["policy"] == "phones"
    # endpoint, namespace and policy come from state.json now
    pushed = setup.ok("push", "--batch-size", "2")
    assert pushed["accepted"] == 3
    assert pushed["remaining"] == 0
    assert set(setup.fake.points) == {"5000", "5001", "5002"}
    assert setup.ok("pull")["changed"] is False
    setup.source.change(deletes=[1, 2, 3])
    setup.fake.publish()
    pulled = setup.ok("pull")
    assert pulled["changed"] is True
    assert pulled["points"] == 297
    status = setup.ok("status")
    assert status["queueDepth"] == 0
    assert status["deadLetters"] == 0
    assert status["shardVersion"] == setup.fake.snapshot_name


def test_the_token_never_shows(setup: Setup) -> None:
    secret = "tok-" + "x" * 30
    for how in (["--token", secret], []):
        result = setup.run("init", *_connect(setup), *how, connect=False,
                           env={"ALBUM_EDGE_TOKEN": secret})
        assert result.returncode == 1
        assert "401" in result.stderr
        assert "***" in result.stderr  # the fake echoes the token; the client redacts it
        assert secret not in result.stderr + result.stdout


def test_unreachable_endpoint_exits_3_and_keeps_the_points(setup: Setup,
                                                          tmp_path: Path) -> None:
    setup.ok("init", *_connect(setup))
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"id": 1, "vector": [0.5] * DIM}) + "\n")
    setup.ok("upsert", str(jsonl))
    setup.fake.stop()
    result = setup.run("push", "--max-retries", "0")
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout)["remaining"] == 1
    result = setup.run("pull")
    assert result.returncode == 3
    assert "try again later" in result.stderr
    assert setup.ok("status")["lastPullError"]


def test_a_bad_line_stops_upsert_and_says_where(setup: Setup, tmp_path: Path) -> None:
    setup.ok("init", *_connect(setup))
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"id": 1, "vector": [0.5] * DIM}) + "\n"
                     + json.dumps({"id": 2, "vector": [0.5]}) + "\n")
    result = setup.run("upsert", str(jsonl), "--chunk", "1")
    assert result.returncode == 1
    assert "point 2" in result.stderr
    assert "1 points before it" in result.stderr
    jsonl.write_text("{broken\n")
    result = setup.run("upsert", str(jsonl))
    assert result.returncode == 1
    assert "line 1" in result.stderr


def test_commands_before_init_say_so(setup: Setup) -> None:
    result = setup.run("query", "--vector", "[1, 2]")
    assert result.returncode == 1
    assert "not initialised" in result.stderr
    result = setup.run("pull")
    assert result.returncode == 1
    assert "needs the endpoint" in result.stderr


def test_push_watch_stops_cleanly_on_sigterm(setup: Setup) -> None:
    process = subprocess.Popen(
        [ALBUM_EDGE, "push", "--watch", "--dir", str(setup.dir), *_connect(setup),
         "--token-file", str(setup.token_file), "--poll-interval", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (setup.dir / "queue.sqlite").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the queue opens after the signal handlers are in place
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert json.loads(out)["remaining"] == 0


def test_refused_points_exit_4_and_are_listed_with_their_reasons(setup: Setup,
                                                                tmp_path: Path) -> None:
    assert setup.ok("dead-letters") == []
    assert not (setup.dir / "queue.sqlite").exists()
    setup.ok("init", *_connect(setup))
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"id": 1, "vector": [0.5] * DIM}) + "\n")
    setup.ok("upsert", str(jsonl))
    # a row as an older album-edge with laxer rules left it: the endpoint refuses it
    with sqlite3.connect(setup.dir / "queue.sqlite") as db:
        db.execute("INSERT INTO queued (id, body, enqueued_at) VALUES (?, ?, 0)",
                   ("77", json.dumps({"id": 77, "vector": [0.5], "payload": {}})))
    result = setup.run("push")
    assert result.returncode == 4, result.stderr
    pushed = json.loads(result.stdout)
    assert (pushed["accepted"], pushed["rejected"], pushed["remaining"]) == (1, 1, 0)
    letters = setup.ok("dead-letters")
    assert [letter["id"] for letter in letters] == ["77"]
    assert "dimensions" in letters[0]["reason"]
    assert letters[0]["enqueuedAt"] == "1970-01-01T00:00:00+00:00"
    assert setup.ok("dead-letters", "--limit", "0") == []
    assert setup.run("push").returncode == 0  # nothing new was refused
