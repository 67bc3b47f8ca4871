"""Questions asked from the code in view: every answerable "what does X do?" question asked
again as an editor user asks it, "What does this function do?" with the cursor on X's first
line (server/ask/focus.py), and scored against the same reference. Paired with the named
question, it says what the editor's way of asking gets compared with naming the code."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repotune.server.ask.focus import CodeInView, in_view_snippets
from repotune.server.ask.sources import Source, question_sources
from repotune.training.eval.metrics import mean, paired_bootstrap
from repotune.training.eval.questions import QuestionTask, answer_all, score_answers

# The folder the evaluation's single index stands for (citations are paths relative to it).
_ROOT = Path("/")
_COMPARED = ("citation", "rouge_l", "cosine")


def in_view_twins(
    tasks: Sequence[QuestionTask], files: Sequence[Any]
) -> list[tuple[int, QuestionTask, CodeInView]]:
    """(index of the named task, its twin asked from the cursor, the view) for each answerable
    "what" task: the same subject and reference, the question "What does this <thing> do?"."""
    texts = {f.path: f.text for f in files}
    twins = []
    for i, task in enumerate(tasks):
        subject = task.subject
        if task.kind != "what" or not task.answerable or subject["path"] not in texts:
            continue
        text = texts[subject["path"]]
        first_line = text.splitlines()[subject["start_line"] - 1]
        thing = "method" if "." in subject["name"] else "function"
        thing = "class" if "class " in first_line else thing
        question = f"What does this {thing} do?"
        twin = dataclasses.replace(
            task, id=f"{task.id}-in-view", kind="what-in-view", question=question
        )
        view = CodeInView(Path(subject["path"]), text, subject["start_line"])
        twins.append((i, twin, view))
    return twins


def in_view_context(index: Any, task: QuestionTask, view: CodeInView, settings: Any) -> list[Any]:
    """What the server's ask is given for a question asked from `view` (Assistant.ask)."""
    shown = in_view_snippets(view, str(view.path), task.question)
    k = settings.retrieval.top_k or 5
    sources = question_sources(
        [(_ROOT, index, k)],
        task.question,
        settings.retrieval.top_k,
        [Source(_ROOT, snippet) for snippet in shown],
    )
    return [source.snippet for source in sources]


def evaluate_in_view(
    tasks: Sequence[QuestionTask],
    named_scores: dict[str, list[dict[str, float | None]]],
    files: Sequence[Any],
    index: Any,
    settings: Any,
    conditions: Sequence[tuple[str, str | None]],
    embedder: Any,
    config: Any,
) -> dict[str, Any]:
    """Per condition: the twins' citation, ROUGE-L and cosine beside the named questions' on
    the same subjects, with paired intervals of (asked from the cursor − named)."""
    twins = in_view_twins(tasks, files)
    if not twins:
        return {"n": 0, "conditions": {}}
    twin_tasks = [twin for _, twin, _ in twins]
    contexts = [in_view_context(index, twin, view, settings) for _, twin, view in twins]
    out: dict[str, Any] = {"n": len(twins), "conditions": {}}
    for condition, adapter in conditions:
        if condition not in named_scores:
            continue
        desc = f"{condition} questions from the cursor"
        answers = answer_all(settings, adapter, twin_tasks, contexts, config.progress, desc)
        scores = score_answers(twin_tasks, answers, embedder)
        named = [named_scores[condition][i] for i, _, _ in twins]
        result: dict[str, Any] = {}
        for metric in _COMPARED:
            pairs = [
                (float(a[metric]), float(b[metric]))  # type: ignore[arg-type]
                for a, b in zip(scores, named, strict=True)
                if a[metric] is not None and b[metric] is not None
            ]
            interval = paired_bootstrap(
                [a for a, _ in pairs],
                [b for _, b in pairs],
                resamples=config.bootstrap,
                seed=config.seed,
            )
            result[metric] = {
                "in_view": mean([a for a, _ in pairs]),
                "named": mean([b for _, b in pairs]),
                "difference": interval.to_json(),
            }
        out["conditions"][condition] = result
    return out
