"""`repotune bench lsp`: the saved report, the server's log, and the server's reason when it
cannot serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_a_generator_that_fails_to_load_ends_the_bench_with_its_reason(tmp_path: Path) -> None:
    """It hung: the bench gave up on the server's error but waited for a server it never shut
    down to exit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "geometry.py").write_text(
        "import math\n\n\ndef circle_area(radius: float) -> float:\n"
        "    return math.pi * radius * radius\n"
    )
    (repo / "broken.gguf").write_bytes(b"not a model")
    (repo / "repotune.toml").write_text('[model]\ngenerator = "broken.gguf"\n')
    run = subprocess.run(
        [sys.executable, "-m", "repotune", "bench", "lsp", str(repo), "--samples", "2"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 1, run
    assert "the server reported an error" in run.stderr and "not a GGUF file" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_bench_lsp_save_writes_the_printed_report(tmp_path: Path) -> None:
    """`repotune bench lsp --save DIR`: the file holds the very JSON the command printed.

    With the server at debug level its log (llama.cpp's loading: thousands of lines) reaches the
    bench's stderr; pygls pipes the server's stderr without reading it, so the server blocked
    once the pipe was full and the bench never ended."""
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
        env={**os.environ, "REPOTUNE_LOG": "debug"},
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
    assert "repotune.llama" in run.stderr  # the server's log, relayed
