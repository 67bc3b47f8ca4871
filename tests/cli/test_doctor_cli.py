"""`repotune doctor` and the CLI surface, run as a user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from repotune.server.completion.quick_start import SLOW_NEW_PLACE_S

REPOTUNE = [sys.executable, "-m", "repotune"]


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REPOTUNE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=os.environ
    )


def test_doctor_reports_models_checksums_and_locations(tmp_path: Path) -> None:
    result = run(["doctor", "--json", "--workspace", str(tmp_path)])
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    assert report["problems"] == []
    assert report["packages"]["llama-cpp-python"]
    assert isinstance(report["gpu_offload"], bool)
    for role in ("generator", "embedder"):
        info = report["models"][role]
        assert Path(info["path"]).is_file()
        assert len(info["sha256"]) == 64
    assert report["models"]["generator"]["sha256"].startswith("a5fd3b62")
    assert report["cache_dir"] and report["index_dir"]


def test_doctor_names_a_missing_re2(tmp_path: Path) -> None:
    """The ignore rules are matched by google-re2; an install without it is a named problem."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "re2.py").write_text("raise ImportError('blocked for this test')\n")
    result = subprocess.run(
        [*REPOTUNE, "doctor", "--json", "--workspace", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(blocker)},
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert any("google-re2" in problem for problem in report["problems"]), report["problems"]
    assert report["packages"]["google-re2"] and report["packages"]["pathspec"]


def test_doctor_says_what_the_build_offloads_and_how_to_get_a_gpu_build(tmp_path: Path) -> None:
    result = run(["doctor", "--json", "--workspace", str(tmp_path)])
    assert result.returncode == 0, result.stderr + result.stdout
    gpu = json.loads(result.stdout)["gpu"]
    assert gpu["gpu_layers_setting"] == "auto"
    assert "CPU" in gpu["backends"]
    assert any(device["type"] == "cpu" for device in gpu["devices"])
    assert gpu["layers"]["generator"]["total"] == 19  # Gemma 3 270M: 18 blocks + output
    assert gpu["layers"]["embedder"]["total"] == 7  # MiniLM-L6: 6 blocks + output
    human = run(["doctor", "--workspace", str(tmp_path)])
    text = human.stdout
    assert "llama_" not in human.stderr, human.stderr  # no llama.cpp log lines in the report
    if gpu["offload"]:
        assert gpu["layers"]["generator"]["offloaded"] == 19 and "install" not in gpu
        return
    # The CPU-only build of this machine: nothing offloaded, and the exact rebuild commands.
    assert gpu["layers"]["generator"]["offloaded"] == 0
    assert gpu["backends"] == ["CPU"]
    hint = gpu["install"]
    assert hint["make"].startswith(f"make install GPU={hint['backend']}")
    assert hint["pip"].startswith('CMAKE_ARGS="-DGGML_')
    assert "--no-binary llama-cpp-python --force-reinstall" in hint["pip"]
    assert hint["pip"].endswith("llama-cpp-python==0.3.36")
    assert "gpu offload no (CPU only)" in text
    assert "generator  0/19 layers offloaded (model.gpu_layers = auto)" in text
    assert hint["make"] in text and hint["pip"] in text


def test_doctor_speed_times_the_real_generator_on_a_new_place_prompt(tmp_path: Path) -> None:
    (tmp_path / "repotune.toml").write_text("[completion]\ncontext_tokens = 128\n")
    result = run(["doctor", "--speed", "--json", "--workspace", str(tmp_path)])
    assert result.returncode == 0, result.stderr + result.stdout
    speed = json.loads(result.stdout)["speed"]
    # The workspace's budget: 128 context + 512 prefix + 64 suffix tokens.
    assert speed["prompt_tokens"] == 128 + 512 + 64
    assert speed["prompt_seconds"] > 0 and speed["prompt_tokens_per_s"] > 0
    assert speed["decode_tokens_per_s"] > 0
    assert speed["adapter"].endswith("default-adapter.gguf")  # timed as served
    assert speed["slow_new_place"] == (speed["prompt_seconds"] > SLOW_NEW_PLACE_S)
    # The engine's own "auto" rule: quick start on where the budget's prompt is slow.
    assert speed["quick_start"] == "auto"
    # (the prompt here is the whole budget, so the rule reads its time).
    assert speed["quick_start_on"] == speed["slow_new_place"]
    text = run(["doctor", "--speed", "--workspace", str(tmp_path)]).stdout
    assert "a whole new-place prompt (704 tokens)" in text
    # Without --speed the model is not loaded.
    assert "speed" not in json.loads(run(["doctor", "--json"], cwd=tmp_path).stdout)


def test_speed_advice_names_quick_start_only_where_it_would_help() -> None:
    from repotune.server.cli.speed import format_speed

    slow = {
        "prompt_tokens_per_s": 300,
        "decode_tokens_per_s": 40.0,
        "threads": 2,
        "gpu_layers": 0,
        "prompt_tokens": 832,
        "prompt_seconds": 2.77,
        "slow_new_place": True,
        "quick_start": False,
        "quick_start_on": False,
    }
    assert 'completion.quick_start = "auto"' in "\n".join(format_speed(slow))
    # Where quick start is on (set, or "auto" on this machine) the report says it is.
    for mode in ("auto", True):
        text = "\n".join(format_speed({**slow, "quick_start": mode, "quick_start_on": True}))
        assert "quick start answers first" in text and "set completion" not in text
    fast = {**slow, "slow_new_place": False, "prompt_seconds": 1.2}
    assert "quick" not in "\n".join(format_speed(fast))


def test_doctor_human_output_and_bad_settings(tmp_path: Path) -> None:
    (tmp_path / "repotune.toml").write_text("[model]\ngenerater = 'x'\n")
    result = run(["doctor", "--workspace", str(tmp_path)])
    assert result.returncode == 1
    assert "unknown setting 'model.generater'" in result.stdout
    assert "repotune.toml" in result.stdout


def test_help_lists_every_subcommand() -> None:
    result = run(["--help"])
    assert result.returncode == 0
    for command in (
        "doctor",
        "serve",
        "index",
        "search",
        "complete",
        "ask",
        "bench",
        "train",
        "eval",
    ):
        assert command in result.stdout


def test_every_commands_help_is_plain_text() -> None:
    """One look for all of `repotune`: eval's help was drawn in rich boxes unlike the rest."""
    for command in (
        ["train"],
        ["train", "finetune"],
        ["eval"],
        ["eval", "humaneval"],
        ["eval", "compare"],
        ["bench", "lsp"],
    ):
        result = run([*command, "--help"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Usage: ") and "╭" not in result.stdout, command


def test_server_package_never_imports_torch() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import repotune.server as s\n"
        "for m in pkgutil.iter_modules(s.__path__):\n"
        "    importlib.import_module('repotune.server.' + m.name)\n"
        "bad = [n for n in ('torch', 'transformers', 'peft') if n in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
