"""Question/answer examples in the server's question prompt: the prompt object, the retrieved
context (RAG form: the oracle definition, other hits, distractors) and the ``qa`` row.

One place for what the teacher's pairs and the code-derived questions share, so both are built
exactly as `Engine.ask` builds a question prompt (`prompts.build_ask_document` for base models,
the model's chat template over `prompts.build_ask_messages` otherwise).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from repotune.server.ask.prompts import ASK_DOCUMENT_STOPS, build_ask_document, build_ask_messages
from repotune.server.completion.context import ContextSnippet, as_snippet
from repotune.training.data.examples import context_hit

# The answer ends the way the served document prompt is stopped, so the model learns to stop.
DOCUMENT_END = ASK_DOCUMENT_STOPS[0]


@dataclass
class AskPrompt:
    """The server's question prompt for this generator: document (base model) or chat."""

    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""

    @classmethod
    def for_model(cls, llm: Any) -> AskPrompt:
        metadata = {str(k): str(v) for k, v in llm.metadata.items()}
        template = metadata.get("tokenizer.chat_template")
        if not template:
            return cls()

        def token_text(key: str) -> str:
            token_id = metadata.get(key)
            if token_id is None:
                return ""
            return llm.detokenize([int(token_id)], special=True).decode("utf-8", "replace")

        return cls(
            template,
            token_text("tokenizer.ggml.bos_token_id"),
            token_text("tokenizer.ggml.eos_token_id"),
        )

    @property
    def name(self) -> str:
        return "ask_chat" if self.chat_template else "ask_document"

    def build(self, question: str, snippets: Sequence[ContextSnippet], chars: int) -> str:
        if not self.chat_template:
            prompt, _stops = build_ask_document(question, snippets, max_snippet_chars=chars)
            return prompt
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        messages = build_ask_messages(question, snippets, max_snippet_chars=chars)
        formatter = Jinja2ChatFormatter(self.chat_template, self.eos_token, self.bos_token)
        prompt = formatter(messages=messages).prompt  # type: ignore[arg-type]
        # The engine's tokenizer adds BOS itself; the template's textual BOS would double it.
        return prompt.removeprefix(self.bos_token) if self.bos_token else prompt

    def completion(self, answer: str) -> str:
        if not self.chat_template:
            return " " + answer.strip() + DOCUMENT_END
        return answer.strip() + self.eos_token


@dataclass
class QAContext:
    """The snippets one question is shown, in prompt order, and what each one is."""

    snippets: list[ContextSnippet]
    helpful: list[ContextSnippet]  # oracle and retrieved hits (for context_hit)
    roles: dict[tuple[str, int], str] = field(default_factory=dict)
    mode: str = "retrieved"


def overlaps(snippet: ContextSnippet, oracle: ContextSnippet) -> bool:
    if snippet.path != oracle.path:
        return False
    return not (snippet.last_line < oracle.start_line or snippet.start_line > oracle.last_line)


def retrieve(builder: Any, question: str, allowed: set[str]) -> list[ContextSnippet]:
    """What the server's ask retrieves (`index.search(question, top_k)`), from allowed files."""
    settings = builder.settings
    hits = builder.retriever.index.search(question, settings.retrieval.top_k * 4 + 8)
    kept = [as_snippet(c) for c in hits if c.path in allowed]
    return kept[: max(1, settings.retrieval.top_k)]


def assemble(
    builder: Any,
    question: str,
    path: str,
    oracle: ContextSnippet | None,
    allowed: set[str],
    mode: str = "retrieved",
    hide: Callable[[ContextSnippet], bool] | None = None,
    rng: random.Random | None = None,
) -> QAContext:
    """Oracle (when given) first, then retrieved hits and distractors in random order.

    `mode` "distractors_only" keeps only distractors (RAFT); `hide` drops snippets a question
    must not see (e.g. anything that defines the subject when the oracle is left out).
    """
    rng = rng or builder.rng
    retrieved = retrieve(builder, question, allowed)
    if oracle is not None:
        retrieved = [s for s in retrieved if not overlaps(s, oracle)]
    if hide is not None:
        retrieved = [s for s in retrieved if not hide(s)]
    distractors = [
        as_snippet(c) for c in builder._distractors(path, allowed, {s.path for s in retrieved})
    ]
    seen = {(s.path, s.start_line) for s in retrieved}
    if oracle is not None:
        seen.add((oracle.path, oracle.start_line))
    # In a very small repository a distractor may repeat a hit: the prompt shows each chunk once.
    distractors = [s for s in distractors if (s.path, s.start_line) not in seen]
    if hide is not None:
        distractors = [s for s in distractors if not hide(s)]
    helpful = [*([oracle] if oracle is not None else []), *retrieved]
    if mode == "distractors_only":
        helpful = []
    # The oracle leads, as the best hit does in the server's ranked context (and so it survives
    # the character cap); other hits and distractors follow in random order.
    lead = helpful[:1] if oracle is not None else []
    rest = [*helpful[len(lead) :], *distractors]
    rng.shuffle(rest)
    roles = {(s.path, s.start_line): "retrieved" for s in retrieved}
    if oracle is not None:
        roles[(oracle.path, oracle.start_line)] = "oracle"
    for s in distractors:
        roles[(s.path, s.start_line)] = "distractor"
    snippets = [*lead, *rest]
    return QAContext(snippets, helpful, roles, mode if snippets else "none")


def shown(snippets: Sequence[ContextSnippet], prompt: str) -> list[ContextSnippet]:
    """The snippets that made it into the prompt (the character cap may drop the last ones)."""
    return [s for s in snippets if f"### {s.citation}" in prompt]


def qa_row(
    builder: Any,
    ask: AskPrompt,
    *,
    row_id: str,
    source: Any,
    span: str,
    start: int,
    end: int,
    question: str,
    answer: str,
    context: QAContext,
    chars: int,
    split: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``qa`` row (data.build's schema) for a question, its answer and its context."""

    prompt = ask.build(question, context.snippets, chars)
    completion = ask.completion(answer)
    visible = shown(context.snippets, prompt)
    return {
        "id": row_id,
        "kind": "qa",
        "span": span,
        "split": split or source.split,
        "path": source.path,
        "language": source.language,
        "start_byte": start,
        "end_byte": end,
        "format": ask.name,
        "prompt": prompt,
        "segments": [[prompt, False]],
        "completion": completion,
        "middle": answer,
        "question": question,
        "context": [
            {
                "path": s.path,
                "start_line": s.start_line,
                "end_line": s.last_line,
                "role": context.roles.get((s.path, s.start_line), "retrieved"),
            }
            for s in visible
        ],
        "context_mode": context.mode if visible else "none",
        "context_hit": context_hit(answer, question, context.helpful),
        "prompt_tokens": builder.count(prompt),
        "completion_tokens": builder.count(completion),
        **(extra or {}),
    }
