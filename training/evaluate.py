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
(`ft+ctx`, `ft` and `other+ctx`, the names before the default adapter, still work.)
Per-repository fine-tunes start from `train.init_adapter` (the default adapter unless set), as
`repotune train finetune` does, and stop after `--train-steps` or `--time-budget` minutes.
`repotune eval humaneval ...` is the HumanEval infilling anchor (training/humaneval.py).

Honesty rules built in:
- tasks come only from files the split puts in "test" (`dataset.assign_splits`, training's
  settings); when the adapter was trained here, its dataset's split.json is checked against them;
- the whole repository is indexed, as a user would have it, but a task never sees its hole:
  chunks overlapping the answer (and the serving window around it) are dropped, exactly as the
  dataset builder does for its examples (`dataset.Retriever.search`);
- retrieval runs once per task and every "+ctx" condition gets the same snippets;
- the engine's result cache, sticky context and prompt lookup are off and the time cap is at its
  maximum, so a completion depends on the prompt only (and figures repeat with the same seed);
- training prompts use the served budget: unless set, `train.max_seq_tokens` is derived from
  `completion.{context,prefix,suffix}_tokens` so the fine-tune sees prompts of the size it is
  evaluated (and served) with.
Adapters are cached in `cache_dir()/eval/adapters/` under a key of everything that shaped them.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import repotune
import typer
from repotune.server.bench.record import machine_facts
from repotune.server.cli.console import print_error
from repotune.server.config import (
    Settings,
    SettingsError,
    cache_dir,
    load_settings,
    parse_overrides,
    settings_with,
)
from repotune.server.models import DEFAULT_REF, NO_ADAPTER, ModelError
from repotune.training.base import TrainError
from repotune.training.corpora import EvalError, Repo, files_digest, resolve_repo
from repotune.training.eval_metrics import (
    edit_similarity,
    exact_match,
    first_line,
    hit,
    identifier_match,
    key_identifier,
    mcnemar_exact,
    mean,
    paired_bootstrap,
    percentile,
)
from repotune.training.eval_tasks import KINDS, Task, extract_tasks

# name -> (which adapter: none | default | own | other, with retrieved context)
CONDITIONS: dict[str, tuple[str, bool]] = {
    "base": ("none", False),
    "base+ctx": ("none", True),
    "default": ("default", False),
    "default+ctx": ("default", True),
    "repo+ctx": ("own", True),
    "repo": ("own", False),
    "other-repo+ctx": ("other", True),
}
ALIASES = {"ft+ctx": "repo+ctx", "ft": "repo", "other+ctx": "other-repo+ctx"}
DEFAULT_CONDITIONS = ["base", "base+ctx", "default", "default+ctx", "repo+ctx", "other-repo+ctx"]
repotune.use_default_openmp_spin()  # an evaluation run owns its cores (it trains, too)

COMPARISONS = [
    ("default+ctx", "base+ctx"),
    ("default+ctx", "base"),
    ("default+ctx", "default"),
    ("repo+ctx", "default+ctx"),
    ("repo+ctx", "other-repo+ctx"),
    ("repo+ctx", "base+ctx"),
    ("base+ctx", "base"),
    ("default", "base"),
    ("repo+ctx", "repo"),
]
SCORED = ("exact_match", "edit_similarity", "identifier_em", "identifier_f1", "hit")
TARGET_EM_GAIN = 0.15  # default+ctx over the better of base and base+ctx (issue #13)
# What evaluation fixes in the completion settings (see the module docstring).
EVAL_COMPLETION = {
    "cache_size": 0,
    "sticky_context": False,
    "prompt_lookup": False,
    "temperature": 0.0,
    "time_cap_ms": 120_000,
}
INDEX_TIMEOUT_S = 3600.0
LOAD_TIMEOUT_S = 600.0


@dataclass
class EvalConfig:
    repos: list[str]
    conditions: list[str] = field(default_factory=lambda: list(DEFAULT_CONDITIONS))
    counts: dict[str, int] = field(
        default_factory=lambda: {"line": 60, "span": 20, "api": 20, "question": 30}
    )
    seed: int = 1234
    train_steps: int = 40
    time_budget_min: float | None = None  # per fine-tune, on top of train_steps
    per_kind: int = 1
    adapters: dict[str, str] = field(default_factory=dict)
    parity: bool = True
    bootstrap: int = 2000
    overrides: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None
    progress: bool = True
    command: str = ""


