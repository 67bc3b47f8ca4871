"""Question tasks for `repotune eval`: questions about the held-out test files, asked the way the
server asks them, scored for citations, similarity to the reference answer and abstention.

Tasks are made by the dataset's own generator (data.questions) from test-split files only, so no
task was seen in training: answerable ones (what / where / how to call / which function /
setting) with the reference answer composed from the code, and unanswerable ones about names
the repository does not define (reference: the abstention). Each is answered like `repotune ask`:
the question retrieves `retrieval.top_k` chunks from the index of the whole repository (the
question's subject is findable, as it is for a user) and `Engine.ask` answers within
`ask.max_tokens` / `ask.time_cap_ms`.

Metrics per task (a condition's figure is the mean over the tasks it applies to):
- citation: answerable; the answer cites the subject's file with a line inside its definition
  (``path:N`` or ``path:N-M`` overlapping the defining span); citation_file: the file, any line;
- cosine: the embedder's cosine of answer and reference; rouge_l: ROUGE-L F1 over words;
- abstained: the answer says the indexed code does not answer; on unanswerable tasks that is
  the abstention rate, on answerable ones the false abstention rate;
- latency of the whole answer (ms).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from repotune.server.ask.grounding import without_also_defined
from repotune.training.eval.metrics import lcs_length, mean, paired_bootstrap, percentile

# The trained phrase, and what an untrained model says when it declines.
ABSTENTION = re.compile(
    r"indexed code does not|does not (?:define|appear|exist|contain|answer)|"
    r"(?:is )?not (?:defined|found|present|shown) in|no (?:definition|mention) of|cannot find",
    re.I,
)
CITED = re.compile(r"([\w./\\-]+\.[A-Za-z0-9]+):(\d+)(?:-(\d+))?")
WORD = re.compile(r"\w+|[^\w\s]")
METRICS = ("citation", "citation_file", "cosine", "rouge_l", "abstained")


@dataclass
class QuestionTask:
    id: str
    kind: str  # what | where | call | which | setting
    path: str  # the file the question was made from (a test file)
    question: str
    reference: str
    answerable: bool
    subject: dict[str, Any]  # name, path, start_line, end_line (path/lines None: made up)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Answered:
    text: str
    latency_ms: float
    snippets: int
    adapter: str | None = None  # the adapter file the answering engine loaded (None: bare base)


# --------------------------------------------------------------------------- tasks


def question_tasks(
    files: Sequence[Any], count: int, seed: int, index: Any, settings: Any
) -> list[QuestionTask]:
    """`count` questions about the test files (about one in five unanswerable), with reference
    answers composed from the code and the context the question retrieves."""
    from repotune.server.ask.prompts import build_ask_document
    from repotune.training.data.questions import (
        Question,
        answer_for,
        plan,
        question_text,
        repository_names,
    )

    test_files = [f for f in files if f.split == "test"]
    if count <= 0 or not test_files:
        return []
    taken = repository_names(files)
    rng = random.Random(f"{seed}:questions")
    per_file = max(1, -(-count // len(test_files)) + 1)
    pool: list[tuple[Any, Question]] = []
    for source in sorted(test_files, key=lambda f: f.path):
        file_rng = random.Random(f"{seed}:questions:{source.path}")
        for question in plan(source, per_file, 0.4, taken, file_rng):
            if question.hide_oracle:  # a real index: the definition is there to be found
                question = Question(question.definition, question.kind, question.variant)
            pool.append((source, question))
    rng.shuffle(pool)
    tasks = []
    for source, question in pool[:count]:
        text = question_text(question)
        snippets = ask_context(index, text, settings)
        prompt, _stops = build_ask_document(
            text, snippets, max_snippet_chars=settings.ask.context_chars
        )
        reference = answer_for(question, source, snippets, prompt)
        d = question.definition
        key = f"{d.path}:{d.start_line}:{question.kind}:{question.fake or ''}"
        tasks.append(
            QuestionTask(
                id=_task_id(key),
                kind=question.kind,
                path=source.path,
                question=text,
                reference=reference,
                answerable=question.fake is None,
                subject={
                    "name": question.fake or d.name,
                    "path": None if question.fake else d.path,
                    "start_line": None if question.fake else d.start_line,
                    "end_line": None if question.fake else d.end_line,
                },
            )
        )
    return tasks


def _task_id(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:16]


def ask_context(index: Any, question: str, settings: Any) -> list[Any]:
    """What the server's ask retrieves for a question (`Assistant.ask`: top_k by score)."""
    from repotune.server.completion.context import as_snippets

    return as_snippets(index.search_question(question, max(settings.retrieval.top_k, 1)))


# --------------------------------------------------------------------------- answering


