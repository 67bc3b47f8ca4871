"""Issue 17 over real stdio: an index folder that cannot be opened (the editor's index_dir lies
under a file) leaves nothing stuck: the model loads, completions answer from the buffer, and
the status lists the folder's error."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_client import SERVE, execute, start_session
from lsprotocol import types
from pytest_lsp import LanguageClient
from repotune.server.models import ResolvedModel

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SOURCE = "def add(a: int, b: int) -> int:\n    return "


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unavailable") / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "math_utils.py").write_text(SOURCE + "a + b\n")
    return root


@pytest_lsp.fixture(
    scope="module",
    config=SERVE,
)
async def client(
    lsp_client: LanguageClient,
    repo: Path,
    tmp_path_factory: pytest.TempPathFactory,
    generator_model: ResolvedModel,  # provisioned before the server looks for "default"
):
    a_file = tmp_path_factory.mktemp("blocker") / "a-file"
    a_file.write_text("precious")
    lsp_client.blocker = a_file  # type: ignore[attr-defined]
    options = {
        "index": {"index_dir": str(a_file / "index"), "dense": False},
    }
    await start_session(lsp_client, [repo], options)
    yield
    await lsp_client.shutdown_session()


async def test_unopenable_index_is_reported_and_the_model_still_serves(
    client: LanguageClient, repo: Path
) -> None:
    deadline = time.monotonic() + 480
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await execute(client, "repotune.status")
        if status["state"] == "idle":
            break
        await asyncio.sleep(0.5)
    assert status["state"] == "idle", status  # not "starting" forever
    assert any("cannot create the index folder" in e for e in status["errors"])
    folder = next(f for f in status["folders"] if f["root"] == str(repo.resolve()))
    assert folder["phase"] == "error" and "index" in folder["error"]
    assert client.blocker.read_text() == "precious"  # type: ignore[attr-defined]
    uri = (repo / "scratch.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=SOURCE
            )
        )
    )
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=1, character=len("    return ")),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
    )
    assert result is not None
    items = result.items if isinstance(result, types.InlineCompletionList) else result
    assert items and items[0].insert_text.strip()
