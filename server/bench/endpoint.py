"""`repotune bench endpoint [PATH]`: completion latency through an OpenAI-compatible endpoint
against in-process generation, same model, same prompts, as one JSON object.

Without --endpoint it starts llama-cpp-python's own server (`python -m llama_cpp.server`, the
[dev] extra) on localhost with the settings' generator and adapter, the same threads and context,
so the difference is what the HTTP hop, the server and streaming add. Cursors are the typing
sessions of `bench complete` on PATH's Python files, without retrieved context (no index to
build); each cursor goes to both engines, in alternating order, with the result caches cleared.
The endpoint engine counts tokens with the local model's tokenizer, so both pack the same prompt
(`same_prompt_share` checks it).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from repotune.server.bench.complete import DEFAULT_CORPUS, Cursor, sample_sessions
from repotune.server.bench.stats import p50_p95
from repotune.server.completion.engine import CompletionEngine
from repotune.server.completion.remote import EndpointEngine
from repotune.server.completion.request import CompletionRequest
from repotune.server.config import Settings, settings_with
from repotune.server.corpora import ensure_corpus
from repotune.server.llm.runtime import thread_count, wants_extra_buffers
from repotune.server.models import (
    ModelError,
    adapter_reference,
    fitting_adapter,
    resolve_generator,
)

TIME_BUDGET_S = 150.0
SERVER_WAIT_S = 120.0
# llama_cpp.server run with the in-process engine's CPU buffer choice (runtime.py: off on AMX
# CPUs), so both sides use the same kernels; llama_cpp.server has no option for it. The context
# is held by a name: an unreferenced one is collected at once, which undoes its patch.
SERVE = (
    "import runpy, sys; from repotune.server.llm.runtime import llama_extra_buffers; "
    "loading = llama_extra_buffers({extra}); loading.__enter__(); "
    "sys.argv[0] = 'llama_cpp.server'; "
    "runpy.run_module('llama_cpp.server', run_name='__main__')"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_llama_cpp_server(settings: Settings, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """llama-cpp-python's server with the settings' generator and adapter; (process, base URL)."""
    import httpx

    model = settings.model
    port = _free_port()
    generator = resolve_generator(model.generator)
    command = [
        *(
            sys.executable,
            "-P",
            "-c",
            SERVE.format(extra=wants_extra_buffers(model.cpu_extra_buffers)),
        ),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--model", str(generator.path)),
        *("--n_ctx", str(model.context_length), "--n_batch", str(min(512, model.context_length))),
        *("--n_threads", str(thread_count(model.threads))),
        *("--logits_all", "false"),  # its default computes every prompt token's logits
    ]
    adapter = adapter_reference(model.adapter, model.generator)
    if adapter:
        command += ["--lora_path", str(fitting_adapter(adapter, generator).path)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + SERVER_WAIT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/models", timeout=2, trust_env=False).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    tail = log.read_text(errors="replace")[-1500:]
    raise ModelError(f"llama_cpp.server did not start (is the [dev] extra installed?): {tail}")


def _measure(engine: Any, request: CompletionRequest) -> dict[str, Any]:
    engine.cache.clear()  # every request generates
    started = time.perf_counter()
    result = engine.complete(request)
    total = (time.perf_counter() - started) * 1000
    timings = result.timings if result else engine.last_stats.get("timings", {})
    return {
        "total_ms": total,
        "first_token_ms": timings.get("tokenize", 0.0) + timings.get("prompt_eval", 0.0),
        "text": result.text if result else "",
        "prompt": result.prompt.text if result and result.prompt else None,
    }


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "latency_ms": p50_p95([r["total_ms"] for r in records]),
        "first_token_ms": p50_p95([r["first_token_ms"] for r in records]),
        "mean_ms": round(statistics.mean(r["total_ms"] for r in records), 1) if records else None,
    }


def run_bench_endpoint(
    workspace: Path | None,
    settings: Settings,
    samples: int = 24,
    endpoint: str | None = None,
    time_budget_s: float = TIME_BUDGET_S,
) -> dict[str, Any]:
    """Replay cursors through both engines and print (and return) the JSON report."""
    root = workspace.resolve() if workspace else ensure_corpus(DEFAULT_CORPUS)
    cursors: list[Cursor] = [c for s in sample_sessions(root, samples) for c in s][:samples]
    local = CompletionEngine(settings)
    local.start_loading()
    log = Path(tempfile.mkdtemp(prefix="repotune-bench-endpoint-")) / "server.log"
    process, url = start_llama_cpp_server(settings, log) if endpoint is None else (None, endpoint)
    layer = {"model": {"endpoint": url, "endpoint_fallback": False, "endpoint_timeout_ms": 60_000}}
    remote = EndpointEngine(settings_with(settings, layer, "bench"), local.count_tokens)
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    truncated = False
    try:
        if not local.wait_ready(600):
            raise ModelError(local.load_error or "the generator did not load in time")
        warm = CompletionRequest("warmup.py", "python", "def main():\n    return ", "\n")
        _measure(local, warm), _measure(remote, warm)  # first-request costs (graph set-up)
        started = time.perf_counter()
        for index, cursor in enumerate(cursors):
            if time.perf_counter() - started > time_budget_s:
                truncated = True
                break
            request = CompletionRequest(cursor.path, "python", cursor.prefix, cursor.suffix)
            if index % 2 == 0:  # alternate, so that load drifts hit both
                here = _measure(local, request)
                there = _measure(remote, request)
            else:
                there = _measure(remote, request)
                here = _measure(local, request)
            pairs.append((here, there))
    finally:
        remote.close()
        local.close()
        if process is not None:
            process.kill()
            process.wait(timeout=30)
    added = [there["total_ms"] - here["total_ms"] for here, there in pairs]
    added_first = [there["first_token_ms"] - here["first_token_ms"] for here, there in pairs]
    report: dict[str, Any] = {
        "benchmark": "endpoint",
        "corpus": str(root),
        "endpoint": url if endpoint else "python -m llama_cpp.server (started here, same model)",
        "samples": len(pairs),
        "truncated_by_time_budget": truncated,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "model": {"generator": settings.model.generator, "adapter": settings.model.adapter},
        "threads": thread_count(settings.model.threads),
        "in_process": _summary([here for here, _ in pairs]),
        "through_endpoint": _summary([there for _, there in pairs]),
        "added_ms": {
            "total": p50_p95(added),
            "total_mean": round(statistics.mean(added), 1) if added else None,
            "first_token": p50_p95(added_first),
        },
        "same_prompt_share": _share(pairs, "prompt"),
        "same_text_share": _share(pairs, "text"),
    }
    print(json.dumps(report, indent=2))
    return report


def _share(pairs: list[tuple[dict[str, Any], dict[str, Any]]], key: str) -> float | None:
    both = [(a[key], b[key]) for a, b in pairs if a[key] is not None and b[key] is not None]
    return round(sum(a == b for a, b in both) / len(both), 3) if both else None
