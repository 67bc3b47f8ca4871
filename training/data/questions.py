"""Questions about a repository answered from its own code, without a teacher.

The kinds users ask — what does X do, where is X defined (and used), how do I call X, which
function does Y, what does this setting do — asked about the definitions that
server/ask/definitions.py reads from each file, in the server's question prompt with retrieved
context (data.qa). Answers are
composed from the code only, in one fixed layout a small model can learn:

    `parse_pin` (training/eval/corpora.py:49): Parse one pinned requirement line.
    ```python
    def parse_pin(text: str) -> Pin:
        name, _, version = text.partition("==")
    ```

a lead sentence that names the subject and cites ``path:line`` (its defining line), then up to
`QUOTE_LINES` quoted lines from that line on, then (where-questions) the uses the context shows.
The summary is the docstring's or leading comment's first sentence; without one the lead says
only what the signature says. A `train.question_abstain_share` of the questions teach abstention:
half ask about a name the repository does not define (a real name perturbed), half leave the
definition out of the context; their answer is `ABSTAIN` and nothing more.

Questions follow the file split like completion examples: a question about a test file is a test
example, and its context comes only from files that split may see.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from repotune.server.ask.definitions import (
    QUOTE_LINES,
    Definition,
    cite,
    definitions,
    lead,
    quote_code,
    snippet_of,
)
from repotune.server.ask.grounding import ABSTAIN, ABSTAIN_TASK, ABSTENTION_MARK
from repotune.server.completion.context import ContextSnippet
from repotune.training.data.qa import AskPrompt, QAContext, assemble, qa_row, shown
from repotune.training.data.spans import Span, example_id
from repotune.training.data.splits import allowed_context

KINDS = ("what", "where", "call", "which", "setting")
# The abstentions the server checks answers against: one wording for training and serving.
ABSTAIN_MARK = ABSTENTION_MARK
MAX_USES = 3
ANSWER_ROOM = 256  # tokens kept for the answer when sizing the context
MIN_CONTEXT_CHARS = 400

QUESTIONS: dict[str, tuple[str, ...]] = {
    "what": (
        "What does `{name}` do?",
        "What is `{name}` for?",
        "Explain `{name}`.",
        "What is the purpose of `{name}`?",
    ),
    "where": (
        "Where is `{name}` defined?",
        "Where is `{name}` defined and used?",
        "Which file defines `{name}`?",
        "Where is `{name}` used?",
    ),
    "call": (
        "How do I call `{name}`?",
        "What arguments does `{name}` take?",
        "What is the signature of `{name}`?",
    ),
    "which": (
        'Which {thing} does this: "{summary}"',
        'Where is the code that does this: "{summary}"',
        'What should I use for this: "{summary}"',
    ),
    "setting": (
        "What does the setting `{name}` do?",
        "What is `{name}` set to?",
        "What does `{name}` control?",
    ),
}
# Word swaps that turn a real name into a plausible one the repository does not define.
SWAPS = {
    "get": "fetch",
    "load": "read",
    "read": "load",
    "parse": "decode",
    "build": "create",
    "make": "build",
    "create": "make",
    "run": "execute",
    "write": "save",
    "save": "write",
    "start": "begin",
    "stop": "halt",
    "add": "append",
    "remove": "delete",
    "delete": "remove",
    "config": "settings",
    "settings": "config",
    "file": "path",
    "path": "file",
    "index": "catalog",
    "text": "string",
    "name": "label",
    "count": "total",
    "max": "limit",
    "min": "floor",
}


@dataclass(frozen=True)
class Question:
    """One question to ask about a definition (or, `fake` set, about a name that is not there)."""

    definition: Definition
    kind: str
    variant: int
    fake: str | None = None  # unanswerable: the perturbed name asked about
    hide_oracle: bool = False  # answerable in the repository, but not from this context


def kinds_for(definition: Definition) -> list[str]:
    if definition.kind == "setting":
        return ["setting", "where"]
    kinds = ["what", "where"]
    if definition.kind != "class":
        kinds.append("call")
    if definition.summary and len(definition.summary.split()) >= 4:
        kinds.append("which")
    return kinds


def short_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


# --------------------------------------------------------------------------- names


def repository_names(files: Sequence[Any]) -> set[str]:
    """Every identifier-like word of every file (a made-up name must be none of them)."""
    names: set[str] = set()
    for source in files:
        names.update(re.findall(r"[A-Za-z_$][A-Za-z0-9_$]*", source.text))
    return names


def _perturbations(name: str) -> list[str]:
    if "_" in name.strip("_"):
        parts = name.split("_")
        swapped = [SWAPS.get(p, p) for p in parts]
        out = ["_".join(swapped)] if swapped != parts else []
        if len(parts) >= 2:
            out.append("_".join(parts[::-1]))
        return [*out, name + "s", "get_" + name, name + "_all"]
    words = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)
    if len(words) >= 2 and name[:1].isupper():
        swapped = [SWAPS.get(w.lower(), w.lower()).capitalize() for w in words]
        out = ["".join(swapped)] if "".join(swapped) != name else []
        return [*out, name + "Manager", "Default" + name, name + "Base"]
    if len(words) >= 2:  # camelCase
        first = SWAPS.get(words[0], words[0])
        return [first + "".join(w.capitalize() for w in words[1:]), name + "s", "get" + name]
    return [SWAPS.get(name, name + "s"), name + "_all", "get_" + name]


def fake_name(definition: Definition, taken: set[str], rng: random.Random) -> str | None:
    """A plausible neighbour of a real name that no file of the repository contains."""
    short = short_name(definition.name)
    candidates = [c for c in _perturbations(short) if c != short and c not in taken]
    if not candidates:
        return None
    chosen = rng.choice(candidates)
    owner = definition.name[: -len(short) - 1] if "." in definition.name else ""
    return f"{owner}.{chosen}" if owner else chosen


# --------------------------------------------------------------------------- answers


def quote(source: Any, definition: Definition, lines: int = QUOTE_LINES) -> str:
    """The definition's first non-blank lines, dedented and fenced (never a prompt stop)."""
    return quote_code(snippet_of(source, definition).text, definition.path, lines)


