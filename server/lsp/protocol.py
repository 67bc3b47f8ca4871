"""The JSON-RPC side of the server: RepoTune's own stdio loop and the message rules of LSP.

pygls parses and dispatches; this module decides what reaches it. Bytes are framed by
framing.py (resynchronizing, size-capped), and every message that the specification
says deserves an answer gets one: parse errors (-32700), batches and malformed messages (-32600),
requests before `initialize` (-32002) and after `shutdown` (-32600). `exit` ends the process with
0 after `shutdown`, 1 without. Error responses carry a message, never a Python traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, BinaryIO

from lsprotocol.types import ResponseError
from pygls.exceptions import JsonRpcException
from pygls.io_ import StdoutWriter
from pygls.protocol import LanguageServerProtocol
from pygls.server import JsonRPCServer
from pygls.workspace import Workspace
from repotune.server.lsp.framing import MAX_MESSAGE_BYTES, Body, MessageFramer
from repotune.server.lsp.text import LspWorkspace

logger = logging.getLogger("repotune.lsp")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
SERVER_NOT_INITIALIZED = -32002
_READ_CHUNK = 1 << 16


def max_message_bytes() -> int:
    """The size cap; REPOTUNE_MAX_MESSAGE_BYTES lowers it (tests send a few MB, not 64)."""
    value = os.environ.get("REPOTUNE_MAX_MESSAGE_BYTES", "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_MESSAGE_BYTES


def _request_id(data: dict[str, Any]) -> int | str | None:
    value = data.get("id")
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


class _AlreadyAnswered:
    """Stands in for a request that failed to parse and was answered with an error already."""

    jsonrpc = None


class RepoTuneProtocol(LanguageServerProtocol):
    """pygls's protocol with the checks the specification asks for in front of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initialize_seen = False

    # pygls builds a plain Workspace in its initialize handler; documents must split lines as
    # LSP does (see text.py), so the workspace it stores becomes RepoTune's subclass.
    @property
    def _workspace(self) -> Workspace | None:
        return self.__dict__.get("_repotune_workspace")

    @_workspace.setter
    def _workspace(self, workspace: Workspace | None) -> None:
        if workspace is not None and type(workspace) is Workspace:
            workspace.__class__ = LspWorkspace  # same state, LSP line splitting for documents
        self.__dict__["_repotune_workspace"] = workspace

    # ------------------------------------------------------------------ answering errors

    def send_error(self, msg_id: int | str | None, code: int, message: str) -> None:
        self._send_data(
            {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
        )

    def _send_response(
        self, msg_id: Any, result: Any | None = None, error: ResponseError | None = None
    ) -> None:
        if error is not None and isinstance(error.data, dict) and "traceback" in error.data:
            error = ResponseError(code=error.code, message=error.message)  # the log has it
        super()._send_response(msg_id, result, error)

    def structure_message(self, data: dict[str, Any]) -> Any:
        """pygls drops a request whose params do not parse without answering; answer it."""
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if "id" in data and "method" in data:
                logger.warning("answering unparsable %s request with an error", data.get("method"))
                self._send_response(data["id"], error=error.to_response_error())
                return _AlreadyAnswered()
            raise

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _AlreadyAnswered):
            return
        super().handle_message(message)

    # ------------------------------------------------------------------ raw messages

    def handle_body(self, body: bytes) -> bool:
        """One framed body; False when it was not JSON (the framer then resynchronizes)."""
        try:
            data = json.loads(body)
        except ValueError as error:  # UnicodeDecodeError included
            logger.error("a message body is not JSON (%d bytes): %s", len(body), error)
            self.send_error(None, PARSE_ERROR, f"Parse error: the body is not JSON ({error})")
            return False
        if isinstance(data, list):
            self._reject_batch(data)
        else:
            self.handle_raw(data)
        return True

    def _reject_batch(self, batch: list[Any]) -> None:
        """LSP has no batches; each request in one gets its own Invalid Request error."""
        logger.error("a JSON-RPC batch of %d messages was refused", len(batch))
        message = "Invalid Request: batches are not supported by the Language Server Protocol"
        errors = [
            {
                "jsonrpc": "2.0",
                "id": _request_id(item),
                "error": {"code": INVALID_REQUEST, "message": message},
            }
            for item in batch
            if not isinstance(item, dict) or "method" not in item or "id" in item
        ]
        if errors:
            self._send_data(errors)
        else:  # only notifications: still say that they were not run
            self.send_error(None, INVALID_REQUEST, message)

    def handle_raw(self, data: Any) -> None:
        """Check one parsed message against JSON-RPC and the LSP lifecycle, then dispatch it."""
        if not isinstance(data, dict):
            self.send_error(None, INVALID_REQUEST, "Invalid Request: not a JSON object")
            return
        msg_id = _request_id(data)
        method = data.get("method")
        is_response = method is None and "id" in data and ("result" in data or "error" in data)
        if data.get("jsonrpc") != "2.0":
            if not is_response:
                self.send_error(msg_id, INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"')
            return
        if is_response:
            self._dispatch(data)
            return
        if not isinstance(method, str) or ("id" in data and msg_id is None):
            self.send_error(msg_id, INVALID_REQUEST, "Invalid Request: bad method or id")
            return
        is_request = "id" in data
        if method == "initialize":
            self.initialize_seen = True
        elif not self.initialize_seen and method != "exit":
            if is_request:
                self.send_error(msg_id, SERVER_NOT_INITIALIZED, "the server is not initialized")
            return
        if self._shutdown and method != "exit":
            if is_request:
                self.send_error(msg_id, INVALID_REQUEST, "Invalid Request: shutdown was requested")
            return
        self._dispatch(data)

    def _dispatch(self, data: dict[str, Any]) -> None:
        try:
            message = self.structure_message(data)
        except JsonRpcException as error:  # a notification whose params do not parse
            logger.error("dropped %s: %s", data.get("method"), error)
            return
        self.handle_message(message)


# ---------------------------------------------------------------------- the stdio loop


def _read_some(stream: IO[bytes]) -> bytes:
    read1 = getattr(stream, "read1", None)
    if read1 is not None:
        return bytes(read1(_READ_CHUNK))
    return os.read(stream.fileno(), _READ_CHUNK)


async def _read_loop(
    server: JsonRPCServer, protocol: RepoTuneProtocol, stdin: IO[bytes], stop: threading.Event
) -> int:
    loop = asyncio.get_running_loop()
    framer = MessageFramer(max_message_bytes())
    # Its own thread: the server's pool may be busy indexing, and reading must never wait.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stdin")
    try:
        while not stop.is_set():
            data = await loop.run_in_executor(reader, _read_some, stdin)
            if not data:
                logger.warning("stdin closed without an exit notification")
                return 0 if protocol._shutdown else 1
            for event in framer.feed(data):
                if isinstance(event, Body):
                    if event.note:
                        logger.error("framing: %s", event.note)
                    if not protocol.handle_body(event.data):
                        framer.resynchronize()
                else:
                    logger.error("framing: %s", event.message)
                    protocol.send_error(None, PARSE_ERROR, f"Parse error: {event.message}")
    except SystemExit as exit_:  # pygls's exit handler: 0 after shutdown, 1 without
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        reader.shutdown(wait=False)
    return 0


def serve_stdio(server: JsonRPCServer, stdin: IO[bytes], stdout: BinaryIO) -> int:
    """Serve until `exit` or end of input; returns the process exit code."""
    protocol = server.protocol
    assert isinstance(protocol, RepoTuneProtocol)
    stop = threading.Event()
    server._stop_event = stop
    protocol.set_writer(StdoutWriter(stdout))
    try:
        return asyncio.run(_read_loop(server, protocol, stdin, stop))
    except BrokenPipeError:
        logger.error("the client closed the connection")
        return 1
    except KeyboardInterrupt:
        return 1
    finally:
        server.shutdown()
