"""How much RepoTune logs: `--log-level` / REPOTUNE_LOG, on the command line and in the real
server, with the real model load (llama.cpp's messages are debug records)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.lsp_raw import RawClient

LLAMA_RECORD = "repotune.llama DEBUG"


def _complete(repo: Path, *options: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "repotune", *options, "complete", "app.py:2:5", "--no-context"],
        cwd=repo,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 3), result.stderr  # 3: nothing left to suggest
    return result.stderr


def test_debug_shows_llama_cpp_loading_and_the_default_shows_none(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def double(x):\n    return x * 2\n")
    assert LLAMA_RECORD not in _complete(tmp_path)
    debug = _complete(tmp_path, "--log-level", "debug")
    assert LLAMA_RECORD in debug and "llama_model_loader" in debug
    info = _complete(tmp_path, env={"REPOTUNE_LOG": "INFO"})  # the variable, any case
    assert "repotune.server.completion.model_slot INFO generator loaded" in info
    assert LLAMA_RECORD not in info


def test_an_unknown_level_is_refused_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "repotune", "doctor"],
        cwd=tmp_path,
        env={**os.environ, "REPOTUNE_LOG": "loud"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "REPOTUNE_LOG" in result.stderr and "'loud'" in result.stderr
    assert "debug" in result.stderr  # the accepted levels are listed


def test_the_server_logs_llama_cpp_loading_at_debug(tmp_path: Path) -> None:
    stderr = tmp_path / "server.err"
    client = RawClient(tmp_path, env={"REPOTUNE_LOG": "debug"}, stderr=stderr)
    try:
        client.send_initialize({})
        client.response_to(1)
        client.send({"method": "initialized", "params": {}})
        client.wait_ready()
    finally:
        assert client.close() == 0
    log = stderr.read_text()
    assert LLAMA_RECORD in log and "generator loaded" in log
    assert "pygls" not in log  # the libraries under RepoTune stay at warnings
