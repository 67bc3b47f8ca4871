"""Benchmark results stored with the command, the commit, the machine and the time."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
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


@pytest.mark.slow
def test_bench_lsp_save_writes_the_printed_report(tmp_path: Path) -> None:
    """`repotune bench lsp --save DIR`: the file holds the very JSON the command printed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "geometry.py").write_text(
        "import math\n\n\ndef circle_area(radius: float) -> float:\n"
        "    return math.pi * radius * radius\n\n\n"
        "def ring_area(outer: float, inner: float) -> float:\n"
        "    return circle_area(outer) - circle_area(inner)\n"
    )
    results = tmp_path / "results"
    command = ["bench", "lsp", str(repo), "--samples", "2", "--save", str(results)]
    run = subprocess.run(
        [sys.executable, "-m", "repotune", *command],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    files = sorted(results.glob("lsp-*.json"))
    assert len(files) == 1, run.stderr
    stored = json.loads(files[0].read_text())
    assert stored["result"] == json.loads(run.stdout)
    assert (
        stored["command"].startswith("repotune bench lsp ") and "--samples 2" in stored["command"]
    )
    assert f"saved {files[0]}" in run.stderr
