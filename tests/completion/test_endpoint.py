"""Remote generation (completion/remote.py) against a real OpenAI-compatible endpoint:
llama-cpp-python's server (`python -m llama_cpp.server`) serving the default model and adapter
on localhost, with an API key. Kept cheap: small budgets and token caps, one thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SMALL_COMPLETION, wait_for
from endpoint_server import API_KEY, KEY_ENV, EndpointServer, free_port, start_endpoint
from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.engine import CompletionEngine
from repotune.server.completion.engines import engine_for
from repotune.server.completion.remote import EndpointEngine, endpoint_format
from repotune.server.completion.request import CompletionRequest
from repotune.server.config import Settings, SettingsError, load_settings
from repotune.server.llm.endpoint import EndpointClient

SMALL = {**SMALL_COMPLETION, "time_cap_ms": 60_000}
GEOMETRY = '''import math


def distance(a, b):
    """Euclidean distance between two points."""
    return math.hypot(a[0] - b[0], a[1] - b[1])


def perimeter(points):
    total = 0.0
    for index, point in enumerate(points):
        total += '''


def settings_for(url: str, completion: dict | None = None, **model: object) -> Settings:
    layer = {
        "model": {
            "endpoint": url,
            "endpoint_key_env": KEY_ENV,
            "endpoint_timeout_ms": 60_000,  # a loaded 2-core box can take seconds per prompt
            "endpoint_fallback": False,
            "context_length": 1024,
            **model,
        },
        "completion": {**SMALL, **(completion or {})},
    }
    return load_settings(None, layer)


def line_request() -> CompletionRequest:
    return CompletionRequest("geometry.py", "python", GEOMETRY, "\n", (), "shapes")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, generator_model) -> Iterator[EndpointServer]:
    server = start_endpoint(tmp_path_factory.mktemp("endpoint") / "server.log")
    yield server
    server.stop()


@pytest.fixture()
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)


# --------------------------------------------------------------------------- settings


def test_a_repository_file_may_not_choose_the_endpoint(tmp_path: Path) -> None:
    """An untrusted repository would send its code (and the key in a variable it names) to an
    address it chooses: its own file may set none of the endpoint settings."""
    (tmp_path / "repotune.toml").write_text('[model]\nendpoint = "http://198.51.100.7:8000/v1"\n')
    with pytest.raises(SettingsError, match=r"repotune.toml.*'model.endpoint' may not come"):
        load_settings(tmp_path)
    # ... nor through pyproject.toml, nor by naming the key's variable, even beside the editor's
    (tmp_path / "repotune.toml").unlink()
    (tmp_path / "pyproject.toml").write_text(
        '[tool.repotune.model]\nendpoint_key_env = "AWS_SECRET_ACCESS_KEY"\n'
    )
    editor = {"model": {"endpoint": "http://127.0.0.1:8080/v1"}}
    with pytest.raises(SettingsError, match=r"'model\.endpoint_key_env'"):
        load_settings(tmp_path, editor)
    # The editor (or the command line) may set them.
    (tmp_path / "pyproject.toml").unlink()
    assert load_settings(tmp_path, editor).model.endpoint == "http://127.0.0.1:8080/v1"
    with pytest.raises(SettingsError, match=r"model\.endpoint"):
        load_settings(None, {"model": {"endpoint": "file:///etc/passwd"}})


def test_the_format_comes_from_the_setting_or_the_served_name() -> None:
    def fmt(**model: object) -> str:
        return endpoint_format(load_settings(None, {"model": model}).model).name

    assert fmt() == "repotune"  # the default model with its adapter
    assert fmt(endpoint_model="my-repo-adapter") == "repotune"
    assert fmt(endpoint_model="Qwen/Qwen2.5-Coder-7B") == "qwen2.5-coder"
    assert fmt(endpoint_model="bigcode/starcoder2-15b") == "starcoder2"
    assert fmt(endpoint_model="Qwen/Qwen2.5-Coder-7B", prompt_format="codegemma") == "codegemma"


def test_without_fallback_a_dead_endpoint_gives_nothing_and_says_why() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    engine = engine_for(settings_for(dead))
    try:
        assert isinstance(engine, EndpointEngine)
        started = time.perf_counter()
        assert engine.complete(line_request()) is None
        assert time.perf_counter() - started < 5
        status = engine.status()
        assert status["endpoint"]["state"] == "failed"
        assert "cannot connect" in status["endpoint"]["last_error"]
        assert "endpoint_fallback is off" in status["notice"]
        assert status["endpoint"]["fallback_state"] is None  # the local model was never loaded
        assert engine.last_reason == status["notice"]
    finally:
        engine.close()


def test_the_loaded_model_becomes_the_fallback_and_serves_on_after_the_endpoint(
    generator_model,
) -> None:
    """Setting an endpoint keeps the in-process model (loaded once) as its fallback; removing
    it again, the fallback serves on: a model in memory is never loaded a second time."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with_fallback = settings_for(dead, endpoint_fallback=True)
    local_settings = settings_for(dead)  # then the endpoint is removed
    local_settings = local_settings.model_copy(
        update={"model": local_settings.model.model_copy(update={"endpoint": None})}
    )
    engine = engine_for(local_settings)
    try:
        assert isinstance(engine, CompletionEngine) and engine.wait_ready(180)
        engine = engine_for(with_fallback, engine)
        assert isinstance(engine, EndpointEngine)
        assert engine.status()["endpoint"]["fallback_state"] == "ready"  # no load started
        engine = engine_for(local_settings, engine)
        assert isinstance(engine, CompletionEngine) and engine.ready  # the same model
        assert engine.complete(line_request()) is not None
        # Without fallback the model is not kept: it is closed, and loaded again when needed.
        engine = engine_for(settings_for(dead), engine)
        assert engine.status()["endpoint"]["fallback_state"] is None
        engine = engine_for(local_settings, engine)
        assert isinstance(engine, CompletionEngine) and not engine.ready
        assert engine.wait_ready(180)
    finally:
        engine.close()


