"""A streaming client for an OpenAI-compatible generation endpoint (llama-server, vLLM,
llama-cpp-python's server): `/completions` and `/chat/completions` over server-sent events.

Cancellation closes the HTTP stream: the server notices the closed connection and stops
generating (llama.cpp's servers and vLLM all abort a request whose client went away). The
response is read on a helper thread so that a cancel (or the time cap) returns at once, even
while the server is still evaluating the prompt and has sent nothing yet.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

# How often a waiting caller looks at its cancel event.
POLL_S = 0.02


class EndpointError(Exception):
    """The endpoint could not be reached or answered with an error; the message says which."""


@dataclass(frozen=True)
class Piece:
    """One streamed chunk: its text and, on the last one, why the server stopped."""

    text: str
    finish_reason: str | None = None


class _Stream:
    """One request read on a helper thread; `abort()` closes its connection from any thread."""

    def __init__(self, client: httpx.Client, url: str, body: Mapping[str, Any]) -> None:
        self._client = client
        self._url = url
        self._body = dict(body)
        self._queue: queue.Queue[Piece | BaseException | None] = queue.Queue()
        self._aborted = threading.Event()
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="repotune-endpoint", daemon=True).start()

    def _read(self) -> None:
        try:
            with self._client.stream("POST", self._url, json=self._body) as response:
                self._hold_socket(response)
                if self._aborted.is_set():
                    return
                if response.status_code >= 400:
                    detail = response.read().decode("utf-8", "replace")[:300]
                    raise EndpointError(f"HTTP {response.status_code} from {self._url}: {detail}")
                for line in response.iter_lines():
                    if self._aborted.is_set():
                        return
                    piece = _parse_event(line)
                    if piece is _DONE:
                        break
                    if piece is not None:
                        self._queue.put(piece)
            self._queue.put(None)
        except BaseException as exc:  # handed to the caller's thread; aborts are expected
            if not self._aborted.is_set():
                self._queue.put(_as_endpoint_error(exc, self._url))

    def _hold_socket(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock
            if self._aborted.is_set():
                self._shutdown()

    def _shutdown(self) -> None:
        # shutdown, not close: it wakes the reader blocked in recv() and sends the FIN now.
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def abort(self) -> None:
        with self._lock:
            if self._aborted.is_set():
                return
            self._aborted.set()
            self._shutdown()

    def pieces(self, cancel: threading.Event, deadline: float | None = None) -> Iterator[Piece]:
        """The streamed pieces until the end, a cancel or `deadline` (time.monotonic())."""
        try:
            while True:
                if cancel.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    return
                try:
                    item = self._queue.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.abort()  # done, cancelled or abandoned: the server stops generating


_DONE = Piece("[DONE]")


def _parse_event(line: str) -> Piece | None:
    """One SSE line as a piece of text; None for comments, pings and other fields."""
    if not line.startswith("data:"):
        return None
    data = line[len("data:") :].strip()
    if data == "[DONE]":
        return _DONE
    try:
        event = json.loads(data)
    except json.JSONDecodeError as exc:
        raise EndpointError(f"not a JSON event: {data[:200]!r}") from exc
    if "error" in event:
        raise EndpointError(f"the endpoint reported an error: {event['error']}")
    choices = event.get("choices") or [{}]
    choice = choices[0]
    text = choice.get("text")
    if text is None:
        text = (choice.get("delta") or {}).get("content") or ""
    return Piece(text, choice.get("finish_reason"))


def _as_endpoint_error(exc: BaseException, url: str) -> EndpointError:
    if isinstance(exc, EndpointError):
        return exc
    if isinstance(exc, httpx.ConnectError):
        return EndpointError(f"cannot connect to {url} ({exc})")
    if isinstance(exc, httpx.TimeoutException):
        return EndpointError(f"{url} timed out ({type(exc).__name__})")
    return EndpointError(f"{url}: {type(exc).__name__}: {exc}")


class EndpointClient:
    """Requests to one endpoint; thread-safe (keep-alive connections are pooled)."""

    def __init__(
        self, base_url: str, model: str | None, key_env: str | None, timeout_s: float
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        headers = {"Accept": "text/event-stream"}
        key = os.environ.get(key_env) if key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        # trust_env=False: no proxy from the environment may see the code sent here.
        self._client = httpx.Client(timeout=timeout_s, headers=headers, trust_env=False)

    def _body(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        body = {"stream": True, **fields}
        if self.model:
            body["model"] = self.model
        return body

    def complete(self, fields: Mapping[str, Any]) -> _Stream:
        """Start a streamed POST /completions (fields: prompt, max_tokens, stop...)."""
        return _Stream(self._client, f"{self.base_url}/completions", self._body(fields))

    def chat(self, fields: Mapping[str, Any]) -> _Stream:
        """Start a streamed POST /chat/completions (fields: messages, max_tokens...)."""
        return _Stream(self._client, f"{self.base_url}/chat/completions", self._body(fields))

    def close(self) -> None:
        self._client.close()