def call_form(definition: Definition) -> str:
    short = short_name(definition.name)
    required = [p for p, needed in definition.params if needed]
    call = f"{short}({', '.join(required)})"
    return f".{call}" if definition.kind == "method" else call


def uses(definition: Definition, snippets: Sequence[ContextSnippet], prompt: str) -> list[str]:
    """`path:line` of lines in the shown context that use the name (not define or import it)."""
    short = short_name(definition.name)
    pattern = re.compile(
        rf"\.{re.escape(short)}\b" if definition.kind == "method" else rf"\b{re.escape(short)}\b"
    )
    defining = re.compile(rf"\b(?:def|class|function|fn|func)\s+{re.escape(short)}\b")
    found: list[str] = []
    for snippet in snippets:
        for offset, line in enumerate(snippet.text.splitlines()):
            number = snippet.start_line + offset
            if (
                snippet.path == definition.path
                and definition.start_line <= number <= definition.end_line
            ):
                continue
            stripped = line.strip()
            if not pattern.search(line) or defining.search(line) or line not in prompt:
                continue
            if stripped.startswith(("import ", "from ", "#", "//")):
                continue
            cited = f"{snippet.path}:{number}"
            if cited not in found:
                found.append(cited)
            if len(found) >= MAX_USES:
                return found
    return found


def answer_for(
    question: Question, source: Any, snippets: Sequence[ContextSnippet], prompt: str
) -> str:
    """The reference answer in the fixed layout (or the abstention) for what the prompt shows."""
    d = question.definition
    if question.fake is not None:
        return ABSTAIN.format(name=question.fake)
    if question.hide_oracle:
        return ABSTAIN_TASK if question.kind == "which" else ABSTAIN.format(name=d.name)
    if question.kind == "where":
        lines = [f"`{d.name}` is defined at {cite(d)}.", quote(source, d, 2)]
        places = uses(
            d, [s for s in snippets if s.path != d.path or s.start_line != d.start_line], prompt
        )
        if places:
            lines.append("It is used at " + ", ".join(places) + ".")
        elif "used" in QUESTIONS["where"][question.variant]:
            lines.append("No use of it appears in the code shown.")
        return "\n".join(line for line in lines if line)
    if question.kind == "call":
        lines = [f"Call `{d.name}` ({cite(d)}) as `{call_form(d)}`."]
        optional = [f"`{p}`" for p, needed in d.params if not needed]
        if optional:
            lines.append("Optional: " + ", ".join(optional) + ".")
        lines.append(quote(source, d, 3))
        return "\n".join(line for line in lines if line)
    if question.kind == "setting":
        summary = d.summary or ""
        first = f"`{d.name}` ({cite(d)}) is set to `{d.value}`: {summary}"
        return "\n".join(line for line in (first, quote(source, d, 3)) if line)
    return "\n".join(line for line in (lead(d), quote(source, d)) if line)  # what, which


def question_text(question: Question) -> str:
    d = question.definition
    template = QUESTIONS[question.kind][question.variant]
    thing = {"class": "class", "method": "method"}.get(d.kind, "function")
    return template.format(name=question.fake or d.name, summary=d.summary or "", thing=thing)


# --------------------------------------------------------------------------- choosing


