"""Benchmark results stored with the command, the commit, the machine and the time."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

from repotune.server.bench.record import SOURCE_ROOT, save_result


def test_saved_result_names_command_commit_machine_and_time(tmp_path: Path) -> None:
    result = {"benchmark": "index", "query_ms": {"p50": 16.7}}
    argv = ["bench", "index", "--corpus", "wandb==0.19.11", "--save", str(tmp_path)]
    first = save_result("index", result, tmp_path, argv)
    second = save_result("index", result, tmp_path, argv)
    assert first != second and first.parent == second.parent == tmp_path  # never overwritten
    assert first.name.startswith("index-") and first.suffix == ".json"
    stored = json.loads(first.read_text())
    assert stored["benchmark"] == "index"
    assert stored["command"] == f"repotune bench index --corpus wandb==0.19.11 --save {tmp_path}"
    head = subprocess.run(
        ["git", "-C", str(SOURCE_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert stored["commit"]["sha"] == head and isinstance(stored["commit"]["dirty"], bool)
    assert stored["machine"]["physical_cores"] >= 1 and stored["machine"]["summary"]
    assert datetime.fromisoformat(stored["timestamp"]).tzinfo is not None
    assert stored["result"] == result
