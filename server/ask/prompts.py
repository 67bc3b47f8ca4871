"""Question prompts: chat messages for chat models, a Q&A document for base models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from repotune.server.completion.context import as_snippets
from repotune.server.languages import fence_language

ASK_SYSTEM = (
    "You are RepoTune, an assistant for one code repository. Answer the question in a few lines "
    "from the code snippets of the repository below, and from nothing else. Name the code you "
    "rely on and cite where it is defined as path:line, e.g. `parse_pin` (src/pins.py:49), then "
    "quote the lines that matter in a fenced block. If the snippets do not answer the question, "
    "say only: The indexed code does not define `NAME`. (or: The indexed code does not answer "
    "this.) Never invent a function, argument or file."
)
ASK_DOCUMENT_HEADER = (
    "Code snippets from a repository, then a question about the code and a short answer. The "
    "answer cites where the code it names is defined (path:line), quotes the lines that matter, "
    'and says "The indexed code does not define ..." when the snippets do not answer it.'
)

# After the citation of the code the user has in view, so "this function" has a referent.
IN_VIEW_LABEL = " (the code in view)"


def _ask_context(snippets: Sequence[Any], max_snippet_chars: int) -> str:
    """Snippets as cited, fenced blocks, capped in total (a small model has a small context)."""
    parts: list[str] = []
    spent = 0
    for snippet in as_snippets(snippets):
        body = snippet.text.rstrip("\n")
        if spent + len(body) > max_snippet_chars and parts:
            break
        body = body[: max(0, max_snippet_chars - spent)]
        spent += len(body)
        label = f"{snippet.citation}{IN_VIEW_LABEL if snippet.in_view else ''}"
        parts.append(f"### {label}\n```{fence_language(snippet.path)}\n{body}\n```")
    return "\n\n".join(parts) if parts else "(no code was retrieved for this question)"


def build_ask_messages(
    question: str,
    snippets: Sequence[Any],
    *,
    max_snippet_chars: int = 6000,
    system: str = ASK_SYSTEM,
) -> list[dict[str, str]]:
    """Chat messages (system + user) for a question about the codebase, for chat models.

    Snippets are cited as ``path:start-end`` in headers so the answer can point at them.
    """
    context = _ask_context(snippets, max_snippet_chars)
    user = f"Code from the repository:\n\n{context}\n\nQuestion: {question.strip()}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# "\nAnswer:" too: a small model that has answered starts a second "Answer:" block of its own.
ASK_DOCUMENT_STOPS = ("\nQuestion:", "\nAnswer:", "\n### ", "\n```\n\n###", "\n\n\n", "<|rt_")


def build_ask_document(
    question: str, snippets: Sequence[Any], *, max_snippet_chars: int = 6000
) -> tuple[str, tuple[str, ...]]:
    """A plain-text Q&A document for base models without a chat template (the default Gemma 3
    270M is one): instructions in a chat turn are just echoed by such a model, while a document
    that ends in "Answer:" is continued as an answer. Returns (prompt, stop strings)."""
    context = _ask_context(snippets, max_snippet_chars)
    prompt = f"{ASK_DOCUMENT_HEADER}\n\n{context}\n\nQuestion: {question.strip()}\nAnswer:"
    return prompt, ASK_DOCUMENT_STOPS
