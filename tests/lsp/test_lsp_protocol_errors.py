"""Malformed JSON-RPC traffic, spoken byte by byte: the server answers with errors and lives on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsp_raw import RawClient, framed


@pytest.fixture()
def raw(tmp_path: Path) -> Iterator[RawClient]:
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


def test_bad_framing_is_answered_and_the_server_resynchronizes(raw: RawClient) -> None:
    raw.send_raw(framed(raw.status_request(10), header="content-length"))
    assert "result" in raw.response_to(10)  # header names are case-insensitive

    raw.send_raw(b'Content-Length: ten\r\n\r\n{"x": 1}' + framed(raw.status_request(11)))
    assert "result" in raw.response_to(11)
    [error] = raw.null_id_errors()
    assert error["code"] == -32700 and "not a number" in error["message"]

    raw.send_raw(framed(raw.status_request(12), delta=-3) + framed(raw.status_request(13)))
    assert "result" in raw.response_to(13)  # a short length: 12 is lost, the stream is not
    [error] = raw.null_id_errors()
    assert error["code"] == -32700

    raw.send_raw(framed(raw.status_request(14), delta=4) + framed(raw.status_request(15)))
    assert "result" in raw.response_to(14)  # a long length ends at the next header
    assert "result" in raw.response_to(15)

    raw.send_raw(b"Content-Length: 99999999999999\r\n\r\n" + framed(raw.status_request(16)))
    assert "result" in raw.response_to(16)  # no MemoryError, no waiting for 100 TB
    [error] = raw.null_id_errors()
    assert "larger than the limit" in error["message"]

    raw.send_bytes(b'{"jsonrpc": "2.0", "id": 17, "method": ')
    raw.send_raw(framed(raw.status_request(18)))
    assert "result" in raw.response_to(18)
    assert [e["code"] for e in raw.null_id_errors()] == [-32700]
    assert raw.process.poll() is None
    assert raw.close() == 0


def test_an_oversized_message_is_refused_and_skipped(tmp_path: Path) -> None:
    client = RawClient(tmp_path, env={"REPOTUNE_MAX_MESSAGE_BYTES": "1000000"})
    try:
        client.send_initialize({"completion": {"enabled": False}})
        client.response_to(1)
        text = "x = 1\n" * 400_000  # 2.4 MB, over this server's 1 MB limit
        client.send(
            {
                "id": 2,
                "method": "textDocument/hover",
                "params": {"textDocument": {"uri": text}, "position": {"line": 0, "character": 0}},
            }
        )
        client.send_raw(framed(client.status_request(3)))
        assert "result" in client.response_to(3)
        [error] = client.null_id_errors()
        assert "larger than the limit of 1000000" in error["message"]
        assert client.close() == 0
    finally:
        if client.process.poll() is None:
            client.process.kill()


def test_batches_and_other_jsonrpc_versions_get_invalid_request(raw: RawClient) -> None:
    batch = [json.loads(raw.status_request(20)), {"jsonrpc": "2.0", "method": "initialized"}]
    raw.send_bytes(json.dumps(batch).encode())
    answer = raw.read()
    assert isinstance(answer, list)
    assert [(a["id"], a["error"]["code"]) for a in answer] == [(20, -32600)]

    raw.send({"id": 21, "method": "workspace/executeCommand", "jsonrpc": "1.0"})
    assert raw.response_to(21)["error"]["code"] == -32600
    raw.send_bytes(b"[]")
    raw.send_raw(framed(raw.status_request(22)))
    assert "result" in raw.response_to(22)
    assert [e["code"] for e in raw.null_id_errors()] == [-32600]


def test_lifecycle_errors_and_exit_codes(tmp_path: Path) -> None:
    early = RawClient(tmp_path)
    try:
        early.send_raw(framed(early.status_request(1)))
        assert early.response_to(1)["error"]["code"] == -32002  # ServerNotInitialized
        early.send_initialize({"completion": {"enabled": False}})
        assert "result" in early.response_to(1)
        early.send({"id": "shutdown", "method": "shutdown"})
        assert "error" not in early.response_to("shutdown")
        early.send_raw(framed(early.status_request(3)))
        assert early.response_to(3)["error"]["code"] == -32600  # after shutdown
        early.send({"method": "exit"})
        assert early.process.wait(timeout=30) == 0
    finally:
        if early.process.poll() is None:
            early.process.kill()

    abrupt = RawClient(tmp_path)
    try:
        abrupt.send_initialize({"completion": {"enabled": False}})
        abrupt.response_to(1)
        abrupt.send({"method": "initialized", "params": {}})
        abrupt.send({"method": "exit"})
        assert abrupt.process.wait(timeout=30) == 1  # exit without shutdown
    finally:
        if abrupt.process.poll() is None:
            abrupt.process.kill()
