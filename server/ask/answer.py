"""Answering a question about the workspace from retrieved snippets, with the loaded generator."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from repotune.server.ask.grounding import (
    ABSTAIN,
    ABSTAIN_TASK,
    also_defined,
    contradicting_definition,
    file_opening,
    grounded_opening,
    named_definition,
    subject_definition,
    unsupported_name,
)
from repotune.server.ask.prompts import build_ask_document, build_ask_messages
from repotune.server.ask.quotes import faithful_quotes
from repotune.server.ask.stream import OnText, ignore_text
from repotune.server.ask.tidy import tidy_answer
from repotune.server.completion.model import LoadedModel
from repotune.server.completion.truncation import clip_to_tokens
from repotune.server.config import Settings
from repotune.server.llm.endpoint import EndpointClient

# Tokens kept free for a chat template's own markers around a question.
_ASK_SLACK = 64
# Why generation ended when it did not end on its own: the token cap, or the time cap (or cancel).
CUT_SHORT = ("length", "time")
# "The indexed code does not define." (the 270M model's abstention with the name left out).
_NAMELESS_ABSTENTION = re.compile(r"the indexed code does not define\W*", re.IGNORECASE)
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
    on_text: OnText = ignore_text,
) -> str:
    """The answer generated until done, cancelled or past `deadline` (time.monotonic()).
    `on_text` sees it grow; the returned text, checked against the snippets, is the answer."""
    question = fit_question(loaded.count, settings, question, snippets, max_tokens)
    messages = build_ask_messages(question, snippets, max_snippet_chars=settings.ask.context_chars)
    llm = loaded.llm
    if not loaded.info.get("chat_template"):
        # A question about code that a snippet defines is answered from that definition, cited
        # where the index found it (one about the file in view from the file's own summary);
        # the model writes the rest ...
        subject = subject_definition(question, snippets)
        opening = (
            grounded_opening(subject, snippets) if subject else file_opening(question, snippets)
        )
        text = ""
        if not opening:
            text = continue_document(
                llm, settings, question, snippets, max_tokens, cancel, deadline, on_text=on_text
            )
            # ... and so is an abstention that denies a definition the snippets hold, or an
            # answer that names one (the model picked it; the code gives its lines).
            subject = contradicting_definition(question, text, snippets) or named_definition(
                text, snippets
            )
            opening = grounded_opening(subject, snippets) if subject else ""
        if opening and not cancel.is_set() and time.monotonic() < deadline:
            text = continue_document(
                llm,
                settings,
                question,
                snippets,
                max_tokens,
                cancel,
                deadline,
                opening=opening,
                on_text=on_text,
            )
        note = also_defined(subject, snippets) if subject else ""
        return grounded(question, f"{text}\n\n{note}" if note and text else text, snippets)
    if llm.chat_format == "gemma" and messages and messages[0]["role"] == "system":
        # Gemma's template has no system role; its convention is to prepend it.
        system = messages[0]["content"]
        messages = [
            {"role": "user", "content": f"{system}\n\n{messages[1]['content']}"},
            *messages[2:],
        ]
    pieces: list[str] = []
    finish: str | None = None
    stream = llm.create_chat_completion(
        messages=messages,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        temperature=max(0.0, settings.completion.temperature),
        stream=True,
    )
    for chunk in stream:
        if cancel.is_set() or time.monotonic() > deadline:
            finish = "time"
            break
        choice = chunk["choices"][0]  # type: ignore[index]
        finish = choice.get("finish_reason") or finish
        delta = choice.get("delta", {})
        if delta.get("content"):
            pieces.append(delta["content"])
            on_text("".join(pieces).strip())
    with contextlib.suppress(Exception):
        stream.close()  # type: ignore[union-attr]
    return checked(question, "".join(pieces), finish, snippets)


def checked(question: str, text: str, finish: str | None, snippets: Sequence[Any]) -> str:
    """The answer as returned: tidied (cut short by the token or time cap: `finish` "length" or
    "time"), then grounded."""
    return grounded(question, tidy_answer(text.strip(), cut_short=finish in CUT_SHORT), snippets)


def grounded(question: str, text: str, snippets: Sequence[Any]) -> str:
    """An answer about a code name that no snippet contains is not from the code: abstain. An
    abstention that names nothing ("... does not define.") says what it means. Code the answer
    quotes is the snippets' own (faithful_quotes)."""
    missing = unsupported_name(question, text, snippets)
    if missing:
        return ABSTAIN.format(name=missing)
    if _NAMELESS_ABSTENTION.fullmatch(text.strip()):
        return ABSTAIN_TASK
    return faithful_quotes(text, snippets)