def plan(
    source: Any, count: int, abstain_share: float, taken: set[str], rng: random.Random
) -> list[Question]:
    """Up to `count` questions about one file's definitions, the kinds taken in turn."""
    found = [
        d
        for d in definitions(source, with_settings=True)
        if d.name and not short_name(d.name).startswith("__")  # nobody asks about __init__
    ]
    if not found or count <= 0:
        return []
    summaries = [d.summary for d in found if d.summary]
    rng.shuffle(found)
    pairs = []
    for d in found:
        kinds = kinds_for(d)
        if d.summary and summaries.count(d.summary) > 1 and "which" in kinds:
            kinds.remove("which")  # two definitions with one docstring: "which" is ambiguous
        pairs.append((d, kinds))
    chosen: list[Question] = []
    turn = rng.randrange(len(KINDS))
    for d, kinds in (pair for _ in range(len(KINDS)) for pair in pairs):
        if len(chosen) >= count:
            break
        wanted = KINDS[turn % len(KINDS)]
        kind = wanted if wanted in kinds else rng.choice(kinds)
        turn += 1
        if any(q.definition == d and q.kind == kind for q in chosen):
            continue
        variant = rng.randrange(len(QUESTIONS[kind]))
        roll = rng.random()
        if roll < abstain_share / 2 and kind != "which":
            fake = fake_name(d, taken, rng)
            if fake is not None:
                chosen.append(Question(d, kind, variant, fake=fake))
                continue
        chosen.append(Question(d, kind, variant, hide_oracle=roll < abstain_share))
    return chosen


def _defines(definition: Definition) -> Any:
    """A test for snippets that show the definition (left out when the oracle is hidden)."""
    short = re.escape(short_name(definition.name))
    pattern = re.compile(
        rf"(?:\b(?:def|class|function|fn|func|interface|struct|enum|const|let|var)\s+{short}\b)"
        rf"|(?:^\s*{short}\s*(?::[^=\n]*)?=)",
        re.M,
    )

    def hide(snippet: ContextSnippet) -> bool:
        if snippet.path == definition.path and not (
            snippet.last_line < definition.start_line or snippet.start_line > definition.end_line
        ):
            return True
        return bool(pattern.search(snippet.text))

    return hide


# --------------------------------------------------------------------------- examples


def question_rows(
    builder: Any, ask: AskPrompt, source: Any, questions: Sequence[Question]
) -> list[dict[str, Any]]:
    """One ``qa`` row per question, in the server's question prompt, within the token budget."""

    allowed = allowed_context(source.split, builder.files)
    rows = []
    for number, question in enumerate(questions):
        d = question.definition
        text = question_text(question)
        oracle = None if question.fake or question.hide_oracle else snippet_of(source, d)
        mode = "retrieved"
        if oracle is None and question.fake is None:
            mode = "oracle_removed"
        hide = _defines(d) if question.hide_oracle else None
        context = assemble(builder, text, source.path, oracle, allowed, "retrieved", hide)
        context.mode = mode if context.snippets else "none"
        row = _fit(builder, ask, source, question, text, context)
        if row is None:
            continue
        span = Span("qa", f"question_{question.kind}", d.start, d.end)
        row["id"] = example_id(source.path, span) + f"-q{number}"
        rows.append(row)
    return rows


def _fit(
    builder: Any,
    ask: AskPrompt,
    source: Any,
    question: Question,
    text: str,
    context: QAContext,
) -> dict[str, Any] | None:
    """The row with as much context as `ask.context_chars` and `train.max_seq_tokens` allow."""
    settings = builder.settings
    limit = settings.train.max_seq_tokens
    chars = min(settings.ask.context_chars, max(MIN_CONTEXT_CHARS, (limit - ANSWER_ROOM) * 3))
    d = question.definition
    while True:
        prompt = ask.build(text, context.snippets, chars)
        answer = answer_for(question, source, shown(context.snippets, prompt), prompt)
        row = qa_row(
            builder,
            ask,
            row_id="",
            source=source,
            span=f"question_{question.kind}",
            start=d.start,
            end=d.end,
            question=text,
            answer=answer,
            context=context,
            chars=chars,
            extra={
                "question_kind": question.kind,
                "answerable": question.fake is None and not question.hide_oracle,
                "subject": {
                    "name": question.fake or d.name,
                    "path": None if question.fake else d.path,
                    "start_line": None if question.fake else d.start_line,
                    "end_line": None if question.fake else d.end_line,
                },
            },
        )
        if row["prompt_tokens"] + row["completion_tokens"] <= limit:
            return row
        if chars <= MIN_CONTEXT_CHARS:
            return None
        chars = max(MIN_CONTEXT_CHARS, int(chars * 0.7))


def question_count(made: int, share: float, rng: random.Random) -> int:
    """Questions for a file with `made` completion examples, so questions are `share` of all."""
    if share <= 0:
        return 0
    wanted = max(made, 1) * share / (1.0 - share)
    whole = int(wanted)
    return whole + (1 if rng.random() < wanted - whole else 0)
