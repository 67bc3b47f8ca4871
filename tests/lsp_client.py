"""Helpers for tests that drive the real server through pytest-lsp's client."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

# The server as editors start it, for `@pytest_lsp.fixture(config=SERVE)`.
SERVE = ClientServerConfig(server_command=[sys.executable, "-m", "repotune", "serve"])


def serve_in(cache: Path) -> ClientServerConfig:
    """The server as editors start it, with its own cache (indexes, converted models)."""
    return ClientServerConfig(
        server_command=SERVE.server_command,
        server_env={**os.environ, "REPOTUNE_CACHE_DIR": str(cache)},
    )


async def start_session(
    client: LanguageClient, roots: list[Path], options: dict[str, Any] | None = None
) -> types.InitializeResult:
    """Initialize as VS Code does, with these workspace folders and initializationOptions."""
    params = types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        root_uri=roots[0].as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=r.as_uri(), name=r.name) for r in roots],
        initialization_options=options or {},
    )
    return await client.initialize_session(params)


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


async def wait_for_status(
    client: LanguageClient,
    what: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 240.0,
    always: Callable[[dict[str, Any]], bool] = lambda status: True,
) -> dict[str, Any]:
    """Poll repotune.status until `check(status)` holds; `always(status)` must hold for every
    status seen on the way."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await execute(client, "repotune.status")
        assert always(status), f"{what}: on the way, {status['folders']}"
        if check(status):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s: {status}")
