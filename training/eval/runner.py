"""`repotune eval`: does RAG fine-tuning beat the base model on a repository's own code?

One command fetches pinned repositories, fine-tunes (or reuses) an adapter per repository,
cuts completion tasks from the held-out test files of the training split, completes every task
under every condition with the server's own engine, and writes JSON, Markdown and a PNG chart.

Conditions (same tasks, same greedy decoding, same prompt budget):
  base            the bare base model (adapter "none"), no retrieved context
  base+ctx        the bare base model with retrieved context
  default         the shipped default adapter, no retrieved context
  default+ctx     the shipped default adapter with retrieved context
  repo+ctx        the repository's RAG fine-tune (trained from the default adapter) with context
  repo            the repository's fine-tune without context (not run unless asked for)
  other-repo+ctx  the fine-tune of a *different* repository, with context ("learned the format"
                  rather than "learned this repository")
  default+prev-ctx the default adapter with the *previous* task's snippets: a new place's first
                  suggestion under `completion.context_ring` (not run unless asked for)
(`ft+ctx`, `ft` and `other+ctx`, the names before the default adapter, still work.)
Per-repository fine-tunes start from `train.init_adapter` (the default adapter unless set), as
`repotune train finetune` does, and stop after `--train-steps` or `--time-budget` minutes.
`repotune eval humaneval ...` is the HumanEval infilling anchor (eval.humaneval).

Honesty rules built in:
- tasks come only from files the split puts in "test" (`data.splits.assign_splits`, training's
  settings); when the adapter was trained here, its dataset's split.json is checked against them;
- the whole repository is indexed, as a user would have it, but a task never sees its hole:
  chunks overlapping the answer (and the serving window around it) are dropped, exactly as the
  dataset builder does for its examples (`data.examples.Retriever.search`);
- retrieval runs once per task and every "+ctx" condition gets the same snippets;
- the engine's result cache, sticky context and prompt lookup are off and the time cap is at its
  maximum, so a completion depends on the prompt only (and figures repeat with the same seed);
- training prompts use the served budget: unless set, `train.max_seq_tokens` is derived from
  `completion.{context,prefix,suffix}_tokens` so the fine-tune sees prompts of the size it is
  evaluated (and served) with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repotune.server.bench.record import machine_facts, source_commit
from repotune.server.completion.repo_ngrams import RepositoryTexts
from repotune.server.config import Settings
from repotune.server.models import DEFAULT_REF, NO_ADAPTER
from repotune.training.data.examples import TokenCounter
from repotune.training.eval.adapters import (
    Prepared,
    ensure_adapter,
    open_index,
    prepare,
    training_info,
)
from repotune.training.eval.config import (
    CONDITIONS,
    LOAD_TIMEOUT_S,
    PREVIOUS_CONTEXT,
    EvalConfig,
    eval_settings,
    log_progress,
    validate,
    with_adapter,
)
from repotune.training.eval.contexts import (
    Retrieved,
    previous_contexts,
    retrieval_summary,
    retrieve_all,
)
from repotune.training.eval.corpora import EvalError
from repotune.training.eval.questions import evaluate_questions
from repotune.training.eval.report import chart, markdown
from repotune.training.eval.scoring import Prediction, compare, score, summarize, targets
from repotune.training.eval.tasks import KINDS, Task, extract_tasks


def run_condition(
    settings: Settings,
    adapter: str,
    tasks: Sequence[Task],
    contexts: Sequence[Retrieved] | None,
    progress: bool,
    desc: str,
    repository: RepositoryTexts | None = None,
) -> list[Prediction]:
    """Complete every task with a fresh engine (nothing carried over from another condition).
    `repository`: the texts of the repository's n-grams (with context, as the server has its
    index)."""
    from repotune.server.completion.engine import CompletionEngine
    from repotune.server.completion.request import CompletionRequest
    from tqdm import tqdm

    engine = CompletionEngine(with_adapter(settings, adapter))
    try:
        if not engine.wait_ready(LOAD_TIMEOUT_S):
            raise EvalError(engine.load_error or "the generator did not load in time")
        if repository is not None:
            engine.sync_repository(repository)  # the server builds it in the background
        predictions = []
        for i, task in enumerate(tqdm(tasks, desc=desc, unit="task", disable=not progress)):
            request = CompletionRequest(
                path=task.path,
                language=task.language,
                prefix=task.prefix,
                suffix=task.suffix,
                context=contexts[i].snippets if contexts is not None else (),
                repository=repository,
            )
            result = engine.complete(request)
            stats = engine.last_stats
            if result is not None:
                predictions.append(
                    Prediction(
                        result.text,
                        result.timings.get("total"),
                        result.generated_tokens,
                        result.prompt_tokens,
                        result.stop_reason,
                    )
                )
            else:
                timings = stats.get("timings", {})
                predictions.append(
                    Prediction(
                        "",
                        timings.get("total"),
                        stats.get("generated_tokens"),
                        stats.get("prompt_tokens"),
                        engine.last_reason,
                    )
                )
            engine.last_stats = {}
        return predictions
    finally:
        engine.close()


def run(config: EvalConfig) -> dict[str, Any]:
    """The whole evaluation; returns the result JSON (also written under `config.out`)."""
    from repotune.server.models import resolve_generator

    started = time.perf_counter()
    validate(config)
    settings = eval_settings(config.overrides)
    prepared, conditions, notes = setup(config, settings)
    generator = resolve_generator(settings.model.generator)
    count_tokens = TokenCounter(generator.path)
    embedder = None
    if config.counts.get("question", 0) > 0:
        from repotune.server.llm.embeddings import load_embedder

        embedder = load_embedder(settings.model.embedder, settings.model.threads)
    repos: dict[str, Any] = {}
    predictions: list[dict[str, Any]] = []
    for position, item in enumerate(prepared):
        other = prepared[(position + 1) % len(prepared)] if len(prepared) > 1 else None
        repos[item.repo.label] = evaluate_repo(
            item, other, settings, conditions, notes, config, count_tokens, embedder, predictions
        )
    if embedder is not None:
        embedder.close()
    result = {
        "config": run_config(config, settings, conditions, generator),
        "machine": machine_facts(),
        "repos": repos,
        "duration_s": round(time.perf_counter() - started, 1),
    }
    if config.out is not None:
        write_outputs(result, predictions, config.out)
        log_progress(config, f"results in {config.out}")
    return result


def setup(config: EvalConfig, settings: Settings) -> tuple[list[Prepared], list[str], list[str]]:
    """Fetch and split every repository and get its adapter: (repositories, conditions, notes)."""
    from repotune.server.models import resolve_adapter

    notes: list[str] = []
    conditions = list(config.conditions)
    prepared = []
    for spec in config.repos:
        log_progress(config, f"fetching {spec}")
        prepared.append(prepare(spec, settings))
    labels = [p.repo.label for p in prepared]
    if len(set(labels)) != len(labels):
        raise EvalError(f"two repositories share a label: {labels}")
    stray = set(config.adapters) - set(labels)
    if stray:
        raise EvalError(f"--adapter names unknown repositories {sorted(stray)}; known: {labels}")
    if "other-repo+ctx" in conditions and len(prepared) < 2:
        conditions.remove("other-repo+ctx")
        notes.append("other-repo+ctx needs a second repository (its adapter); left out")
    if any(CONDITIONS[c][0] == "default" for c in conditions):
        resolve_adapter(DEFAULT_REF)  # a missing default adapter fails here, before any work
    if any(CONDITIONS[c][0] in ("own", "other") for c in conditions):
        for item in prepared:
            label = item.repo.label
            if label in config.adapters:
                item.adapter = str(Path(config.adapters[label]).expanduser().resolve())
                item.adapter_info = {
                    "path": item.adapter,
                    "trained_here": False,
                    **training_info(Path(item.adapter)),
                }
            else:
                ensure_adapter(item, settings, config)
    return prepared, conditions, notes


def evaluate_repo(
    item: Prepared,
    other: Prepared | None,
    settings: Settings,
    conditions: Sequence[str],
    notes: Sequence[str],
    config: EvalConfig,
    count_tokens: Any,
    embedder: Any,
    predictions: list[dict[str, Any]],
) -> dict[str, Any]:
    """One repository's tasks under every condition: its section of the result."""
    label = item.repo.label
    counts = {k: config.counts.get(k, 0) for k in KINDS}
    max_tokens = settings.completion.max_tokens_block
    tasks = extract_tasks(
        item.files, counts, config.seed, count_tokens=count_tokens, max_target_tokens=max_tokens
    )
    questions = config.counts.get("question", 0)
    if not tasks and questions <= 0:
        raise EvalError(f"{label}: no tasks could be cut from its held-out test files")
    task_counts = {k: sum(t.kind == k for t in tasks) for k in KINDS}
    log_progress(config, f"{label}: {len(tasks)} tasks {task_counts}; retrieving context")
    contexts, repository = retrieve_all(item, tasks, settings)
    section_notes = list(notes)
    per_condition: dict[str, list[dict[str, float | None]]] = {}
    summaries: dict[str, Any] = {}
    for condition in conditions if tasks else []:
        adapter = condition_adapter(condition, item, other)
        log_progress(config, f"{label}: condition {condition} (adapter: {adapter})")
        with_context = CONDITIONS[condition][1]
        given = contexts
        if condition in PREVIOUS_CONTEXT:
            given, kept = previous_contexts(tasks, contexts, settings)
            section_notes.append(
                f"{condition}: {kept} of {len(tasks)} tasks kept the previous task's "
                "snippets (they held one of its top snippets); the others had their own"
            )
        preds = run_condition(
            settings,
            adapter,
            tasks,
            given if with_context else None,
            config.progress,
            f"{label} {condition}",
            repository if with_context else None,
        )
        scores = [score(t, p.text) for t, p in zip(tasks, preds, strict=True)]
        per_condition[condition] = scores
        summaries[condition] = summarize(tasks, scores, preds)
        predictions.extend(
            {"repo": label, "condition": condition, "task": task.id}
            | prediction_row(pred)
            | task_scores
            for task, pred, task_scores in zip(tasks, preds, scores, strict=True)
        )
    comparisons = compare(tasks, per_condition, config.bootstrap, config.seed)
    section = {
        "repo": item.repo.to_json(),
        "files": {
            s: sum(f.split == s for f in item.files) for s in ("train", "validation", "test")
        },
        "test_files": sorted(f.path for f in item.files if f.split == "test"),
        "adapter": item.adapter_info or None,
        "other_adapter": other.adapter if other is not None else None,
        "task_counts": task_counts,
        "tasks": [t.to_json() for t in tasks],
        "retrieval": retrieval_summary(contexts, settings),
        "conditions": summaries,
        "comparisons": comparisons,
        "targets": targets(comparisons),
        "notes": section_notes,
    }
    if questions > 0:
        section["questions"] = _questions(
            item, other, settings, conditions, config, embedder, predictions
        )
    return section


