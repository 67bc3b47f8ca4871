"""A real OpenAI-compatible endpoint for tests: llama-cpp-python's own server
(`python -m llama_cpp.server`) serving the default model with the default adapter, on localhost;
and a recording one that keeps what it was sent and answers 503 (what a prompt held), with an
Assistant that asks it about a repository."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from repotune.server.bench.endpoint import SERVE
from repotune.server.llm.runtime import wants_extra_buffers
from repotune.server.models import default_adapter_path, resolve_generator

API_KEY = "test-key-not-a-secret"
KEY_ENV = "REPOTUNE_TEST_ENDPOINT_KEY"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EndpointServer:
    process: subprocess.Popen[bytes]
    url: str  # the OpenAI base URL, .../v1
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)  # killed, as a crashed box would be
            self.process.wait(timeout=30)


def start_endpoint(log: Path, wait_s: float = 180.0) -> EndpointServer:
    """The server on a free port, once it answers GET /v1/models (it requires API_KEY)."""
    port = free_port()
    command = [
        sys.executable,
        "-c",
        # loaded as the engine loads (no repacked AMX buffers where they crash), as the bench does
        SERVE.format(extra=wants_extra_buffers(None)),
        "--model",
        str(resolve_generator("default").path),
        "--lora_path",
        str(default_adapter_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "1",
        "--logits_all",  # its default computes logits for every prompt token (slow prompts)
        "false",
        "--chat_format",
        "gemma",
        "--api_key",
        API_KEY,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its "disconnected" lines reach the log now
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = EndpointServer(process, f"http://127.0.0.1:{port}/v1", log)
    deadline = time.monotonic() + wait_s
    headers = {"Authorization": f"Bearer {API_KEY}"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {server.log_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/models", headers=headers, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"llama_cpp.server did not answer in {wait_s}s: {server.log_text()[-2000:]}")


@contextlib.contextmanager
def recording_endpoint() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(base URL, the JSON bodies POSTed to it so far); every request is answered 503."""
    bodies: list[dict[str, Any]] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", bodies
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def assistant_on_endpoint(url: str, repo: Path, index_dir: Path) -> Iterator[Any]:
    """A started Assistant on `repo` (indexed, lexical only) that generates on `url` with no
    local fallback: what it asks a recording endpoint is what a prompt would hold."""
    from repotune.server.assistant import Assistant

    assistant = Assistant(
        {
            "model": {"endpoint": url, "endpoint_fallback": False},
            "index": {"index_dir": str(index_dir), "dense": False},
        }
    )
    try:
        assistant.add_folder(repo, watch=False)
        assert assistant.folders.index_for(repo.resolve()).wait_idle(30)
        assistant.start()
        yield assistant
    finally:
        assistant.close()
