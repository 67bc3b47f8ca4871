"""`repotune bench decode` through the command line with the real default model: the bare base
and the shipped adapter measured on the same prompts, and the result stored with its command."""

from __future__ import annotations

import json
import json.decoder as json_decoder
import json.encoder as json_encoder
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_decode_compares_the_base_and_the_default_adapter(
    tmp_path: Path, generator_model
) -> None:
    repo = tmp_path / "jsonlib"
    repo.mkdir()
    for module in (json_decoder, json_encoder):
        shutil.copy(str(module.__file__), repo / Path(str(module.__file__)).name)
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "repotune", "bench", "decode", str(repo),
         "--prompts", "2", "--prompt-tokens", "96", "--new-tokens", "6", "--save", str(results)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert set(report["adapters"]) == {"none", "default"}
    assert report["adapters"]["none"]["adapter"] is None
    assert report["adapters"]["default"]["adapter"].endswith("default-adapter.gguf")
    for figures in report["adapters"].values():
        for speed in ("prompt_tokens_per_s", "decode_tokens_per_s"):
            assert figures[speed]["n"] == 2 and figures[speed]["p50"] > 0
    assert report["model_check_ms"]["n"] == 5 and report["model_check_ms"]["p50"] > 0
    (saved,) = results.glob("decode-*.json")
    stored = json.loads(saved.read_text(encoding="utf-8"))
    assert "bench decode" in stored["command"] and stored["result"] == report


def test_bench_decode_names_a_repository_without_long_enough_files(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text("x = 1\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "repotune", "bench", "decode", str(tmp_path), "--prompts", "1"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no Python file" in done.stderr and "1000 tokens" in done.stderr