def continue_document(
    llm: Any,
    settings: Settings,
    question: str,
    snippets: Sequence[Any],
    max_tokens: int,
    cancel: threading.Event,
    deadline: float,
    opening: str = "",
    on_text: OnText = ignore_text,
) -> str:
    """Base models (no chat template) continue a Q&A document instead of a chat turn; with an
    `opening`, the answer starts with it and the model continues. Tidied (tidy_answer)."""
    chars = settings.ask.context_chars
    prompt, stops = build_ask_document(question, snippets, max_snippet_chars=chars)
    if opening:
        prompt = f"{prompt} {opening}"
    pieces: list[str] = []
    finish: str | None = None
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
            finish = "time"
            break
        choice = chunk["choices"][0]  # type: ignore[index]
        finish = choice.get("finish_reason") or finish
        pieces.append(choice.get("text", ""))
        on_text(_opened(opening, "".join(pieces)))
    with contextlib.suppress(Exception):
        stream.close()  # type: ignore[union-attr]
    return tidy_answer(_opened(opening, "".join(pieces)), cut_short=finish in CUT_SHORT)


def _opened(opening: str, rest: str) -> str:
    if not opening:
        return rest.strip()
    # a continuation on a new line (a code fence, a list) keeps its line break
    joint = "\n" if rest[:1] == "\n" or opening.endswith("```") else " "
    rest = rest.strip()
    return f"{opening}{'' if rest[:1] in ',.:;' else joint}{rest}".strip()


def fit_question(
    count: Callable[[str], int],
    settings: Settings,
    question: str,
    snippets: Sequence[Any],
    max_tokens: int,
) -> str:
    """The question cut to what the context window leaves beside the snippets and the
    answer (a pasted log or file as a question is answered, not refused)."""
    prompt, _ = build_ask_document("", snippets, max_snippet_chars=settings.ask.context_chars)
    room = settings.model.context_length - max_tokens - _ASK_SLACK
    budget = max(_MIN_QUESTION_TOKENS, room - count(prompt))
    return clip_to_tokens(question, budget, count)


def answer_by_endpoint(
    client: EndpointClient,
    settings: Settings,
    count: Callable[[str], int],
    question: str,
    snippets: Sequence[Any],
    max_tokens: int,
    cancel: threading.Event,
    on_text: OnText = ignore_text,
) -> str:
    """The answer from an OpenAI-compatible endpoint's /chat/completions, asked with the same
    messages as a chat model in-process and checked the same way; EndpointError when it fails."""
    question = fit_question(count, settings, question, snippets, max_tokens)
    fields = {
        "messages": build_ask_messages(
            question, snippets, max_snippet_chars=settings.ask.context_chars
        ),
        "max_tokens": max_tokens,
        "temperature": settings.completion.temperature,
    }
    deadline = time.monotonic() + settings.ask.time_cap_ms / 1000
    text = ""
    finish: str | None = None
    with contextlib.closing(client.chat(fields).pieces(cancel, deadline)) as pieces:
        for piece in pieces:
            text += piece.text
            finish = piece.finish_reason or finish
            on_text(text.strip())
    if finish is None and (cancel.is_set() or time.monotonic() >= deadline):
        finish = "time"
    return checked(question, text, finish, snippets)