def subject_retrieved(
    tasks: Sequence[QuestionTask], contexts: Sequence[Sequence[Any]]
) -> dict[str, Any]:
    """Share of answerable questions whose retrieved snippets hold a line of the subject's
    definition, in all and per kind: retrieval alone, the same under every condition."""
    hits: dict[str, list[float]] = {}
    for task, snippets in zip(tasks, contexts, strict=True):
        if not task.answerable:
            continue
        subject = task.subject
        first, last = subject["start_line"], subject["end_line"]
        found = any(
            _same_file(s.path, subject["path"]) and s.start_line <= last and s.last_line >= first
            for s in snippets
        )
        hits.setdefault(task.kind, []).append(float(found))
    every = [hit for values in hits.values() for hit in values]
    return {
        "all": mean(every),
        "by_kind": {kind: {"n": len(v), "share": mean(v)} for kind, v in sorted(hits.items())},
    }


def answer_all(
    settings: Any,
    adapter: str | None,
    tasks: Sequence[QuestionTask],
    contexts: Sequence[Sequence[Any]],
    progress: bool,
    desc: str,
) -> list[Answered]:
    """Answer every question with a fresh engine, as `repotune ask` does."""
    from repotune.server.completion.engine import CompletionEngine
    from repotune.server.config import settings_with
    from tqdm import tqdm

    engine = CompletionEngine(settings_with(settings, {"model": {"adapter": adapter}}, "eval"))
    try:
        if not engine.wait_ready(600):
            from repotune.training.eval.corpora import EvalError

            raise EvalError(engine.load_error or "the generator did not load in time")
        loaded_adapter = engine.status().get("adapter")  # what answered, for the report
        answers = []
        for task, snippets in tqdm(
            list(zip(tasks, contexts, strict=True)),
            desc=desc,
            unit="question",
            disable=not progress,
        ):
            started = time.perf_counter()
            text = engine.ask(task.question, list(snippets))
            answers.append(
                Answered(
                    text,
                    (time.perf_counter() - started) * 1000,
                    len(snippets),
                    loaded_adapter,
                )
            )
        return answers
    finally:
        engine.close()


