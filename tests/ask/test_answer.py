"""Answering a question: the base-model document path stops at its time cap; with nothing
retrieved the model is not asked."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from endpoint_server import assistant_on_endpoint, recording_endpoint
from repotune.server.ask.answer import continue_document
from repotune.server.ask.focus import CodeInView
from repotune.server.assistant import NOTHING_RETRIEVED, Assistant
from repotune.server.completion.context import ContextSnippet
from repotune.server.config import load_settings
from repotune.server.models import ModelError


class EndlessModel:
    """Stands in for llama.cpp: a document answer that never stops on its own."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.closed = False

    def create_completion(self, prompt: str, **_: object) -> Iterator[dict]:
        self.prompts.append(prompt)

        def stream() -> Iterator[dict]:
            while not self.closed:
                time.sleep(0.01)
                yield {"choices": [{"text": " more"}]}

        return stream()


def test_ask_stops_at_its_time_cap_with_the_configured_context() -> None:
    settings = load_settings(None, {"ask": {"time_cap_ms": 500, "context_chars": 300}})
    model = EndlessModel()
    snippet = ContextSnippet("a.py", "x = 1\n" * 200, 1)
    deadline = time.monotonic() + settings.ask.time_cap_ms / 1000.0
    answer = continue_document(
        model, settings, "What is x?", [snippet], 10**6, threading.Event(), deadline
    )
    model.closed = True
    assert answer.startswith("more")  # it stopped (the model would not) with what it had
    body = model.prompts[0].split("```python\n", 1)[1].split("\n```", 1)[0]
    assert len(body) == settings.ask.context_chars  # ask.context_chars caps the code shown


def test_with_nothing_retrieved_the_answer_says_so_without_asking_the_model() -> None:
    """No folder (or an empty index): the small model, asked anyway, echoed its instructions."""
    with recording_endpoint() as (url, bodies):
        assistant = Assistant({"model": {"endpoint": url, "endpoint_fallback": False}})
        try:
            assistant.start()
            seen: list[str] = []
            answer = assistant.ask("How is the cache folder chosen?", on_text=seen.append)
        finally:
            assistant.close()
    assert answer.text == answer.answer == NOTHING_RETRIEVED and not answer.citations
    assert seen == [NOTHING_RETRIEVED] and bodies == []


def test_the_code_in_view_is_shown_first_unless_it_is_a_secret(tmp_path: Path) -> None:
    """What the model is sent (a recording endpoint): the selected lines of app.py first, marked;
    from a .env buffer (a secret the index skips) nothing, whatever the question says."""
    repo = tmp_path / "repo"
    repo.mkdir()
    app = "def greet(name: str) -> str:\n    return f'hello {name}'\n"
    (repo / "app.py").write_text(app)
    secret = "PAYMENT_TOKEN=tok-5e1f0c9a7b3d2e8f4a6c\n"
    (repo / ".env").write_text(secret)
    with recording_endpoint() as (url, bodies):
        # one server each: a failed endpoint (503 here) is paused before it is asked again
        for path, text in ((repo / "app.py", app), (repo / ".env", secret)):
            with (
                assistant_on_endpoint(url, repo, tmp_path / "index") as assistant,
                contextlib.suppress(ModelError),
            ):
                assistant.ask("What does this greet?", view=CodeInView(path, text, 1, 2))
    shown, from_secret = (body["messages"][-1]["content"] for body in bodies)
    assert "### app.py:1-2 (the code in view)\n```python\ndef greet(" in shown
    assert "PAYMENT_TOKEN" not in from_secret and "tok-5e1f" not in from_secret
    assert "(the code in view)" not in from_secret
