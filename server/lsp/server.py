"""The language server: pygls handlers that adapt LSP messages to `Assistant` calls.

Each handler converts protocol types to plain values and back; the work happens in assistant.py
and the modules behind it. Blocking work (generation, retrieval) runs in a thread pool so that the
event loop keeps reading messages, and so `$/cancelRequest` or a newer request can stop it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import to_fs_path
from repotune.server.ask.focus import CodeInView, selection_lines
from repotune.server.ask.stream import ignore_text
from repotune.server.assistant import Assistant
from repotune.server.config import SettingsError
from repotune.server.log_level import configure_logging
from repotune.server.lsp.language_server import RepoTuneServer
from repotune.server.lsp.protocol import serve_stdio

logger = logging.getLogger("repotune.lsp")


COMMAND_ASK = "repotune.ask"
COMMAND_REINDEX = "repotune.reindex"
COMMAND_STATUS = "repotune.status"
COMMAND_SEARCH = "repotune.search"
# The answer so far while repotune.ask generates it, for a client that passed a progressToken.
ANSWER_NOTIFICATION = "repotune/answerProgress"
# At most one answer notification per this many seconds (each carries the whole answer so far).
ANSWER_PROGRESS_INTERVAL_S = 0.1


server = RepoTuneServer()


def _assistant(ls: RepoTuneServer) -> Assistant:
    if ls.assistant is None:
        raise RuntimeError("the server is not initialized")
    return ls.assistant


def _settings_payload(value: Any) -> dict[str, Any]:
    """Editors send either the settings object itself or {"repotune": {...}}."""
    if not isinstance(value, dict):
        return {}
    if "repotune" in value and isinstance(value["repotune"], dict):
        value = value["repotune"]
    return {k: v for k, v in value.items() if v is not None}


def _show_settings_error(ls: RepoTuneServer, error: SettingsError) -> None:
    ls.window_show_message(
        types.ShowMessageParams(
            type=types.MessageType.Error,
            message=f"RepoTune: {error}. The previous value is kept.",
        )
    )


@server.feature(types.INITIALIZE)
def on_initialize(ls: RepoTuneServer, params: types.InitializeParams) -> None:
    """Record what the client offered; nothing heavy happens here (initialize must be instant)."""
    ls.loop = asyncio.get_running_loop()
    capabilities = params.capabilities
    ls.client_supports_progress = bool(
        capabilities.window and capabilities.window.work_done_progress
    )
    overrides = _settings_payload(params.initialization_options)
    try:
        ls.assistant = Assistant(overrides, on_event=ls.on_assistant_event)
    except SettingsError as error:
        _show_settings_error(ls, error)
        ls.assistant = Assistant({}, on_event=ls.on_assistant_event)


@server.feature(types.INITIALIZED)
def on_initialized(ls: RepoTuneServer, params: types.InitializedParams) -> None:
    assistant = _assistant(ls)
    roots = [Path(to_fs_path(folder.uri) or "") for folder in ls.workspace.folders.values()]
    if not roots and ls.workspace.root_path:
        roots = [Path(ls.workspace.root_path)]

    def start() -> None:
        # Folders first, so the model is loaded with the first folder's settings (its adapter).
        for root in roots:
            if root.is_dir():
                assistant.add_folder(root)
        assistant.start()

    ls.thread_pool.submit(_log_failures(ls, start))


def _log_failures(ls: RepoTuneServer, function: Any) -> Any:
    def run() -> None:
        try:
            function()
        except Exception as exc:  # background start must report, never die silently
            logger.exception("background task failed")
            ls.on_assistant_event({"type": "log", "level": "error", "message": str(exc)})

    return run


@server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
def on_folders_changed(ls: RepoTuneServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    assistant = _assistant(ls)

    def apply() -> None:
        for folder in params.event.removed:
            assistant.remove_folder(Path(to_fs_path(folder.uri) or ""))
        for folder in params.event.added:
            assistant.add_folder(Path(to_fs_path(folder.uri) or ""))

    ls.thread_pool.submit(_log_failures(ls, apply))


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def on_configuration(ls: RepoTuneServer, params: types.DidChangeConfigurationParams) -> None:
    settings = _settings_payload(params.settings)
    if not settings:  # pull model: the client only said something changed
        try:
            result = await ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="repotune")])
            )
            settings = _settings_payload(result[0] if result else None)
        except Exception as exc:
            logger.info("workspace/configuration unavailable: %s", exc)
            return
    assistant = _assistant(ls)
    try:
        await asyncio.get_running_loop().run_in_executor(
            ls.thread_pool, assistant.update_editor_settings, settings, "editor settings"
        )
    except SettingsError as error:
        _show_settings_error(ls, error)


def edit_only_deletes(changes: Sequence[types.TextDocumentContentChangeEvent]) -> bool:
    """True for backspace, delete or cut: ranged changes that insert nothing."""
    return bool(changes) and all(
        isinstance(change, types.TextDocumentContentChangePartial)
        and change.text == ""
        and change.range.start != change.range.end
        for change in changes
    )


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def on_did_change(ls: RepoTuneServer, params: types.DidChangeTextDocumentParams) -> None:
    # pygls has applied the changes to its document already.
    uri = params.text_document.uri
    deleted = edit_only_deletes(params.content_changes)
    ls.last_edit_deleted[uri] = deleted
    last = params.content_changes[-1] if params.content_changes else None
    if isinstance(last, types.TextDocumentContentChangePartial):
        # The cursor sits after the inserted text; text before the range start is unchanged.
        document = ls.workspace.get_text_document(uri)
        offset = document.offset_at_position(last.range.start) + len(last.text)
        _prefetch(ls, uri, offset, deleted)


PREFETCH_METHOD = "repotune/prefetch"


@server.feature(PREFETCH_METHOD)
def on_prefetch(ls: RepoTuneServer, params: Any) -> None:
    """The cursor came to rest at a new place (editors send it on cursor moves that are not
    edits): evaluate that place's prompt before the user types there."""
    try:
        uri = str(params.textDocument.uri)
        position = types.Position(int(params.position.line), int(params.position.character))
    except (AttributeError, TypeError, ValueError):
        logger.warning("%s: expected {textDocument: {uri}, position}", PREFETCH_METHOD)
        return
    if uri not in ls.workspace.text_documents:
        return
    offset = ls.workspace.get_text_document(uri).offset_at_position(position)
    _prefetch(ls, uri, offset, False)