def condition_adapter(condition: str, item: Prepared, other: Prepared | None) -> str:
    """The adapter a condition completes with: none, the default, this or the other repository's."""
    which = CONDITIONS[condition][0]
    adapter = {"none": NO_ADAPTER, "default": DEFAULT_REF}.get(which)
    if which == "own":
        adapter = item.adapter
    elif which == "other" and other is not None:
        adapter = other.adapter
    if adapter is None:
        raise EvalError(f"{item.repo.label}: no adapter for condition {condition}")
    return adapter


def prediction_row(pred: Prediction) -> dict[str, Any]:
    return {
        "prediction": pred.text,
        "stop": pred.stop,
        "latency_ms": pred.latency_ms,
        "tokens": pred.tokens,
        "prompt_tokens": pred.prompt_tokens,
    }


def run_config(
    config: EvalConfig, settings: Settings, conditions: Sequence[str], generator: Any
) -> dict[str, Any]:
    """What the run was, as recorded in the result: command, counts, generator, settings."""
    return {
        "command": config.command,
        **source_commit(),
        "repos": config.repos,
        "conditions": list(conditions),
        "counts": {k: config.counts.get(k, 0) for k in KINDS}
        | {"question": config.counts.get("question", 0)},
        "seed": config.seed,
        "train_steps": config.train_steps,
        "time_budget_min": config.time_budget_min,
        "per_kind": config.per_kind,
        "bootstrap_resamples": config.bootstrap,
        "parity_check": config.parity,
        "generator": f"{settings.model.generator} ({generator.path.name}, "
        f"sha256 {generator.sha256[:12]})",
        "budget": [
            settings.completion.context_tokens,
            settings.completion.prefix_tokens,
            settings.completion.suffix_tokens,
        ],
        "settings": settings.model_dump(),
        "overrides": config.overrides,
    }


