"""`repotune doctor` and the CLI surface, run as a user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
