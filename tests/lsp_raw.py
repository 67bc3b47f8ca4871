"""A raw LSP client over the real `python -m repotune serve`: bytes as sent, for the tests that
send what no well-behaved client library would (framing, batches, lifecycle)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def framed(body: bytes, header: str = "Content-Length", delta: int = 0) -> bytes:
    return f"{header}: {len(body) + delta}\r\n\r\n".encode() + body


class RawClient:
    """Just enough LSP framing to send what no well-behaved client library would."""

    def __init__(
        self, cwd: Path, env: dict[str, str] | None = None, stderr: Path | None = None
    ) -> None:
        """The server's stderr is dropped, or written to the file `stderr` names."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "repotune", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr.open("wb") if stderr else subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
        self.unrelated: list[Any] = []  # messages read while waiting for another

    def send_raw(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send_bytes(self, body: bytes) -> None:
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def send(self, message: dict[str, Any]) -> None:
        self.send_bytes(json.dumps({"jsonrpc": "2.0", **message}).encode())

    def read(self) -> Any:
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
            if (
                isinstance(message, dict)
                and message.get("id") == msg_id
                and "method" not in message
            ):
                return message
            self.unrelated.append(message)
        raise TimeoutError(f"no response to {msg_id}")

    def null_id_errors(self) -> list[dict[str, Any]]:
        """The error responses with id null read so far (parse errors), forgotten once read."""
        found = [
            m["error"]
            for m in self.unrelated
            if isinstance(m, dict) and "error" in m and m.get("id") is None
        ]
        self.unrelated = [
            m
            for m in self.unrelated
            if not (isinstance(m, dict) and "error" in m and m.get("id") is None)
        ]
        return found

    def status_request(self, msg_id: int) -> bytes:
        message = {
            "jsonrpc": "2.0",
            "id": msg_id,
            "method": "workspace/executeCommand",
            "params": {"command": "repotune.status", "arguments": []},
        }
        return json.dumps(message).encode()

    def send_initialize(self, options: dict[str, Any], folder: Path | None = None) -> None:
        """`initialize` (id 1) with these initializationOptions and no workspace, or `folder`."""
        params: dict[str, Any] = {
            "processId": None,
            "rootUri": folder.as_uri() if folder else None,
            "capabilities": {},
            "initializationOptions": options,
        }
        if folder is not None:
            params["workspaceFolders"] = [{"uri": folder.as_uri(), "name": folder.name}]
        self.send({"id": 1, "method": "initialize", "params": params})

    def status(self, msg_id: Any) -> dict[str, Any]:
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

    # ------------------------------------------------------------------ documents and requests

    def request(self, msg_id: Any, method: str, params: Any) -> dict[str, Any]:
        self.send({"id": msg_id, "method": method, "params": params})
        return self.response_to(msg_id, timeout=300)

    def command(self, msg_id: Any, name: str, *arguments: Any) -> dict[str, Any]:
        params = {"command": name, "arguments": list(arguments)}
        return self.request(msg_id, "workspace/executeCommand", params)

    def open(self, uri: str, text: str, language: str = "python") -> None:
        document = {"uri": uri, "languageId": language, "version": 1, "text": text}
        self.send({"method": "textDocument/didOpen", "params": {"textDocument": document}})

    def inline_completion(
        self, msg_id: Any, uri: str, line: int, character: int, automatic: bool = False
    ) -> None:
        """Send (not wait for) an inline completion request; triggerKind 2 is automatic."""
        params = {
            "textDocument": {"uri": uri},
            "position": {"line": line, "character": character},
            "context": {"triggerKind": 2 if automatic else 1},
        }
        self.send({"id": msg_id, "method": "textDocument/inlineCompletion", "params": params})

    def wait_ready(self, timeout: float = 300) -> dict[str, Any]:
        """Poll repotune.status until the model is loaded (state idle)."""
        deadline = time.monotonic() + timeout
        polls = 0
        while time.monotonic() < deadline:
            polls += 1
            status = self.status(f"ready-{polls}")
            assert status["state"] != "error", status
            if status["state"] == "idle":
                return status
            time.sleep(0.5)
        raise TimeoutError("the model did not load")
