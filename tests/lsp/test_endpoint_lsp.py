"""Remote generation over real stdio: the server completes through a real OpenAI-compatible
endpoint (llama-cpp-python's server with the default model), an editor's $/cancelRequest closes
the remote stream, and a repository's own file cannot redirect the endpoint."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_lsp
from endpoint_server import API_KEY, KEY_ENV, EndpointServer, start_endpoint
from lsp_client import execute, inline_params, open_document, start_session
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SOURCE = "def add(a: int, b: int) -> int:\n    return "
TABLE = "def table():\n" + "".join(f"    x{i} = {i}\n" for i in range(1, 41)) + "    \n"
ELSEWHERE = "http://198.51.100.7:9/v1"  # what the repository's own file asks for


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, generator_model) -> Iterator[EndpointServer]:
    server = start_endpoint(tmp_path_factory.mktemp("endpoint") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("remote") / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "math_utils.py").write_text(SOURCE)
    (root / "table.py").write_text(TABLE)
    (root / "repotune.toml").write_text(f'[model]\nendpoint = "{ELSEWHERE}"\n')
    return root


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "repotune", "serve"],
        server_env={**os.environ, KEY_ENV: API_KEY},  # the key lives in the environment only
    ),
)
async def client(
    lsp_client: LanguageClient,
    repo: Path,
    endpoint: EndpointServer,
    tmp_path_factory: pytest.TempPathFactory,
):
    options = {
        "model": {
            "endpoint": endpoint.url,
            "endpoint_key_env": KEY_ENV,
            "endpoint_timeout_ms": 60_000,
            "endpoint_fallback": False,
            "context_length": 1024,
        },
        "completion": {"prefix_tokens": 256, "max_tokens_line": 16, "max_tokens_block": 200},
        "index": {"dense": False, "index_dir": str(tmp_path_factory.mktemp("index"))},
    }
    await start_session(lsp_client, [repo], options)
    deadline = time.monotonic() + 120
    while (await execute(lsp_client, "repotune.status"))["state"] != "idle":
        assert time.monotonic() < deadline, "the server did not become idle"
        await asyncio.sleep(0.3)
    yield
    await lsp_client.shutdown_session()


async def test_inline_completion_through_the_endpoint(
    client: LanguageClient, repo: Path, endpoint: EndpointServer
) -> None:
    uri = open_document(client, repo / "math_utils.py")
    result = await client.text_document_inline_completion_async(
        inline_params(uri, 1, len("    return "))
    )
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert items and items[0].insert_text.strip(), await execute(client, "repotune.status")
    status = await execute(client, "repotune.status")
    remote = status["engine"]["endpoint"]
    assert status["engine"]["backend"] == "endpoint"
    assert remote["url"] == endpoint.url and remote["state"] == "ok", remote
    assert remote["requests"] >= 1 and remote["last_latency_ms"] > 0
    assert '"POST /v1/completions HTTP/1.1" 200' in endpoint.log_text()
    # The repository's own endpoint was refused (and said so); the editor's is used.
    folder = next(f for f in status["folders"] if f["root"] == str(repo.resolve()))
    assert "'model.endpoint' may not come" in folder["settings_error"]
    assert status["settings"]["model"]["endpoint"] == endpoint.url


async def test_cancel_request_closes_the_remote_stream(
    client: LanguageClient, repo: Path, endpoint: EndpointServer
) -> None:
    uri = open_document(client, repo / "table.py")
    posts = endpoint.log_text().count("POST /v1/completions")
    disconnects = endpoint.log_text().count("disconnected")
    msg_id = f"cancel-remote-{time.monotonic_ns()}"
    request = asyncio.ensure_future(
        client.protocol.send_request_async(
            "textDocument/inlineCompletion", inline_params(uri, 41, 4), msg_id
        )
    )
    deadline = time.monotonic() + 30
    while endpoint.log_text().count("POST /v1/completions") == posts:
        assert time.monotonic() < deadline, "the request never reached the endpoint"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert not request.done()  # the next lines of a 40-line table are still coming
    client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))
    started = time.monotonic()
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wait_for(request, timeout=10)
    assert time.monotonic() - started < 2
    deadline = time.monotonic() + 30
    while endpoint.log_text().count("disconnected") == disconnects:
        assert time.monotonic() < deadline, "the endpoint kept generating"
        await asyncio.sleep(0.1)


async def test_a_killed_endpoint_is_reported_in_the_status(
    client: LanguageClient, repo: Path, endpoint: EndpointServer
) -> None:
    """Runs last: the endpoint dies; the server stays up, answers with nothing (no fallback
    here) and its status message says why."""
    endpoint.stop()
    uri = open_document(client, repo / "math_utils.py")
    result = await client.text_document_inline_completion_async(
        inline_params(uri, 1, len("    return"))  # a new place: no cached result
    )
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert not items
    status = await execute(client, "repotune.status")
    assert status["state"] == "idle", status  # not an error: the editor keeps working
    assert status["message"].startswith(f"endpoint {endpoint.url} failed: cannot connect")
    assert "endpoint_fallback is off" in status["message"]
    assert status["engine"]["endpoint"]["state"] == "failed"