# --------------------------------------------------------------------------- scoring


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over words and punctuation (LCS of the token sequences)."""
    a, b = WORD.findall(prediction.lower()), WORD.findall(reference.lower())
    if not a or not b:
        return float(a == b)
    # One character per distinct token, so the bit-parallel character LCS counts tokens.
    codes: dict[str, str] = {}
    for token in (*a, *b):
        codes.setdefault(token, chr(0x10000 + len(codes)))
    lcs = lcs_length("".join(codes[t] for t in a), "".join(codes[t] for t in b))
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def abstains(answer: str) -> bool:
    return bool(ABSTENTION.search(answer))


def citations(answer: str) -> list[tuple[str, int, int]]:
    """(path, first line, last line) of every ``path:N`` / ``path:N-M`` in an answer."""
    found = []
    for path, start, end in CITED.findall(answer):
        first = int(start)
        found.append((path.replace("\\", "/").lstrip("./"), first, int(end) if end else first))
    return found


def _same_file(cited: str, path: str) -> bool:
    return cited == path or path.endswith("/" + cited)


def cites(answer: str, subject: dict[str, Any]) -> tuple[bool, bool]:
    """(cites a line of the subject's definition, cites its file at all). The note listing a
    name's other definitions does not count: the answer is about the one it opens with."""
    path = subject.get("path")
    if not path:
        return False, False
    line_hit = file_hit = False
    for cited, first, last in citations(without_also_defined(answer)):
        if _same_file(cited, path):
            file_hit = True
            if not (last < subject["start_line"] or first > subject["end_line"]):
                line_hit = True
    return line_hit, file_hit


def score_answers(
    tasks: Sequence[QuestionTask], answers: Sequence[Answered], embedder: Any
) -> list[dict[str, float | None]]:
    """Per-task scores; a metric that does not apply to a task is None."""
    vectors = None
    if embedder is not None and tasks:
        texts = [a.text or "(empty)" for a in answers] + [t.reference for t in tasks]
        vectors = embedder.embed(texts)
    scores: list[dict[str, float | None]] = []
    for i, (task, answer) in enumerate(zip(tasks, answers, strict=True)):
        line_hit, file_hit = cites(answer.text, task.subject)
        cosine = None
        if vectors is not None:
            cosine = float(vectors[i] @ vectors[len(tasks) + i])
        scores.append(
            {
                "citation": float(line_hit) if task.answerable else None,
                "citation_file": float(file_hit) if task.answerable else None,
                "cosine": cosine,
                "rouge_l": rouge_l(answer.text, task.reference),
                "abstained": float(abstains(answer.text)),
            }
        )
    return scores


def _values(
    scores: Sequence[dict[str, float | None]], metric: str, members: Sequence[int]
) -> list[float]:
    return [v for i in members if (v := scores[i][metric]) is not None]


def summarize_questions(
    tasks: Sequence[QuestionTask],
    scores: Sequence[dict[str, float | None]],
    answers: Sequence[Answered],
) -> dict[str, Any]:
    answerable = [i for i, t in enumerate(tasks) if t.answerable]
    unanswerable = [i for i, t in enumerate(tasks) if not t.answerable]
    everything = list(range(len(tasks)))
    latencies = [a.latency_ms for a in answers]
    kinds = {t.kind for t in tasks}
    return {
        "n": len(tasks),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "citation": mean(_values(scores, "citation", answerable)),
        "citation_file": mean(_values(scores, "citation_file", answerable)),
        "cosine": mean(_values(scores, "cosine", answerable)),
        "rouge_l": mean(_values(scores, "rouge_l", answerable)),
        "abstention": mean(_values(scores, "abstained", unanswerable)),
        "false_abstention": mean(_values(scores, "abstained", answerable)),
        "cosine_all": mean(_values(scores, "cosine", everything)),
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        "adapter": answers[0].adapter if answers else None,
        "by_kind": {
            kind: {
                "n": sum(t.kind == kind for t in tasks),
                "citation": mean(
                    _values(scores, "citation", [i for i in answerable if tasks[i].kind == kind])
                ),
            }
            for kind in sorted(kinds)
        },
    }


def compare_questions(
    tasks: Sequence[QuestionTask],
    per_condition: dict[str, list[dict[str, float | None]]],
    pairs: Sequence[tuple[str, str]],
    resamples: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Paired bootstrap intervals of the differences, on the tasks each metric applies to."""
    answerable = [i for i, t in enumerate(tasks) if t.answerable]
    unanswerable = [i for i, t in enumerate(tasks) if not t.answerable]
    plan = {
        "citation": ("citation", answerable),
        "cosine": ("cosine", answerable),
        "rouge_l": ("rouge_l", answerable),
        "abstention": ("abstained", unanswerable),
        "false_abstention": ("abstained", answerable),
    }
    out = []
    for a, b in pairs:
        if a not in per_condition or b not in per_condition:
            continue
        intervals = {}
        for name, (metric, members) in plan.items():
            both = [
                i
                for i in members
                if per_condition[a][i][metric] is not None
                and per_condition[b][i][metric] is not None
            ]
            intervals[name] = paired_bootstrap(
                [float(per_condition[a][i][metric]) for i in both],  # type: ignore[arg-type]
                [float(per_condition[b][i][metric]) for i in both],  # type: ignore[arg-type]
                resamples=resamples,
                seed=seed,
            ).to_json()
        out.append({"a": a, "b": b, "intervals": intervals})
    return out


def evaluate_questions(
    prepared: Any,
    settings: Any,
    conditions: Sequence[tuple[str, str | None]],
    count: int,
    config: Any,
    embedder: Any,
    index: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Question tasks of one repository under each (condition, adapter); the result section and
    the prediction rows. `index` is the repository's complete index (closed by the caller)."""
    tasks = question_tasks(prepared.files, count, config.seed, index, settings)
    contexts = [ask_context(index, t.question, settings) for t in tasks]
    per_condition: dict[str, list[dict[str, float | None]]] = {}
    summaries: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    label = prepared.repo.label
    for condition, adapter in conditions if tasks else []:
        answers = answer_all(
            settings, adapter, tasks, contexts, config.progress, f"{label} {condition} questions"
        )
        scores = score_answers(tasks, answers, embedder)
        per_condition[condition] = scores
        summaries[condition] = summarize_questions(tasks, scores, answers)
        for task, answer, task_scores in zip(tasks, answers, scores, strict=True):
            rows.append(
                {
                    "repo": label,
                    "condition": condition,
                    "task": task.id,
                    "kind": "question",
                    "prediction": answer.text,
                    "latency_ms": answer.latency_ms,
                    **task_scores,
                }
            )
    from repotune.training.eval.config import COMPARISONS
    from repotune.training.eval.in_view import evaluate_in_view

    section = {
        "task_counts": {
            "answerable": sum(t.answerable for t in tasks),
            "unanswerable": sum(not t.answerable for t in tasks),
        },
        "tasks": [t.to_json() for t in tasks],
        "snippets_per_task": mean([len(c) for c in contexts]),
        "subject_retrieved": subject_retrieved(tasks, contexts),
        "conditions": summaries,
        "comparisons": compare_questions(
            tasks, per_condition, COMPARISONS, config.bootstrap, config.seed
        ),
        "in_view": evaluate_in_view(
            tasks, per_condition, prepared.files, index, settings, conditions, embedder, config
        ),
    }
    return section, rows