def _questions(
    item: Prepared,
    other: Prepared | None,
    settings: Settings,
    conditions: Sequence[str],
    config: EvalConfig,
    embedder: Any,
    predictions_out: list[dict[str, Any]],
) -> dict[str, Any]:
    """Question tasks under the conditions that retrieve context (a question always does)."""

    asked = []
    for condition in conditions:
        which, with_context = CONDITIONS[condition]
        if not with_context or condition in PREVIOUS_CONTEXT:
            continue  # a question always retrieves for itself
        if which == "other" and other is None:
            continue
        asked.append((condition, condition_adapter(condition, item, other)))
    log_progress(config, f"{item.repo.label}: question tasks under {[c for c, _ in asked]}")
    index = open_index(item.repo.root, settings)
    try:
        section, rows = evaluate_questions(
            item, settings, asked, config.counts["question"], config, embedder, index
        )
    finally:
        index.close()
    predictions_out.extend(rows)
    return section


def write_outputs(result: dict[str, Any], predictions: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2, default=str))
    # The same without the tasks' text (third-party code): small enough to commit and publish.
    summary = dict(result)
    summary["repos"] = {
        label: {k: _without_tasks(v) if k == "questions" else v for k, v in repo.items()}
        for label, repo in result["repos"].items()
    }
    for repo in summary["repos"].values():
        repo.pop("tasks", None)
    (out / "eval-summary.json").write_text(json.dumps(summary, indent=2, default=str))
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as handle:
        for row in predictions:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "eval.md").write_text(markdown(result))
    chart(result, out / "eval.png")


def _without_tasks(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k != "tasks"}


def quality(result: dict[str, Any]) -> dict[str, Any]:
    """The result without timings: what must repeat exactly with the same seed."""
    out: dict[str, Any] = {}
    for label, repo in result["repos"].items():
        conditions = {}
        for name, groups in repo["conditions"].items():
            conditions[name] = {
                kind: {k: v for k, v in scores.items() if k not in {"latency_ms"}}
                for kind, scores in groups.items()
            }
        out[label] = {
            "tasks": repo["tasks"],
            "conditions": conditions,
            "comparisons": repo["comparisons"],
            "recall_at_k": repo["retrieval"]["recall_at_k"],
        }
        if "questions" in repo:
            section = repo["questions"]
            out[label]["questions"] = {
                "tasks": section["tasks"],
                "conditions": {
                    name: {k: v for k, v in scores.items() if k != "latency_ms"}
                    for name, scores in section["conditions"].items()
                },
            }
    return out