def _prefetch(ls: RepoTuneServer, uri: str, offset: int, after_deletion: bool) -> None:
    """Start the background prefill for `offset` of the open document, off the event loop."""
    path = to_fs_path(uri)
    if not path or not uri.startswith("file:"):
        return
    document = ls.workspace.get_text_document(uri)
    ls.thread_pool.submit(
        _log_failures(
            ls,
            partial(
                _assistant(ls).prefetch,
                Path(path),
                document.source,
                offset,
                document.language_id,
                after_deletion,
            ),
        )
    )


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def on_did_close(ls: RepoTuneServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.last_edit_deleted.pop(params.text_document.uri, None)
    _release_heap()


def _release_heap() -> None:
    """Hand freed heap back to the system: glibc keeps the pages of a closed 20 MB buffer (and
    of the messages that carried it) otherwise, and the server's memory never comes down."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


_LIBC = _load_libc()


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def on_did_save(ls: RepoTuneServer, params: types.DidSaveTextDocumentParams) -> None:
    path = to_fs_path(params.text_document.uri)
    if path:
        _assistant(ls).file_saved(Path(path))


def _document_request(
    ls: RepoTuneServer, uri: str, position: types.Position
) -> tuple[Path, str, int, str | None] | None:
    """The document's path, text, cursor offset and language; None when there is no text.

    A document that is not a file (``untitled:``, a notebook cell) gets a relative path of its
    own name: the assistant completes it from the buffer alone, with no index.
    """
    path = to_fs_path(uri)
    documents = ls.workspace.text_documents
    if uri not in documents and not (path and Path(path).is_file()):
        return None  # never opened and not on disk: nothing to complete
    document = ls.workspace.get_text_document(uri)
    offset = document.offset_at_position(position)
    if not path or not uri.startswith("file:"):
        name = Path(urlparse(uri).path).name or "untitled"
        return Path(name), document.source, offset, document.language_id
    return Path(path), document.source, offset, document.language_id


async def _complete(ls: RepoTuneServer, uri: str, position: types.Position, automatic: bool) -> Any:
    """Run one completion in the generation thread; a newer request for the document wins.
    `automatic`: triggered by typing rather than asked for (trigger.py may decline it)."""
    assistant = _assistant(ls)
    document = _document_request(ls, uri, position)
    if document is None:
        return None
    path, text, offset, language = document
    complete = partial(
        assistant.complete,
        automatic=automatic,
        after_deletion=ls.last_edit_deleted.get(uri, False),
    )
    previous = ls.inflight.get(uri)
    if previous is not None:
        previous.set()
    cancel = threading.Event()
    ls.inflight[uri] = cancel
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(
            ls.generation_pool, complete, path, text, offset, language, cancel
        )
    except asyncio.CancelledError:
        cancel.set()  # $/cancelRequest: stop generating at the next token
        raise
    finally:
        if ls.inflight.get(uri) is cancel:
            del ls.inflight[uri]


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def on_inline_completion(
    ls: RepoTuneServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    automatic = params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
    outcome = await _complete(ls, params.text_document.uri, params.position, automatic)
    if outcome is None:
        return types.InlineCompletionList(items=[])
    # No range: the text is inserted at the cursor. An explicit empty range makes Neovim draw
    # the suggestion over the rest of the line; the VS Code extension adds the range VS Code needs.
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=outcome.text)])


@server.feature(
    types.TEXT_DOCUMENT_COMPLETION,
    types.CompletionOptions(trigger_characters=[".", "(", " "], resolve_provider=False),
)
async def on_completion(ls: RepoTuneServer, params: types.CompletionParams) -> types.CompletionList:
    """The same completion as a single item, for clients without inline completion."""
    assistant = _assistant(ls)
    path = Path(to_fs_path(params.text_document.uri) or "untitled")
    empty = types.CompletionList(is_incomplete=True, items=[])
    if not assistant.settings_for_path(path).completion.fallback_completion_item:
        return empty
    automatic = (
        params.context is not None
        and params.context.trigger_kind != types.CompletionTriggerKind.Invoked
    )
    outcome = await _complete(ls, params.text_document.uri, params.position, automatic)
    if outcome is None:
        return empty
    first_line = outcome.text.strip().splitlines()[0] if outcome.text.strip() else outcome.text
    cursor = types.Range(start=params.position, end=params.position)
    item = types.CompletionItem(
        label=first_line[:80],
        kind=types.CompletionItemKind.Snippet,
        detail="RepoTune",
        documentation=types.MarkupContent(
            kind=types.MarkupKind.Markdown, value=f"```\n{outcome.text}\n```"
        ),
        text_edit=types.TextEdit(range=cursor, new_text=outcome.text),
        insert_text_format=types.InsertTextFormat.PlainText,
        filter_text="",
        sort_text="0",
        preselect=True,
    )
    return types.CompletionList(is_incomplete=True, items=[item])


# The most results a search may ask for: k is a count for a person to read, not a resource.
MAX_SEARCH_K = 100


def _first_argument(arguments: tuple[Any, ...]) -> Any:
    return arguments[0] if arguments else None


def _text_argument(arguments: tuple[Any, ...], key: str, usage: str) -> str:
    """`[{key: "..."}]` or `["..."]`; anything else is InvalidParams with `usage` as the hint."""
    first = _first_argument(arguments)
    value = first.get(key) if isinstance(first, dict) else first
    if not isinstance(value, str) or not value.strip():
        raise JsonRpcInvalidParams(f"{usage} needs a non-empty {key} string")
    return value


def _k_argument(arguments: tuple[Any, ...], default: int = 8) -> int:
    first = _first_argument(arguments)
    k = first.get("k", default) if isinstance(first, dict) else default
    if isinstance(k, bool) or not isinstance(k, int):
        raise JsonRpcInvalidParams(f"k must be an integer, got {type(k).__name__}")
    return max(1, min(k, MAX_SEARCH_K))


@server.command(COMMAND_ASK)
async def cmd_ask(ls: RepoTuneServer, *arguments: Any) -> dict[str, Any]:
    """Answer a question about the workspace: [{"question": str, "progressToken": str|int,
    "textDocument": {"uri": str}, "range": Range}]. With a progressToken,
    repotune/answerProgress notifications carry the answer as it grows; the response holds the
    final (checked) answer. With an open document and the editor's selection (`range`; an
    empty one is the cursor), the question is about that code (ask/focus.py)."""
    question = _text_argument(arguments, "question", 'repotune.ask [{"question": "..."}]')
    view = _view_argument(ls, _first_argument(arguments))
    assistant = _assistant(ls)
    cancel = threading.Event()
    on_text = _answer_progress(ls, _first_argument(arguments))
    try:
        answer = await asyncio.get_running_loop().run_in_executor(
            ls.generation_pool,
            partial(assistant.ask, question, cancel, on_text=on_text, view=view),
        )
    except asyncio.CancelledError:
        cancel.set()
        raise
    return {
        "answer": answer.answer,
        "text": answer.text,  # with the sources listed, for clients that show it as it is
        "citations": [vars(citation) for citation in answer.citations],
        "timings": answer.timings,
    }


def _view_argument(ls: RepoTuneServer, first: Any) -> CodeInView | None:
    """The open document and selection a question is asked from; None without one (or for a
    document the editor has not opened: the server reads no file it was not given)."""
    document = first.get("textDocument") if isinstance(first, dict) else None
    if document is None:
        return None
    try:
        uri = str(document["uri"])
        start, end = first["range"]["start"], first["range"]["end"]
        lines = selection_lines(
            int(start["line"]), int(start["character"]), int(end["line"]), int(end["character"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise JsonRpcInvalidParams(
            'repotune.ask: "textDocument" needs {"uri": str} and "range" an LSP Range'
        ) from exc
    path = to_fs_path(uri)
    if uri not in ls.workspace.text_documents or not path or not uri.startswith("file:"):
        return None
    return CodeInView(Path(path), ls.workspace.get_text_document(uri).source, *lines)


def _answer_progress(ls: RepoTuneServer, first: Any) -> Callable[[str], None]:
    """Sends the growing answer to the client that gave a token, at a bounded rate."""
    token = first.get("progressToken") if isinstance(first, dict) else None
    if isinstance(token, bool) or not isinstance(token, (str, int)):
        return ignore_text
    last_sent = 0.0

    def send(text: str) -> None:
        nonlocal last_sent
        now = time.monotonic()
        if now - last_sent >= ANSWER_PROGRESS_INTERVAL_S:
            last_sent = now
            payload = {"token": token, "text": text}
            ls.call_in_loop(ls.protocol.notify, ANSWER_NOTIFICATION, payload)

    return send


@server.command(COMMAND_SEARCH)
async def cmd_search(ls: RepoTuneServer, *arguments: Any) -> list[dict[str, Any]]:
    """Show what retrieval finds for a query: [{"query": str, "k": int}] (k at most 100)."""
    query = _text_argument(arguments, "query", 'repotune.search [{"query": "...", "k": 8}]')
    k = _k_argument(arguments)
    return await asyncio.get_running_loop().run_in_executor(
        ls.thread_pool, _assistant(ls).search, query, k
    )


@server.command(COMMAND_REINDEX)
def cmd_reindex(ls: RepoTuneServer, *arguments: Any) -> dict[str, Any]:
    ls.thread_pool.submit(_log_failures(ls, _assistant(ls).reindex))
    return {"ok": True}


@server.command(COMMAND_STATUS)
def cmd_status(ls: RepoTuneServer, *arguments: Any) -> dict[str, Any]:
    return _assistant(ls).status()


@server.feature(types.SHUTDOWN)
def on_shutdown(ls: RepoTuneServer, params: Any = None) -> None:
    """Stop watchers and workers and close the stores before the client says exit."""
    for event in list(ls.inflight.values()):
        event.set()
    if ls.assistant is not None:
        ls.assistant.close()
    ls.generation_pool.shutdown(wait=False, cancel_futures=True)


def run_stdio() -> None:
    """Serve on stdin/stdout, with the protocol on its own copy of fd 1.

    llama-cpp-python's `verbose=False` silences model loading by pointing fd 1 at /dev/null for a
    while; replies written then were lost. The protocol therefore writes to a duplicate of the
    original stdout, and fd 1 itself (and sys.stdout) go to stderr, so no library's print can
    corrupt the JSON-RPC stream either.
    """
    configure_logging()  # the level, if any, came with `repotune --log-level` / REPOTUNE_LOG
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    code = serve_stdio(server, sys.stdin.buffer, protocol_out)
    if server.assistant is not None and not server.protocol._shutdown:
        on_shutdown(server)  # exit without shutdown: still stop watchers and workers
    raise SystemExit(code)