# --------------------------------------------------------------------------- a live endpoint


@pytest.mark.slow
def test_a_completion_comes_through_the_endpoint(endpoint: EndpointServer, keyed: None) -> None:
    engine = EndpointEngine(settings_for(endpoint.url))
    try:
        result = engine.complete(line_request())
        assert result is not None and result.text.strip(), engine.last_reason
        assert "\n" not in result.text  # the same post-processing: one line mid-line
        assert result.prompt is not None and result.prompt.format == "repotune"
        assert result.prompt.text.startswith("<|rt_suffix|>geometry.py")
        assert result.timings["total"] >= result.timings["prompt_eval"] > 0
        status = engine.status()["endpoint"]
        assert status["state"] == "ok" and status["requests"] == 1
        assert status["last_latency_ms"] > 0 and status["last_first_chunk_ms"] > 0
        assert '"POST /v1/completions HTTP/1.1" 200' in endpoint.log_text()
        # A repeat is answered from the result cache, without a request.
        assert engine.complete(line_request()).cached  # type: ignore[union-attr]
        assert engine.status()["endpoint"]["requests"] == 1
    finally:
        engine.close()


@pytest.mark.slow
def test_a_wrong_key_is_reported(endpoint: EndpointServer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(KEY_ENV, "not-the-key")
    engine = EndpointEngine(settings_for(endpoint.url))
    try:
        assert engine.complete(line_request()) is None
        assert "HTTP 401" in engine.status()["endpoint"]["last_error"]
    finally:
        engine.close()


@pytest.mark.slow
def test_a_question_goes_to_chat_completions_and_a_cut_answer_ends_cleanly(
    endpoint: EndpointServer, keyed: None
) -> None:
    engine = EndpointEngine(settings_for(endpoint.url))
    snippet = ContextSnippet("geometry.py", GEOMETRY, 1, 12)
    try:
        seen: list[str] = []
        answer = engine.ask(
            "How is the perimeter computed?", [snippet], max_tokens=24, on_text=seen.append
        )
        assert answer.strip()
        # cut by the cap (finish_reason "length") inside the code it quotes: the block is closed
        assert seen[-1].count("```") % 2 == 1 and not seen[-1].endswith("\n")
        assert answer.count("```") % 2 == 0 and answer.endswith("\n```")
        assert '"POST /v1/chat/completions HTTP/1.1" 200' in endpoint.log_text()
    finally:
        engine.close()


@pytest.mark.slow
def test_closing_the_stream_stops_the_remote_generation(
    endpoint: EndpointServer, keyed: None
) -> None:
    """A cancel closes the HTTP stream at once; the server stops at its next token (it logs
    "disconnected") instead of generating its 400 tokens."""
    client = EndpointClient(endpoint.url, None, KEY_ENV, 60)
    before = endpoint.log_text().count("disconnected")
    cancel = threading.Event()
    fields = {"prompt": "a " * 20, "max_tokens": 400, "temperature": 0}  # repeats " a" on
    pieces = client.complete(fields).pieces(cancel)
    try:
        assert next(pieces).text  # generating
        cancel.set()
        started = time.perf_counter()
        assert list(pieces) == []
        assert time.perf_counter() - started < 0.2
        assert wait_for(lambda: endpoint.log_text().count("disconnected") > before, 30)
    finally:
        client.close()


@pytest.mark.slow
def test_a_cancelled_completion_returns_at_once(endpoint: EndpointServer, keyed: None) -> None:
    """The editor's cancel ($/cancelRequest or a newer request) ends complete() within a poll,
    whether the server is still reading the prompt or already generating."""
    engine = EndpointEngine(settings_for(endpoint.url, {"max_tokens_block": 200}))
    lines = "".join(f"    x{i} = {i}\n" for i in range(1, 41))
    request = CompletionRequest("table.py", "python", f"def table():\n{lines}    ", "\n")
    cancel = threading.Event()
    outcome: list[object] = []
    posts = endpoint.log_text().count("POST /v1/completions")
    worker = threading.Thread(target=lambda: outcome.append(engine.complete(request, cancel)))
    try:
        worker.start()
        assert wait_for(lambda: endpoint.log_text().count("POST /v1/completions") > posts, 30)
        time.sleep(0.2)
        assert worker.is_alive()  # a 40-line table's next lines take longer than this
        cancel.set()
        worker.join(1.0)
        assert not worker.is_alive()
        assert outcome == [None] and engine.last_reason == "cancelled"
    finally:
        cancel.set()
        engine.close()


@pytest.mark.slow
def test_a_killed_endpoint_falls_back_to_the_local_model(
    tmp_path: Path, keyed: None, generator_model
) -> None:
    server = start_endpoint(tmp_path / "server.log")
    engine = engine_for(settings_for(server.url, endpoint_fallback=True))
    try:
        assert engine.complete(line_request()) is not None  # remote
        server.stop()
        engine.cache.clear()
        # The first failure starts the local model; until it is loaded there is nothing.
        first = engine.complete(line_request())
        status = engine.status()
        assert status["endpoint"]["state"] == "failed", status
        assert "cannot connect" in status["endpoint"]["last_error"]
        assert first is None or engine.last_reason.startswith("local fallback")
        assert wait_for(lambda: engine.status()["endpoint"]["fallback_state"] == "ready", 180)
        result = engine.complete(line_request())
        assert result is not None and result.text.strip(), engine.last_reason
        assert engine.last_reason.startswith("local fallback")
        assert "completing with the local model" in engine.status()["notice"]
    finally:
        server.stop()
        engine.close()