@dataclass
class Prediction:
    text: str
    latency_ms: float | None
    tokens: int | None
    prompt_tokens: int | None
    stop: str


def _log(config: EvalConfig, message: str) -> None:
    if config.progress:
        print(f"[eval {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- settings


def eval_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the command line, with the evaluation's fixed completion settings and a
    training sequence length that matches the served prompt budget (unless given)."""
    try:
        settings = load_settings(None, overrides, overrides_source="command line")
        fixed: dict[str, Any] = {"completion": dict(EVAL_COMPLETION)}
        if "max_seq_tokens" not in overrides.get("train", {}):
            comp = settings.completion
            budget = comp.context_tokens + comp.prefix_tokens + comp.suffix_tokens
            fixed["train"] = {"max_seq_tokens": budget + 64 + comp.max_tokens_block}
        return settings_with(settings, fixed, "evaluation")
    except SettingsError as exc:
        raise EvalError(str(exc)) from None


def _with_adapter(settings: Settings, adapter: str) -> Settings:
    """`adapter`: "none" (the bare base), "default" (the shipped one) or a GGUF path."""
    return settings_with(settings, {"model": {"adapter": adapter}}, "evaluation")


# --------------------------------------------------------------------------- repositories


@dataclass
class Prepared:
    repo: Repo
    files: list[Any]
    digest: str
    adapter: str | None = None
    adapter_info: dict[str, Any] = field(default_factory=dict)


def open_index(root: Path, settings: Settings) -> Any:
    """The repository's index (cached under the cache dir), complete, with dense queries."""
    from repotune.server.index.workspace import WorkspaceIndex

    index = WorkspaceIndex(root, settings)
    index.start(watch=False)
    if not index.wait_idle(timeout=INDEX_TIMEOUT_S):
        index.close()
        raise EvalError(f"indexing {root} did not finish within {INDEX_TIMEOUT_S / 60:.0f} min")
    if index.dense:
        try:
            index.load_query_embedder()  # an index reused from the cache never loaded it
        except Exception as exc:  # dense is optional: lexical retrieval still works
            index.embedder_error = str(exc)
    return index


def adapter_key(prepared: Prepared, settings: Settings, config: EvalConfig) -> str:
    """Everything that shapes a trained adapter: repository content, base, training settings,
    prompt budget, retrieval/index settings, dataset size and steps."""
    from repotune.server.models import resolve_generator

    base = resolve_generator(settings.model.generator)
    shaping = {
        "repo": prepared.repo.spec if prepared.repo.pinned else prepared.digest,
        "files": prepared.digest,
        "base": base.sha256,
        "train": settings.train.model_dump(),
        "completion": {
            k: getattr(settings.completion, k)
            for k in ("context_tokens", "prefix_tokens", "suffix_tokens", "max_tokens_block")
        },
        "retrieval": settings.retrieval.model_dump(),
        "index": {k: getattr(settings.index, k) for k in ("chunk_lines", "chunk_overlap", "dense")},
        "per_kind": config.per_kind,
        "steps": config.train_steps,
        "time_budget_min": config.time_budget_min,
        "init_adapter": _init_digest(settings),
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:12]


def _init_digest(settings: Settings) -> str | None:
    """The checksum of the adapter a fine-tune starts from (None: fresh LoRA weights)."""
    from repotune.server.models import sha256_file
    from repotune.training.warm_start import init_adapter_path

    path = init_adapter_path(settings)
    return sha256_file(path) if path is not None else None


def ensure_adapter(prepared: Prepared, settings: Settings, config: EvalConfig) -> None:
    """Train (dataset -> LoRA -> GGUF) or reuse the cached adapter for one repository."""
    from repotune.training.dataset import build_dataset
    from repotune.training.export import export, held_out_texts
    from repotune.training.finetune import finetune

    key = adapter_key(prepared, settings, config)
    folder = cache_dir() / "eval" / "adapters" / f"{prepared.repo.slug()}-{key}"
    adapter = folder / "adapter.gguf"
    done = folder / "done.json"
    test_paths = sorted(f.path for f in prepared.files if f.split == "test")
    if adapter.is_file() and done.is_file():
        info = json.loads(done.read_text())
        _log(config, f"{prepared.repo.label}: reusing adapter {adapter}")
    else:
        data_dir, run_dir = folder / "dataset", folder / "run"
        started = time.perf_counter()
        if not (data_dir / "train.jsonl").is_file():
            _log(config, f"{prepared.repo.label}: building the training dataset")
            index = open_index(prepared.repo.root, settings)
            try:
                build_dataset(
                    prepared.repo.root,
                    data_dir,
                    settings,
                    per_kind=config.per_kind,
                    index=index,
                    progress=config.progress,
                )
            finally:
                index.close()
        dataset_s = time.perf_counter() - started
        _check_split(data_dir, test_paths)
        from repotune.training.warm_start import init_adapter_path

        budget = f", {config.time_budget_min:g} min" if config.time_budget_min else ""
        _log(
            config,
            f"{prepared.repo.label}: fine-tuning ({config.train_steps} steps{budget} at most)",
        )
        started = time.perf_counter()
        resume = (run_dir / "checkpoint").exists()
        result = finetune(
            data_dir,
            run_dir,
            settings,
            resume=resume,
            max_steps=config.train_steps,
            progress=config.progress,
            time_budget_s=config.time_budget_min * 60 if config.time_budget_min else None,
            init_adapter=None if resume else init_adapter_path(settings),
        )
        finetune_s = time.perf_counter() - started
        _log(config, f"{prepared.repo.label}: exporting the GGUF adapter")
        started = time.perf_counter()
        exported = export(run_dir, adapter, held_out_texts(run_dir, limit=2), check=config.parity)
        info = {
            "key": key,
            "dataset": json.loads((data_dir / "stats.json").read_text()),
            "finetune": result.to_json(),
            "export": exported.to_json(),
            "seconds": {
                "dataset": round(dataset_s, 1),
                "finetune": round(finetune_s, 1),
                "export": round(time.perf_counter() - started, 1),
            },
        }
        done.write_text(json.dumps(info, indent=2, default=str))
    _check_split(folder / "dataset", test_paths)
    prepared.adapter = str(adapter)
    prepared.adapter_info = {"path": str(adapter), "trained_here": True, **info}


def _check_split(data_dir: Path, test_paths: list[str]) -> None:
    """The adapter's dataset must hold out exactly the files the tasks come from."""
    split_file = data_dir / "split.json"
    if not split_file.is_file():
        return
    split = json.loads(split_file.read_text())
    if sorted(split.get("test", [])) != test_paths:
        raise EvalError(
            f"the adapter's dataset ({data_dir}) holds out other test files than this split; "
            "training and evaluation settings differ (train.seed / test_share / index settings)"
        )
    trained = set(split.get("train", [])) | set(split.get("validation", []))
    if trained & set(test_paths):
        raise EvalError(f"test files were trained on in {data_dir}: refusing to evaluate")


def prepare(spec: str, settings: Settings) -> Prepared:
    from repotune.training.dataset import assign_splits, collect_files

    repo = resolve_repo(spec)
    files, _skipped = collect_files(repo.root, settings)
    assign_splits(files, settings)
    digest = files_digest({f.path: f.text for f in files})
    return Prepared(repo, files, digest)


# --------------------------------------------------------------------------- running


@dataclass
class Retrieved:
    snippets: list[Any]
    ms: float
    hit: bool | None  # None: the answer uses no cross-file definition


def retrieve_all(prepared: Prepared, tasks: Sequence[Task], settings: Settings) -> list[Retrieved]:
    """Context for every task, once, from an index of the whole repository minus the hole."""
    from repotune.server.completion.context import as_snippets
    from repotune.training.dataset import Retriever

    index = open_index(prepared.repo.root, settings)
    retriever = Retriever(prepared.repo.root, settings, index)
    allowed = {f.path for f in prepared.files}
    k = settings.retrieval.top_k
    out = []
    try:
        for task in tasks:
            started = time.perf_counter()
            chunks = retriever.search(
                task.path, task.prefix, task.suffix, task.target_lines, allowed, k
            )
            ms = (time.perf_counter() - started) * 1000
            hit: bool | None = None
            if task.definitions:
                hit = any(
                    chunk.path == d.path and chunk.start_line <= d.start_line <= chunk.end_line
                    for chunk in chunks
                    for d in task.definitions
                )
            out.append(Retrieved(as_snippets(chunks), ms, hit))
    finally:
        index.close()
    return out


def run_condition(
    settings: Settings,
    adapter: str,
    tasks: Sequence[Task],
    contexts: Sequence[Retrieved] | None,
    progress: bool,
    desc: str,
) -> list[Prediction]:
    """Complete every task with a fresh engine (nothing carried over from another condition)."""
    from repotune.server.completion.engine import CompletionEngine
    from repotune.server.completion.request import CompletionRequest
    from tqdm import tqdm

    engine = CompletionEngine(_with_adapter(settings, adapter))
    try:
        if not engine.wait_ready(LOAD_TIMEOUT_S):
            raise EvalError(engine.load_error or "the generator did not load in time")
        predictions = []
        for i, task in enumerate(tqdm(tasks, desc=desc, unit="task", disable=not progress)):
            request = CompletionRequest(
                path=task.path,
                language=task.language,
                prefix=task.prefix,
                suffix=task.suffix,
                context=contexts[i].snippets if contexts is not None else (),
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


# --------------------------------------------------------------------------- scoring


def score(task: Task, prediction: str) -> dict[str, float | None]:
    """Per-task scores; line tasks are scored on the first line of the completion. `hit`: the
    completion contains the answer's key identifier (None when the answer names none)."""
    text = first_line(prediction) if task.kind == "line" else prediction
    ids = identifier_match(text, task.target, task.language)
    key = key_identifier(task.target, task.prefix, task.language, api_call=task.kind == "api")
    return {
        "exact_match": float(exact_match(text, task.target)),
        "edit_similarity": edit_similarity(text, task.target),
        "identifier_em": float(ids.exact_match),
        "identifier_f1": ids.f1,
        "hit": float(hit(text, key)) if key is not None else None,
    }


def summarize(
    tasks: Sequence[Task],
    scores: Sequence[dict[str, float | None]],
    predictions: Sequence[Prediction],
) -> dict[str, Any]:
    groups: dict[str, list[int]] = {"all": list(range(len(tasks)))}
    for i, task in enumerate(tasks):
        groups.setdefault(task.kind, []).append(i)
    out: dict[str, Any] = {}
    for name, members in groups.items():
        latencies = [predictions[i].latency_ms for i in members]
        tokens = [predictions[i].tokens for i in members]
        lat = [v for v in latencies if v is not None]
        tok = [v for v in tokens if v is not None]
        out[name] = {
            "n": len(members),
            **{metric: _mean_of(scores, members, metric) for metric in SCORED},
            "empty_share": mean([float(not predictions[i].text.strip()) for i in members]),
            "latency_ms": {"p50": percentile(lat, 50), "p95": percentile(lat, 95)},
            "tokens_per_completion": mean(tok),
        }
    return out


def _mean_of(scores: Sequence[dict[str, float | None]], members: list[int], metric: str) -> Any:
    values = [scores[i][metric] for i in members]
    return mean([v for v in values if v is not None])


def compare(
    tasks: Sequence[Task],
    per_condition: dict[str, list[dict[str, float | None]]],
    resamples: int,
    seed: int,
) -> list[dict[str, Any]]:
    comparisons = []
    kinds = ["all", *[k for k in KINDS if any(t.kind == k for t in tasks)]]
    for a, b in COMPARISONS:
        if a not in per_condition or b not in per_condition:
            continue
        intervals: dict[str, dict[str, Any]] = {}
        tests: dict[str, Any] = {}
        for kind in kinds:
            members = [i for i, t in enumerate(tasks) if kind == "all" or t.kind == kind]
            intervals[kind] = {
                metric: paired_bootstrap(
                    [per_condition[a][i][metric] or 0.0 for i in members],
                    [per_condition[b][i][metric] or 0.0 for i in members],
                    resamples=resamples,
                    seed=seed,
                ).to_json()
                for metric in ("exact_match", "edit_similarity", "identifier_f1")
            }
            # McNemar's exact test on paired exact match (only discordant tasks count).
            tests[kind] = mcnemar_exact(
                [per_condition[a][i]["exact_match"] or 0.0 for i in members],
                [per_condition[b][i]["exact_match"] or 0.0 for i in members],
            ).to_json()
        comparisons.append({"a": a, "b": b, "intervals": intervals, "mcnemar_em": tests})
    return comparisons


def _line_em(found: dict[tuple[str, str], Any], a: str, b: str) -> dict[str, Any] | None:
    pair = found.get((a, b))
    return (
        pair["intervals"]["line"]["exact_match"] if pair and "line" in pair["intervals"] else None
    )


def _target(description: str, iv: dict[str, Any], gain: float = 0.0) -> dict[str, Any]:
    return {
        "description": description,
        "met": iv["difference"] >= gain and iv["low"] > 0,
        "detail": f"{100 * iv['difference']:+.1f} points, 95 % CI "
        f"[{100 * iv['low']:+.1f}, {100 * iv['high']:+.1f}]",
    }


def targets(comparisons: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue #13's bar on line EM: default+ctx beats the better of base and base+ctx by >= 15
    points; context helps the default adapter; repo+ctx beats default+ctx and other-repo+ctx;
    every one with its interval above zero."""
    found = {(c["a"], c["b"]): c for c in comparisons}
    out = []
    baselines = [iv for b in ("base", "base+ctx") if (iv := _line_em(found, "default+ctx", b))]
    if baselines:  # the better baseline is the one default+ctx beats by less
        iv = min(baselines, key=lambda item: item["difference"])
        gain = f"≥ +{100 * TARGET_EM_GAIN:.0f} points"
        out.append(
            _target(
                f"line EM, default+ctx − best of base/base+ctx {gain}, CI > 0", iv, TARGET_EM_GAIN
            )
        )
    for a, b in (
        ("default+ctx", "default"),
        ("repo+ctx", "default+ctx"),
        ("repo+ctx", "other-repo+ctx"),
    ):
        if (iv := _line_em(found, a, b)) is not None:
            out.append(_target(f"line EM, {a} − {b} > 0, CI above zero", iv))
    return out


# --------------------------------------------------------------------------- the run


def validate(config: EvalConfig) -> None:
    """Everything that can be checked before any download or training."""
    if not config.repos:
        raise EvalError("give at least one --repo (a folder or a pinned package NAME==VERSION)")
    config.conditions = [ALIASES.get(c, c) for c in config.conditions]
    unknown = [c for c in config.conditions if c not in CONDITIONS]
    if unknown:
        raise EvalError(f"unknown condition(s) {unknown}; known: {', '.join(CONDITIONS)}")
    if config.time_budget_min is not None and config.time_budget_min <= 0:
        raise EvalError("--time-budget must be a positive number of minutes")
    if not any(config.counts.get(k, 0) > 0 for k in (*KINDS, "question")):
        raise EvalError(
            "no tasks asked for: set --line-tasks, --span-tasks, --api-tasks or --question-tasks"
        )
    for label, path in config.adapters.items():
        if not Path(path).expanduser().is_file():
            raise EvalError(f"adapter for '{label}' not found: {path}")


def run(config: EvalConfig) -> dict[str, Any]:
    """The whole evaluation; returns the result JSON (also written under `config.out`)."""
    started = time.perf_counter()
    validate(config)
    settings = eval_settings(config.overrides)
    notes: list[str] = []
    conditions = list(config.conditions)
    prepared = []
    for spec in config.repos:
        _log(config, f"fetching {spec}")
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
        from repotune.server.models import resolve_adapter

        resolve_adapter(DEFAULT_REF)  # a missing default adapter fails here, before any work
    needs_adapters = any(CONDITIONS[c][0] in ("own", "other") for c in conditions)
    if needs_adapters:
        for item in prepared:
            label = item.repo.label
            if label in config.adapters:
                item.adapter = str(Path(config.adapters[label]).expanduser().resolve())
                item.adapter_info = {"path": item.adapter, "trained_here": False}
            else:
                ensure_adapter(item, settings, config)

    counts = {k: config.counts.get(k, 0) for k in KINDS}
    repos: dict[str, Any] = {}
    predictions_out: list[dict[str, Any]] = []
    from repotune.server.models import resolve_generator
    from repotune.training.dataset import TokenCounter

    generator = resolve_generator(settings.model.generator)
    count_tokens = TokenCounter(generator.path)
    questions = config.counts.get("question", 0)
    embedder = None
    if questions > 0:
        from repotune.server.llm.embeddings import load_embedder

        embedder = load_embedder(settings.model.embedder, settings.model.threads)
    for position, item in enumerate(prepared):
        label = item.repo.label
        tasks = extract_tasks(
            item.files,
            counts,
            config.seed,
            count_tokens=count_tokens,
            max_target_tokens=settings.completion.max_tokens_block,
        )
        if not tasks and questions <= 0:
            raise EvalError(f"{label}: no tasks could be cut from its held-out test files")
        task_counts = {k: sum(t.kind == k for t in tasks) for k in KINDS}
        _log(config, f"{label}: {len(tasks)} tasks {task_counts}; retrieving context")
        contexts = retrieve_all(item, tasks, settings)
        other = prepared[(position + 1) % len(prepared)] if len(prepared) > 1 else None
        per_condition: dict[str, list[dict[str, float | None]]] = {}
        summaries: dict[str, Any] = {}
        for condition in conditions if tasks else []:
            which, with_context = CONDITIONS[condition]
            adapter = {"none": NO_ADAPTER, "default": DEFAULT_REF}.get(which)
            if which == "own":
                adapter = item.adapter
            elif which == "other" and other is not None:
                adapter = other.adapter
            if adapter is None:
                raise EvalError(f"{label}: no adapter for condition {condition}")
            _log(config, f"{label}: condition {condition} (adapter: {adapter})")
            preds = run_condition(
                settings,
                adapter,
                tasks,
                contexts if with_context else None,
                config.progress,
                f"{label} {condition}",
            )
            scores = [score(t, p.text) for t, p in zip(tasks, preds, strict=True)]
            per_condition[condition] = scores
            summaries[condition] = summarize(tasks, scores, preds)
            for task, pred, task_scores in zip(tasks, preds, scores, strict=True):
                predictions_out.append(
                    {
                        "repo": label,
                        "condition": condition,
                        "task": task.id,
                        "prediction": pred.text,
                        "stop": pred.stop,
                        "latency_ms": pred.latency_ms,
                        "tokens": pred.tokens,
                        "prompt_tokens": pred.prompt_tokens,
                        **task_scores,
                    }
                )
        comparisons = compare(tasks, per_condition, config.bootstrap, config.seed)
        with_defs = [c.hit for c in contexts if c.hit is not None]
        split_counts = {
            s: sum(f.split == s for f in item.files) for s in ("train", "validation", "test")
        }
        repos[label] = {
            "repo": item.repo.to_json(),
            "files": split_counts,
            "test_files": sorted(f.path for f in item.files if f.split == "test"),
            "adapter": item.adapter_info or None,
            "other_adapter": other.adapter if other is not None else None,
            "task_counts": task_counts,
            "tasks": [t.to_json() for t in tasks],
            "retrieval": {
                "k": settings.retrieval.top_k,
                "recall_at_k": mean([float(h) for h in with_defs]),
                "tasks_with_definitions": len(with_defs),
                "latency_ms": {
                    "p50": percentile([c.ms for c in contexts], 50),
                    "p95": percentile([c.ms for c in contexts], 95),
                },
                "snippets_per_task": mean([len(c.snippets) for c in contexts]),
            },
            "conditions": summaries,
            "comparisons": comparisons,
            "targets": targets(comparisons),
            "notes": list(notes),
        }
        if questions > 0:
            repos[label]["questions"] = _questions(
                item, other, settings, conditions, config, embedder, predictions_out
            )
    if embedder is not None:
        embedder.close()
    result = {
        "config": {
            "command": config.command,
            "repos": config.repos,
            "conditions": conditions,
            "counts": {**counts, "question": questions},
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
        },
        "machine": machine_facts(),
        "repos": repos,
        "duration_s": round(time.perf_counter() - started, 1),
    }
    if config.out is not None:
        write_outputs(result, predictions_out, config.out)
        _log(config, f"results in {config.out}")
    return result


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
    from repotune.training.eval_questions import evaluate_questions

    asked = []
    for condition in conditions:
        which, with_context = CONDITIONS[condition]
        if not with_context:
            continue
        if which == "other" and other is None:
            continue
        adapter = {"own": item.adapter, "other": other.adapter if other else None}.get(which or "")
        asked.append((condition, adapter))
    _log(config, f"{item.repo.label}: question tasks under {[c for c, _ in asked]}")
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
    from repotune.training.eval_report import chart, markdown

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


# --------------------------------------------------------------------------- command line

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _adapters(pairs: Sequence[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        label, sep, path = pair.partition("=")
        if not sep or not label or not path:
            raise EvalError(
                f"--adapter expects LABEL=PATH (LABEL: package or folder name), got '{pair}'"
            )
        result[label] = path
    return result


@app.command()
def command(
    repo: Annotated[
        list[str],
        typer.Option(help="pinned package NAME==VERSION (fetched with pip) or a folder; repeat"),
    ],
    conditions: Annotated[
        str, typer.Option(help=f"comma-separated, of: {', '.join(CONDITIONS)}")
    ] = ",".join(DEFAULT_CONDITIONS),
    line_tasks: Annotated[int, typer.Option(help="line completions per repository")] = 60,
    span_tasks: Annotated[int, typer.Option(help="syntax span completions per repository")] = 20,
    api_tasks: Annotated[int, typer.Option(help="API call completions per repository")] = 20,
    question_tasks: Annotated[
        int, typer.Option(help="codebase questions per repository (answered as `ask` does)")
    ] = 30,
    seed: Annotated[int, typer.Option(help="task sampling and bootstrap seed")] = 1234,
    train_steps: Annotated[int, typer.Option(help="fine-tuning steps per repository")] = 40,
    time_budget: Annotated[
        float | None, typer.Option(help="also stop each fine-tune after MIN minutes")
    ] = None,
    per_kind: Annotated[int, typer.Option(help="dataset spans per kind per file")] = 1,
    adapter: Annotated[
        list[str] | None, typer.Option(help="use this adapter: LABEL=PATH.gguf (repeatable)")
    ] = None,
    parity: Annotated[bool, typer.Option(help="llama.cpp/PyTorch parity check on export")] = True,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples")] = 2000,
    out: Annotated[Path | None, typer.Option(help="output folder")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="a setting SECTION.KEY=VALUE (repeatable)")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress on stderr")] = False,
) -> None:
    """Compare base / default adapter / per-repository fine-tunes, with and without retrieval, on
    held-out files of real repositories; writes eval.json (eval-summary.json: without the tasks'
    text), eval.md, eval.png and predictions.jsonl. HumanEval infilling: `repotune eval
    humaneval --help`."""
    config = EvalConfig(
        repos=list(repo),
        conditions=[c.strip() for c in conditions.split(",") if c.strip()],
        counts={
            "line": line_tasks,
            "span": span_tasks,
            "api": api_tasks,
            "question": question_tasks,
        },
        seed=seed,
        train_steps=train_steps,
        time_budget_min=time_budget,
        per_kind=per_kind,
        adapters=_adapters(adapter or []),
        parity=parity,
        bootstrap=bootstrap,
        overrides=parse_overrides(set_ or []),
        out=out or Path("bench-results") / time.strftime("eval-%Y%m%d-%H%M%S"),
        progress=not quiet,
        command=_COMMAND[0],
    )
    result = run(config)
    summary = {
        label: {
            name: {
                kind: round(scores["exact_match"], 4)
                for kind, scores in groups.items()
                if scores["exact_match"] is not None
            }
            for name, groups in repo["conditions"].items()
        }
        for label, repo in result["repos"].items()
    }
    cited = {
        label: {
            name: scores["citation"]
            for name, scores in repo.get("questions", {}).get("conditions", {}).items()
        }
        for label, repo in result["repos"].items()
    }
    print(
        json.dumps(
            {
                "out": str(config.out),
                "exact_match": summary,
                "question_citation": cited,
                "duration_s": result["duration_s"],
            }
        )
    )


_COMMAND = [""]


def main(args: list[str] | None = None) -> None:
    """Entry point for `repotune eval ARGS...`; errors are one line on stderr, exit status 1."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["humaneval"]:
        from repotune.training.humaneval import main as humaneval_main

        humaneval_main(argv[1:])
        return
    _COMMAND[0] = "repotune eval " + shlex.join(argv)
    run_app(app, argv, "repotune eval")


def run_app(command: typer.Typer, argv: list[str], prog_name: str) -> None:
    """Run an evaluation command: a user error is one line on stderr and exit status 1."""
    try:
        command(args=argv, prog_name=prog_name, standalone_mode=False)
    except (EvalError, TrainError, ModelError, SettingsError) as exc:
        print_error(f"{prog_name}: {exc}")
        raise SystemExit(1) from None
    except typer.Abort:
        raise SystemExit(130) from None
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
