"""Buffers and arguments that must not cost the server its answers, over real stdio: LSP line
breaks (form feed, U+2028), a huge minified line, untitled buffers and notebook cells, wrong
command arguments, a question longer than the context, an unusable cache folder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from lsp_raw import RawClient


def _start(tmp_path: Path, options: dict[str, Any], folder: Path | None = None) -> RawClient:
    client = RawClient(tmp_path)
    client.send_initialize(options, folder)
    assert "result" in client.response_to(1)
    client.send({"method": "initialized", "params": {}})
    return client


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[RawClient]:
    """Completion on, the real default model loading in the background, no workspace folder."""
    client = _start(tmp_path, {"completion": {"enabled": True}})
    yield client
    if client.process.poll() is None:
        client.process.kill()


def _skipped_mid_line(client: RawClient, msg_id: Any) -> int:
    return int(client.status(msg_id)["engine"]["skipped_mid_line"])


def test_form_feed_and_line_separator_do_not_shift_positions_or_edits(
    server: RawClient, tmp_path: Path
) -> None:
    # LSP lines: 0 "p^Lq", 1 "r<U+2028>long…", 2 "x"; str.splitlines would see five.
    uri = (tmp_path / "old.py").as_uri()
    server.open(uri, "p\x0cq\nr\u2028long_right_side_text_here = 1\nx")
    # An automatic request mid-line is skipped (trigger.py): it shows where the cursor landed.
    server.inline_completion(10, uri, 2, 1, automatic=True)  # the end of "x"
    assert "result" in server.response_to(10, timeout=300)
    assert _skipped_mid_line(server, 11) == 0
    server.inline_completion(12, uri, 1, 1, automatic=True)  # after "r": text to its right
    assert "result" in server.response_to(12, timeout=300)
    assert _skipped_mid_line(server, 13) == 1

    # Incremental edits below the form feed and the separator land on LSP's lines.
    changes = [
        {"range": {"start": {"line": 2, "character": 1}, "end": {"line": 2, "character": 1}},
         "text": "yz"},
        {"range": {"start": {"line": 1, "character": 1}, "end": {"line": 1, "character": 31}},
         "text": ""},
    ]  # fmt: skip
    server.send(
        {
            "method": "textDocument/didChange",
            "params": {"textDocument": {"uri": uri, "version": 2}, "contentChanges": changes},
        }
    )
    server.inline_completion(14, uri, 1, 1, automatic=True)  # "r" is all that is left there
    assert "result" in server.response_to(14, timeout=300)
    server.inline_completion(15, uri, 2, 3, automatic=True)  # the end of "xyz"
    assert "result" in server.response_to(15, timeout=300)
    assert _skipped_mid_line(server, 16) == 1
    assert server.close() == 0


def _plain_error(response: dict[str, Any]) -> dict[str, Any]:
    """An InvalidParams error with a message a person can read, and no traceback or paths."""
    error = response["error"]
    assert error["code"] == -32602, error
    assert "Traceback" not in str(error) and ".py" not in str(error)
    assert "data" not in error or not error["data"]
    return error


def test_wrong_arguments_get_invalid_params_and_k_is_clamped(server: RawClient) -> None:
    search = "repotune.search"
    assert "query" in _plain_error(server.command(20, search, {"query": 5}))["message"]
    assert (
        "k must be"
        in _plain_error(server.command(21, search, {"query": "x", "k": "many"}))["message"]
    )
    assert (
        "question" in _plain_error(server.command(22, "repotune.ask", {"question": 42}))["message"]
    )
    assert "question" in _plain_error(server.command(23, "repotune.ask"))["message"]
    assert server.command(24, search, {"query": "x", "k": 10**30})["result"] == []
    bad_position = {"textDocument": {"uri": 42}, "position": "here"}
    _plain_error(server.request(25, "textDocument/inlineCompletion", bad_position))
    assert server.close() == 0


@pytest.mark.slow
def test_untitled_buffers_and_notebook_cells_complete_from_the_buffer(server: RawClient) -> None:
    server.wait_ready()
    code = "def add(a, b):\n    return "
    cell = "vscode-notebook-cell:/tmp/analysis.ipynb#W0sZmlsZQ%3D%3D"
    for msg_id, uri in ((30, "untitled:Untitled-1"), (31, cell)):
        server.open(uri, code)
        server.inline_completion(msg_id, uri, 1, 11)
        response = server.response_to(msg_id, timeout=300)
        assert "error" not in response, response
        assert isinstance(response["result"]["items"], list)
    server.inline_completion(32, "untitled:Never-Opened", 0, 0)
    assert server.response_to(32, timeout=300)["result"]["items"] == []
    assert server.close() == 0


@pytest.mark.slow
def test_a_question_longer_than_the_context_is_cut_and_answered(tmp_path: Path) -> None:
    # A small context window keeps the test short: the question is cut to what it leaves.
    # The folder's code is retrieved for it, so the model is asked (with nothing retrieved the
    # server answers that at once).
    repo = tmp_path / "helpers"
    repo.mkdir()
    (repo / "helpers.py").write_text("def helper_0(value):\n    return value + 0\n")
    options = {"model": {"context_length": 1024}, "index": {"dense": False}}
    server = _start(tmp_path, options, repo)
    try:
        deadline = time.monotonic() + 300
        status = server.wait_ready()  # idle: the model loaded, no folder indexing
        while not status["folders"]:  # the folder is added in the background
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
            status = server.wait_ready()
        pasted = "".join(f"def helper_{n}(value):\n    return value + {n}\n" for n in range(500))
        question = f"What do these functions have in common?\n{pasted}"  # ~9,000 tokens
        response = server.command(40, "repotune.ask", {"question": question})
        assert "error" not in response, response
        assert isinstance(response["result"]["answer"], str)
        assert response["result"]["citations"], response  # the model answered from the code
        assert server.close() == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()


@pytest.mark.slow
def test_a_huge_minified_line_costs_bounded_time_and_memory(
    server: RawClient, tmp_path: Path
) -> None:
    server.wait_ready()
    process = psutil.Process(server.process.pid)
    small = (tmp_path / "small.js").as_uri()
    server.open(small, "function add(a, b) {\n  return ", "javascript")
    server.inline_completion(50, small, 1, 9)
    assert "result" in server.response_to(50, timeout=300)  # warm: the model has run once
    rss_before = process.memory_info().rss

    line = "var a=1;" * (5 * 2**20 // 8)  # one 5 MiB line, like a minified bundle
    huge = (tmp_path / "bundle.min.js").as_uri()
    server.open(huge, line, "javascript")
    started = time.monotonic()
    server.inline_completion(51, huge, 0, len(line))
    assert "result" in server.response_to(51, timeout=300)
    # Generous beside the 300 s the test waits: truncation tokenizes a window, not the line.
    assert time.monotonic() - started < 60

    server.inline_completion(52, huge, 0, len(line) - 8)
    server.send({"method": "$/cancelRequest", "params": {"id": 52}})
    cancelled = server.response_to(52, timeout=300)
    assert cancelled.get("error", {}).get("code") == -32800 or "result" in cancelled
    server.inline_completion(53, small, 1, 9)  # the generation worker is free again
    started = time.monotonic()
    assert "result" in server.response_to(53, timeout=300)
    assert time.monotonic() - started < 60

    server.send({"method": "textDocument/didClose", "params": {"textDocument": {"uri": huge}}})
    server.status(54)  # the close has been handled
    grown = process.memory_info().rss - rss_before
    assert grown < 40 * 2**20, f"RSS still {grown / 2**20:.0f} MiB above its level"
    assert server.close() == 0


def test_an_unusable_cache_folder_is_an_error_in_the_status_and_the_server_serves_on(
    tmp_path: Path,
) -> None:
    """REPOTUNE_CACHE_DIR naming a file: the model load said "unexpected error while loading
    (SettingsError ...)" and the command line printed a traceback (tests/cli)."""
    (tmp_path / "cache").write_text("not a folder")
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "app.py").write_text("def double(x):\n    return x * 2\n")
    client = RawClient(tmp_path, env={"REPOTUNE_CACHE_DIR": str(tmp_path / "cache")})
    try:
        client.send_initialize({}, folder)
        assert "result" in client.response_to(1)
        client.send({"method": "initialized", "params": {}})
        deadline = time.monotonic() + 60
        status = client.status("s0")
        while status["state"] != "error" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = client.status(f"s{time.monotonic()}")
        expected = (
            f"RepoTune's cache folder {tmp_path / 'cache'} (REPOTUNE_CACHE_DIR) cannot be used"
        )
        assert status["message"].startswith(f"generator: {expected}"), status["message"]
        assert any(expected in error for error in status["errors"])  # the folder's index too
        assert client.request(2, "workspace/executeCommand", {"command": "repotune.status"})
    finally:
        assert client.close() == 0
