"""The language server object: the state the handlers share (the assistant, in-flight requests,
progress tokens) and the notifications sent from the assistant's threads (status, log messages,
indexing progress), which LSP requires to be written on the event loop's thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from repotune import __version__
from repotune.server.assistant import Assistant
from repotune.server.lsp.protocol import RepoTuneProtocol

logger = logging.getLogger("repotune.lsp")

STATUS_NOTIFICATION = "repotune/status"


class RepoTuneServer(LanguageServer):
    """Holds the per-process state the handlers share."""

    def __init__(self) -> None:
        super().__init__("repotune", __version__, protocol_cls=RepoTuneProtocol, max_workers=4)
        self.assistant: Assistant | None = None
        # Generation holds one llama.cpp context: one worker keeps requests in arrival order.
        self.generation_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self.inflight: dict[str, threading.Event] = {}
        # uri -> whether the document's latest edit only removed text (see completion/trigger.py)
        self.last_edit_deleted: dict[str, bool] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.progress_tokens: dict[str, dict[str, Any]] = {}
        self.client_supports_progress = False
        self.last_status: dict[str, Any] | None = None

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Unparsable traffic is the client's problem: log it rather than pop up a message."""
        logger.error("protocol error (%s): %s", getattr(source, "__name__", source), error)
        with contextlib.suppress(Exception):  # the transport itself may be what failed
            self.window_log_message(
                types.LogMessageParams(type=types.MessageType.Error, message=f"RepoTune: {error}")
            )

    # -------------------------------------------------------------- thread-safe notifications

    def call_in_loop(self, function: Any, *args: Any) -> None:
        """Index and engine threads report here; LSP writes must happen on the loop thread."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(function, *args)

    def on_assistant_event(self, event: dict[str, Any]) -> None:
        self.call_in_loop(self._handle_event, event)

    def _handle_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "status":
            payload = {k: v for k, v in event.items() if k != "type"}
            if payload != self.last_status:
                self.last_status = payload
                self.protocol.notify(STATUS_NOTIFICATION, payload)
        elif kind == "log":
            level = {"error": types.MessageType.Error, "warning": types.MessageType.Warning}.get(
                str(event.get("level")), types.MessageType.Log
            )
            self.window_log_message(types.LogMessageParams(type=level, message=event["message"]))
        elif kind == "index":
            self._report_index_progress(event)

    def _report_index_progress(self, event: dict[str, Any]) -> None:
        """One work-done progress per folder's indexing run, begun once the client accepts it."""
        if not self.client_supports_progress:
            return
        root = str(event.get("root"))
        phase = str(event.get("phase", ""))
        done, total = int(event.get("done", 0) or 0), int(event.get("total", 0) or 0)
        finished = phase in ("idle", "done")
        progress = self.progress_tokens.get(root)
        if progress is None:
            if finished:
                return
            progress = {"token": f"repotune-index-{uuid.uuid4()}", "begun": False, "ended": False}
            self.progress_tokens[root] = progress
            title = f"RepoTune: indexing {Path(root).name}"

            def created(*_: Any) -> None:
                self.work_done_progress.begin(
                    progress["token"],
                    types.WorkDoneProgressBegin(title=title, percentage=0, cancellable=False),
                )
                progress["begun"] = True
                if progress["ended"]:
                    self.work_done_progress.end(progress["token"], types.WorkDoneProgressEnd())

            self.work_done_progress.create(progress["token"], callback=created)
            return
        if finished:
            del self.progress_tokens[root]
            progress["ended"] = True
            if progress["begun"]:
                self.work_done_progress.end(
                    progress["token"], types.WorkDoneProgressEnd(message="index ready")
                )
        elif progress["begun"]:
            percentage = min(100, int(100 * done / total)) if total else None
            self.work_done_progress.report(
                progress["token"],
                types.WorkDoneProgressReport(
                    message=f"{phase} {done}/{total}", percentage=percentage
                ),
            )
