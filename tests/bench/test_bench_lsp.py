"""`repotune bench lsp` ends with the server's reason when the server cannot serve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
