"""Malformed JSON-RPC traffic, spoken byte by byte: the server answers with errors and lives on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest


class RawClient:
    """Just enough LSP framing to send what no well-behaved client library would."""

    def __init__(self, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "repotune", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
        )

    def send_bytes(self, body: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.send_bytes(json.dumps({"jsonrpc": "2.0", **message}).encode())

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        length = 0
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise EOFError("server closed its output")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(self.process.stdout.read(length))

    def response_to(self, msg_id: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.read()
            if message.get("id") == msg_id and "method" not in message:
                return message
        raise TimeoutError(f"no response to {msg_id}")

    def send_initialize(self, options: dict[str, Any]) -> None:
        """`initialize` (id 1) with no workspace and these initializationOptions."""
        self.send(
            {
                "id": 1,
                "method": "initialize",
                "params": {
                    "processId": None,
                    "rootUri": None,
                    "capabilities": {},
                    "initializationOptions": options,
                },
            }
        )

    def status(self, msg_id: int) -> dict[str, Any]:
        self.send(
            {
                "id": msg_id,
                "method": "workspace/executeCommand",
                "params": {"command": "repotune.status", "arguments": []},
            }
        )
        return self.response_to(msg_id)["result"]

    def close(self) -> int:
        self.send({"id": "shutdown", "method": "shutdown"})
        self.response_to("shutdown")
        self.send({"method": "exit"})
        return self.process.wait(timeout=30)


@pytest.fixture()
def raw(tmp_path: Path) -> RawClient:
    client = RawClient(tmp_path)
    client.send_initialize({"completion": {"enabled": False}})
    assert "result" in client.response_to(1)
    client.send({"method": "initialized", "params": {}})
    yield client
    if client.process.poll() is None:
        client.process.kill()


def test_malformed_params_unknown_methods_and_bad_json(raw: RawClient) -> None:
    raw.send(
        {
            "id": 2,
            "method": "textDocument/inlineCompletion",
            "params": {"textDocument": {"uri": 42}, "position": "here"},
        }
    )
    error = raw.response_to(2)["error"]
    assert error["code"] in (-32602, -32603)  # invalid params (or internal error)
    raw.send({"id": 3, "method": "repotune/noSuchMethod", "params": {}})
    assert raw.response_to(3)["error"]["code"] == -32601
    raw.send_bytes(b"{this is not json")
    status = raw.status(4)
    assert status["state"] in ("starting", "loading", "idle", "indexing")
    assert raw.close() == 0  # shutdown then exit: a clean exit code


def test_invalid_initialization_option_is_shown_and_defaults_kept(tmp_path: Path) -> None:
    client = RawClient(tmp_path)
    try:
        client.send_initialize({"completion": {"max_tokens_line": "many"}})
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        got_result = False
        while time.monotonic() < deadline and not (got_result and messages):
            message = client.read()
            if message.get("method") == "window/showMessage":
                messages.append(message["params"])
            if message.get("id") == 1:
                got_result = "result" in message
        assert got_result
        assert any("completion.max_tokens_line" in m["message"] for m in messages), messages
        client.send({"method": "initialized", "params": {}})
        status = client.status(2)
        assert status["settings"]["completion"]["max_tokens_line"] == 48  # the default
        assert client.close() == 0
    finally:
        if client.process.poll() is None:
            client.process.kill()
