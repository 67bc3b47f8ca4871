"""`repotune bench complete` end to end on a small real repository with the real default model:
the four arms (before / ahead / stable / quick) replayed, keystroke figures per kind, prefill work
accounted."""

from __future__ import annotations

import json.decoder as json_decoder
import json.encoder as json_encoder
import json.scanner as json_scanner
import shutil
import subprocess
from pathlib import Path

import pytest
from repotune.server.bench.complete import run_bench_complete
from repotune.server.config import Settings

pytestmark = pytest.mark.slow


def test_bench_complete_replays_the_four_arms(
    tmp_path: Path, generator_model, embedder_model
) -> None:
    repo = tmp_path / "jsonlib"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for module in (json_decoder, json_encoder, json_scanner):
        shutil.copy(str(module.__file__), repo / Path(str(module.__file__)).name)
    settings = Settings.model_validate(
        {
            "model": {
                "generator": str(generator_model.path),
                "embedder": str(embedder_model.path),
                "context_length": 1024,
            },
            "index": {"index_dir": str(tmp_path / "index")},
            "completion": {
                "context_tokens": 64,
                "prefix_tokens": 192,
                "suffix_tokens": 48,
                "max_tokens_line": 12,
                "max_tokens_block": 24,
                # Used by the quick arm only (it turns quick_start on).
                "quick_prefix_tokens": 64,
                "quick_suffix_tokens": 16,
                "quick_start_min_tokens": 32,
            },
        }
    )
    report = run_bench_complete(
        repo, settings, samples=10, compare_prompt_lookup=False, dwell_ms=200
    )
    editor = report["editor"]
    for arm in ("before", "ahead", "stable", "quick"):
        for kind in ("cold", "warm", "next_line"):
            figures = editor[arm][kind]
            assert figures["requests"] >= 2, (arm, kind, figures)
            assert figures["p50_ms"] >= editor["wait_ms"]  # the client's wait counts
            exact = figures["line_exact"]
            assert exact is None if kind == "next_line" else 0.0 <= exact <= 1.0
    # VS Code's own debounce is part of the wait, whatever the extension adds.
    assert editor["wait_ms"] == editor["editor_debounce_ms"] + settings.completion.debounce_ms
    assert editor["editor_debounce_ms"] == 50
    assert editor["before"]["cold"]["requests"] == editor["ahead"]["cold"]["requests"]
    # Only the quick arm answers from the short prompt, and it does at new places.
    assert editor["before"]["cold"]["quick"] == editor["ahead"]["cold"]["quick"] == 0
    assert editor["quick"]["cold"]["quick"] >= 1
    assert editor["quick_prefill"]["quick_answers"] >= 1
    # The stable arm kept the block at new places (moved to from the previous session's).
    stable = editor["stable_prefill"]
    assert stable["kept_blocks"] >= 1 and stable["refreshes"] >= 1, stable
    assert editor["prefill"]["kept_blocks"] == 0  # the ahead arm: stable_context off
    assert "new_place_from" in editor
    prefill = editor["prefill"]
    assert prefill["prefills"] > 0 and prefill["prefill_tokens"] > 0
    assert 0 <= prefill["prefill_used_tokens"] <= prefill["prefill_tokens"]
    assert prefill["wasted_tokens"] == prefill["prefill_tokens"] - prefill["prefill_used_tokens"]
    assert editor["first_line"]["same_first_line"] <= editor["first_line"]["blocks"]
    # The request-level figures of earlier runs are still there, from the "before" arm.
    assert report["cold"]["requests"] == editor["before"]["cold"]["requests"]
    # The host's speed, by which runs on different hosts are compared.
    speed = report["host_speed"]
    assert speed["prefill_tokens_per_s"] > 0 and speed["decode_tokens_per_s"] > 0
    assert speed["prefill_tokens_per_s"] == report["cold"]["prefill_tokens_per_s"]
    warm = report["warm"]
    # Typing on is answered by typing through a suggestion (cache) or by the model reusing its
    # KV cache; with token healing the suggestions often go on as typed, so all may be hits.
    assert warm["model_served"] + warm["cache_hits"] == warm["requests"]
    if warm["model_served"]:
        assert warm["kv_reuse_ratio"] > 0.5
