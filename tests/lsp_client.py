"""Helpers for tests that drive the real server through pytest-lsp's client."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

# The server as editors start it, for `@pytest_lsp.fixture(config=SERVE)`.
SERVE = ClientServerConfig(server_command=[sys.executable, "-m", "repotune", "serve"])


def record_statuses(client: LanguageClient) -> list[Any]:
    """The repotune/status notifications the server pushes, in arrival order (kept growing)."""
    statuses: list[Any] = []
    client.feature("repotune/status")(lambda params: statuses.append(params))
    return statuses


async def execute(client: LanguageClient, command: str, *arguments: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command, arguments=list(arguments))
    )


def open_document(client: LanguageClient, path: Path) -> str:
    """Open a Python file from disk in the server; its URI."""
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=path.read_text()
            )
        )
    )
    return uri


def inline_params(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    """An explicitly invoked inline completion request at (line, character)."""
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )
