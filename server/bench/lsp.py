"""`repotune bench lsp`: completion latency as an editor sees it, against the core's own latency.

A real client (pygls) starts `python -m repotune serve`, replays typing sessions on a real codebase
(didChange + textDocument/inlineCompletion, as an editor sends them) and times each request from
send to reply. After each reply the server's `repotune.status` gives the wall time the same
request spent inside the core (retrieval + engine), so `lsp_overhead = client − core` is what the
LSP layer adds: JSON-RPC, document sync, position conversion, thread hand-off, serialisation.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from repotune import __version__
from repotune.server.bench.complete import DEFAULT_CORPUS, Cursor, sample_sessions
from repotune.server.bench.stats import p50_p95
from repotune.server.config import Settings
from repotune.server.corpora import ensure_corpus

READY_TIMEOUT_S = 900.0
TIME_BUDGET_S = 900.0
SHUTDOWN_TIMEOUT_S = 30.0


def _p50_p95(values: list[float]) -> dict[str, float | None]:
    return p50_p95(values, digits=2)  # the protocol's overhead is a fraction of a millisecond


def _position(prefix: str) -> types.Position:
    last = prefix.rsplit("\n", 1)[-1]
    return types.Position(line=prefix.count("\n"), character=len(last.encode("utf-16-le")) // 2)


async def _status(client: Any) -> dict[str, Any]:
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="repotune.status", arguments=[])
    )
    return dict(result)


async def _wait_ready(client: Any) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await _status(client)
        if status.get("state") == "error":
            raise SystemExit(f"repotune: the server reported an error: {status.get('errors')}")
        if status.get("state") == "idle":
            return status
        await asyncio.sleep(0.5)
    raise SystemExit(f"repotune: the server was not ready after {READY_TIMEOUT_S}s: {status}")


async def _replay(
    workspace: Path, sessions: list[list[Cursor]], index_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from pygls.lsp.client import LanguageClient

    client = LanguageClient("repotune-bench", __version__)
    client.feature("repotune/status")(lambda *_: None)  # status pushes are not timed here
    spawned = time.perf_counter()
    await client.start_io(sys.executable, "-P", "-m", "repotune", "serve")
    process = client._server  # pygls keeps the spawned process only here
    assert process is not None and process.stderr is not None  # start_io made both
    relay = asyncio.create_task(_relay_stderr(process.stderr))
    records: list[dict[str, Any]] = []
    try:
        await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                root_uri=workspace.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name="bench")],
                initialization_options={"index": {"index_dir": str(index_dir)}},
            )
        )
        # From the spawn to the answer: the interpreter's start and imports, no model loading.
        initialize_ms = (time.perf_counter() - spawned) * 1000.0
        client.initialized(types.InitializedParams())
        ready = {**await _wait_ready(client), "initialize_ms": initialize_ms}
        started = time.monotonic()
        for session in sessions:
            if time.monotonic() - started > TIME_BUDGET_S:
                break
            uri = (workspace / session[0].path).as_uri()
            version = 1
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(
                        uri=uri,
                        language_id="python",
                        version=version,
                        text=session[0].prefix + session[0].suffix,
                    )
                )
            )
            for cursor in session:
                version += 1
                client.text_document_did_change(
                    types.DidChangeTextDocumentParams(
                        text_document=types.VersionedTextDocumentIdentifier(
                            uri=uri, version=version
                        ),
                        content_changes=[
                            types.TextDocumentContentChangeWholeDocument(
                                text=cursor.prefix + cursor.suffix
                            )
                        ],
                    )
                )
                params = types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=_position(cursor.prefix),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Automatic
                    ),
                )
                sent = time.perf_counter()
                result = await client.text_document_inline_completion_async(params)
                client_ms = (time.perf_counter() - sent) * 1000.0
                core = (await _status(client)).get("last_completion", {})
                items = result.items if isinstance(result, types.InlineCompletionList) else result
                records.append(
                    {
                        "kind": cursor.kind,
                        "client_ms": client_ms,
                        "core_ms": float(core.get("total_ms", 0.0)),
                        "answered": bool(items),
                    }
                )
            client.text_document_did_close(
                types.DidCloseTextDocumentParams(
                    text_document=types.TextDocumentIdentifier(uri=uri)
                )
            )
    finally:
        await _stop_server(client, process)
        await asyncio.wait_for(relay, SHUTDOWN_TIMEOUT_S)  # the server's last lines
    return records, ready


async def _relay_stderr(stream: asyncio.StreamReader) -> None:
    """The server's log goes to the bench's stderr. pygls pipes the server's stderr and never
    reads it, so a server that logged much (REPOTUNE_LOG=debug) blocked once the pipe was full."""
    while line := await stream.readline():
        sys.stderr.write(line.decode("utf-8", errors="replace"))
    sys.stderr.flush()


async def _stop_server(client: Any, process: asyncio.subprocess.Process) -> None:
    """Shut the server down, also when the run stopped early (a model that failed to load):
    pygls' stop() waits for the server process to exit, which it does only after `exit`."""
    try:
        await asyncio.wait_for(client.shutdown_async(None), SHUTDOWN_TIMEOUT_S)
        client.exit(None)
        await asyncio.wait_for(client.stop(), SHUTDOWN_TIMEOUT_S)
    except Exception:  # it hangs, is gone or answered an error: the bench must not hang
        if process.returncode is None:
            process.kill()
            await process.wait()


def run_bench_lsp(workspace: Path | None, settings: Settings, samples: int = 30) -> dict[str, Any]:
    """Print (and return) one JSON object: client-side vs core latency per request, and their
    difference."""
    del settings  # the server reads the workspace's own settings, as in an editor
    root = workspace if workspace is not None else ensure_corpus(DEFAULT_CORPUS)
    sessions = sample_sessions(root, samples)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="repotune-bench-lsp-") as scratch:
        records, ready = asyncio.run(_replay(root, sessions, Path(scratch) / "index"))
    overhead = [r["client_ms"] - r["core_ms"] for r in records]
    report = {
        "benchmark": "lsp",
        "workspace": str(root),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "model": ready.get("model"),
        "initialize_ms": round(float(ready["initialize_ms"]), 1),
        "requests": len(records),
        "answered": sum(r["answered"] for r in records),
        "client_latency_ms": _p50_p95([r["client_ms"] for r in records]),
        "core_latency_ms": _p50_p95([r["core_ms"] for r in records]),
        "lsp_overhead_ms": _p50_p95(overhead),
        "warm": {
            "client_latency_ms": _p50_p95([r["client_ms"] for r in records if r["kind"] == "warm"]),
            "lsp_overhead_ms": _p50_p95(
                [r["client_ms"] - r["core_ms"] for r in records if r["kind"] == "warm"]
            ),
        },
        "seconds": round(time.perf_counter() - wall, 1),
    }
    print(json.dumps(report, indent=2))
    return report
