"""`repotune serve` with the transport flags LSP clients append (vscode-languageclient: --stdio).

The server is a real subprocess; the accepted flags are proven by a real initialize/shutdown/exit
exchange over stdio, the refused ones by their exit status and one-line message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 120  # imports and the first index of a tiny workspace, on a busy machine


def _frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def _read_message(stream: Any) -> dict[str, Any]:
    length = None
    while True:
        line = stream.readline()
        if not line:
            raise EOFError("the server closed stdout")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    assert length is not None, "no Content-Length header"
    return json.loads(stream.read(length))


def _read_response(stream: Any, request_id: int) -> dict[str, Any]:
    while True:
        message = _read_message(stream)
        if message.get("id") == request_id and "method" not in message:
            return message


def _workspace(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hello.py").write_text("def hello() -> str:\n    return 'hi'\n")
    (repo / "repotune.toml").write_text(f'[index]\nindex_dir = "{tmp_path / "index"}"\n')
    return repo


@pytest.mark.parametrize(
    "flags",
    [["--stdio"], ["--stdio", f"--clientProcessId={os.getpid()}"], ["--clientProcessId", "1"]],
    ids=["stdio", "stdio+clientProcessId", "clientProcessId"],
)
def test_serve_accepts_the_stdio_flags_clients_append(tmp_path: Path, flags: list[str]) -> None:
    repo = _workspace(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "repotune", "serve", *flags],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        root = repo.as_uri()
        process.stdin.write(
            _frame(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "processId": os.getpid(),
                        "rootUri": root,
                        "workspaceFolders": [{"uri": root, "name": "repo"}],
                        "capabilities": {},
                    },
                }
            )
        )
        process.stdin.flush()
        reply = _read_response(process.stdout, 1)
        assert "inlineCompletionProvider" in reply["result"]["capabilities"]
        process.stdin.write(_frame({"jsonrpc": "2.0", "id": 2, "method": "shutdown"}))
        process.stdin.write(_frame({"jsonrpc": "2.0", "method": "exit"}))
        process.stdin.flush()
        assert _read_response(process.stdout, 2).get("error") is None
        process.stdin.close()
        assert process.wait(timeout=START_TIMEOUT_S) == 0
    except (EOFError, AssertionError):
        process.kill()
        stderr = process.communicate(timeout=30)[1].decode(errors="replace")
        pytest.fail(f"serve {' '.join(flags)} did not serve; stderr:\n{stderr}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--socket=5007"], "--socket"),
        (["--port", "5007"], "--port"),
        (["--pipe=/tmp/repotune-lsp.sock"], "--pipe"),
        (["--node-ipc"], "--node-ipc"),
        (["--stdio", "--socket=5007"], "--socket"),
    ],
)
def test_serve_refuses_other_transports_with_one_clear_line(
    tmp_path: Path, flags: list[str], named: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "repotune", "serve", *flags],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0] and "stdio" in lines[0]
    assert "Usage" not in result.stderr and result.stdout == ""


def test_serve_refuses_a_client_process_id_that_is_not_a_number(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "repotune", "serve", "--clientProcessId=abc"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "repotune: --clientProcessId must be a process id, not 'abc'"
    ]
