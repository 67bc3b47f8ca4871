"""Answering a question about the workspace from retrieved snippets, with the loaded generator."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

from repotune.server.ask.prompts import build_ask_document, build_ask_messages
from repotune.server.completion.model import LoadedModel
from repotune.server.completion.truncation import clip_to_tokens
from repotune.server.config import Settings

# Tokens kept free for a chat template's own markers around a question.
_ASK_SLACK = 64
# A question keeps at least this many tokens, however many the snippets take.
_MIN_QUESTION_TOKENS = 64


def answer(
    loaded: LoadedModel,
    settings: Settings,
    question: str,
    snippets: Sequence[Any],
    max_tokens: int,
    cancel: threading.Event,
    deadline: float,
) -> str:
    """The answer generated until done, cancelled or past `deadline` (time.monotonic())."""
    question = fit_question(loaded, settings, question, snippets, max_tokens)
    messages = build_ask_messages(question, snippets, max_snippet_chars=settings.ask.context_chars)
    llm = loaded.llm
    if not loaded.info.get("chat_template"):
        return continue_document(llm, settings, question, snippets, max_tokens, cancel, deadline)
    if llm.chat_format == "gemma" and messages and messages[0]["role"] == "system":
        # Gemma's template has no system role; its convention is to prepend it.
        system = messages[0]["content"]
        messages = [
            {"role": "user", "content": f"{system}\n\n{messages[1]['content']}"},
            *messages[2:],
        ]
    pieces: list[str] = []
    stream = llm.create_chat_completion(
        messages=messages,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        temperature=max(0.0, settings.completion.temperature),
        stream=True,
    )
    for chunk in stream:
        if cancel.is_set() or time.monotonic() > deadline:
            break
        delta = chunk["choices"][0].get("delta", {})  # type: ignore[index]
        if delta.get("content"):
            pieces.append(delta["content"])
    with contextlib.suppress(Exception):
        stream.close()  # type: ignore[union-attr]
    return "".join(pieces).strip()


def continue_document(
    llm: Any,
    settings: Settings,
    question: str,
    snippets: Sequence[Any],
    max_tokens: int,
    cancel: threading.Event,
    deadline: float,
) -> str:
    """Base models (no chat template) continue a Q&A document instead of a chat turn."""
    chars = settings.ask.context_chars
    prompt, stops = build_ask_document(question, snippets, max_snippet_chars=chars)
    pieces: list[str] = []
    stream = llm.create_completion(
        prompt,
        max_tokens=max_tokens,
        temperature=max(0.0, settings.completion.temperature),
        repeat_penalty=1.15,
        stop=list(stops),
        stream=True,
    )
    for chunk in stream:
        if cancel.is_set() or time.monotonic() > deadline:
            break
        pieces.append(chunk["choices"][0].get("text", ""))  # type: ignore[index]
    with contextlib.suppress(Exception):
        stream.close()  # type: ignore[union-attr]
    return "".join(pieces).strip()


def fit_question(
    loaded: LoadedModel, settings: Settings, question: str, snippets: Sequence[Any], max_tokens: int
) -> str:
    """The question cut to what the context window leaves beside the snippets and the
    answer (a pasted log or file as a question is answered, not refused)."""
    prompt, _ = build_ask_document("", snippets, max_snippet_chars=settings.ask.context_chars)
    room = settings.model.context_length - max_tokens - _ASK_SLACK
    budget = max(_MIN_QUESTION_TOKENS, room - loaded.count(prompt))
    return clip_to_tokens(question, budget, lambda text: loaded.count(text))
