"""Answering a question: the base-model document path stops at its time cap; with nothing
retrieved the model is not asked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from endpoint_server import recording_endpoint
from repotune.server.ask.answer import continue_document
from repotune.server.assistant import NOTHING_RETRIEVED, Assistant
from repotune.server.completion.context import ContextSnippet
from repotune.server.config import load_settings


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
