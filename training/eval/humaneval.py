"""`repotune eval humaneval`: HumanEval infilling pass@1, an outside anchor nobody here chose.

Each task of openai/human-eval-infilling (`--data FILE.jsonl.gz`, repeatable) is completed by the
server's own engine as an editor would ask it: prefix = the task's prompt, suffix = the task's
suffix, language python, no retrieved context, greedy, the engine's prompt format and
post-processing. A multi-line hole is asked on an empty line above the suffix (the editor's state
when lines are inserted; with the suffix's first line right of the cursor the engine would
complete one line). The middle put back into the program:
- single-line tasks: the first non-blank line of the completion (as `repotune eval` scores line
  tasks); multi-line: the whole completion; both end with a newline (the hole is whole lines);
- random-span tasks: the completion as it is.
The filled-in program and the task's tests run in a separate process (`humaneval_exec`);
pass@1 = passed / tasks. Conditions: `base` (adapter "none"), `default` (the shipped adapter) and
any `--adapter [LABEL=]PATH.gguf`; every adapter condition is compared with base (and with default
when both are run): paired bootstrap interval of the difference and McNemar's exact test.
"""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repotune.server.bench.record import machine_facts, source_commit
from repotune.server.completion.request import CompletionRequest
from repotune.server.config import Settings, SettingsError, load_settings, settings_with
from repotune.server.models import DEFAULT_REF, NO_ADAPTER
from repotune.training.eval.config import LOAD_TIMEOUT_S, eval_completion
from repotune.training.eval.corpora import EvalError
from repotune.training.eval.humaneval_exec import DEFAULT_TIMEOUT_S, build_program, run_program
from repotune.training.eval.metrics import (
    exact_match,
    first_line,
    mcnemar_exact,
    mean,
    paired_bootstrap,
    percentile,
)

BUILT_IN = {"base": NO_ADAPTER, "default": DEFAULT_REF}
FIELDS = ("task_id", "entry_point", "prompt", "suffix", "canonical_solution", "test")


@dataclass(frozen=True)
class InfillTask:
    task_id: str
    entry_point: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str


@dataclass
class HumanEvalConfig:
    data: list[Path]
    conditions: dict[str, str] = field(default_factory=lambda: dict(BUILT_IN))  # name -> adapter
    limit: int | None = None
    every: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    bootstrap: int = 2000
    seed: int = 1234
    overrides: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None
    progress: bool = True
    command: str = ""


# --------------------------------------------------------------------------- tasks


def load_tasks(path: Path) -> list[InfillTask]:
    """The tasks of one HumanEval infilling file (.jsonl or .jsonl.gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError) as exc:
        raise EvalError(f"cannot read HumanEval tasks from {path}: {exc}") from None
    tasks = []
    for number, row in enumerate(rows, 1):
        missing = [name for name in FIELDS if not isinstance(row.get(name), str)]
        if missing:
            raise EvalError(f"{path}, line {number}: not a HumanEval infilling task ({missing})")
        tasks.append(InfillTask(**{name: row[name] for name in FIELDS}))
    if not tasks:
        raise EvalError(f"{path} holds no tasks")
    return tasks


def set_kind(path: Path, tasks: Sequence[InfillTask]) -> str:
    """single-line | multi-line | random-span, from the task ids (or the file name)."""
    text = (tasks[0].task_id if tasks else "") + " " + path.name
    for marker, kind in (
        ("SingleLine", "single-line"),
        ("MultiLine", "multi-line"),
        ("RandomSpan", "random-span"),
    ):
        if marker in text:
            return kind
    raise EvalError(f"{path}: not a single-line, multi-line or random-span HumanEval file")


def sample(tasks: Sequence[InfillTask], limit: int | None, every: int) -> list[InfillTask]:
    """Every `every`-th task, then `limit` of those spread evenly over the set."""
    picked = list(tasks[:: max(1, every)])
    if limit is None or limit >= len(picked):
        return picked
    return [picked[i * len(picked) // limit] for i in range(limit)]


def request_for(task: InfillTask, kind: str) -> CompletionRequest:
    """The engine's request for `task` (see the module docstring)."""
    suffix = "\n" + task.suffix if kind == "multi-line" else task.suffix
    return CompletionRequest(
        path=f"{task.entry_point}.py", language="python", prefix=task.prompt, suffix=suffix
    )


def middle(kind: str, completion: str) -> str:
    """What goes into the hole (see the module docstring)."""
    if kind == "random-span":
        return completion
    text = first_line(completion) if kind == "single-line" else completion
    return text if text.endswith("\n") else text + "\n"


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Answer:
    task_id: str
    completion: str
    status: str
    detail: str
    exact_match: bool
    latency_ms: float | None


def complete_and_run(
    settings: Settings,
    tasks: Sequence[InfillTask],
    kind: str,
    timeout_s: float,
    desc: str,
    progress: bool,
) -> list[Answer]:
    """Complete every task with one engine (this condition's adapter), run each program."""
    from repotune.server.completion.engine import CompletionEngine
    from tqdm import tqdm

    engine = CompletionEngine(settings)
    try:
        if not engine.wait_ready(LOAD_TIMEOUT_S):
            raise EvalError(engine.load_error or "the generator did not load in time")
        answers = []
        for task in tqdm(tasks, desc=desc, unit="task", disable=not progress):
            result = engine.complete(request_for(task, kind))
            text = result.text if result is not None else ""
            latency = result.timings.get("total") if result is not None else None
            filled = middle(kind, text)
            outcome = run_program(
                build_program(task.prompt, filled, task.suffix, task.test, task.entry_point),
                timeout_s,
            )
            scored = filled if kind != "random-span" else text
            answers.append(
                Answer(
                    task.task_id,
                    text,
                    outcome.status,
                    outcome.detail,
                    exact_match(scored, task.canonical_solution),
                    latency,
                )
            )
        return answers
    finally:
        engine.close()


def summarize(answers: Sequence[Answer]) -> dict[str, Any]:
    latencies = [a.latency_ms for a in answers if a.latency_ms is not None]
    return {
        "tasks": len(answers),
        "passed": sum(a.status == "passed" for a in answers),
        "pass_at_1": mean([float(a.status == "passed") for a in answers]),
        "timeouts": sum(a.status == "timeout" for a in answers),
        "exact_match": mean([float(a.exact_match) for a in answers]),
        "empty": sum(not a.completion.strip() for a in answers),
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
    }


def pairs(conditions: Sequence[str]) -> list[tuple[str, str]]:
    """Every adapter against base, and every other adapter against default."""
    out = [(name, "base") for name in conditions if name != "base" and "base" in conditions]
    out += [
        (name, "default")
        for name in conditions
        if name not in ("base", "default") and "default" in conditions
    ]
    return out


def compare(answers: dict[str, list[Answer]], resamples: int, seed: int) -> list[dict[str, Any]]:
    comparisons = []
    for a, b in pairs(list(answers)):
        passed_a = [float(x.status == "passed") for x in answers[a]]
        passed_b = [float(x.status == "passed") for x in answers[b]]
        interval = paired_bootstrap(passed_a, passed_b, resamples=resamples, seed=seed)
        comparisons.append(
            {
                "a": a,
                "b": b,
                "pass_at_1": interval.to_json(),
                "mcnemar": mcnemar_exact(passed_a, passed_b).to_json(),
            }
        )
    return comparisons


# --------------------------------------------------------------------------- the run


def condition_settings(base: Settings, adapter: str) -> Settings:
    return settings_with(base, {"model": {"adapter": adapter}}, "humaneval condition")


def describe_adapter(settings: Settings) -> dict[str, Any]:
    """Which adapter file a condition loads (checked before any model is loaded)."""
    from repotune.server.models import adapter_reference, resolve_adapter

    reference = adapter_reference(settings.model.adapter, settings.model.generator)
    if reference is None:
        return {"adapter": settings.model.adapter or NO_ADAPTER, "path": None, "sha256": None}
    resolved = resolve_adapter(reference)
    return {"adapter": reference, "path": str(resolved.path), "sha256": resolved.sha256}


def run(config: HumanEvalConfig) -> dict[str, Any]:
    """Every data file under every condition; returns the result JSON (written under `out`)."""
    started = time.perf_counter()
    if not config.data:
        raise EvalError("give at least one --data FILE (HumanEval-*Infilling*.jsonl.gz)")
    if not config.conditions:
        raise EvalError("no conditions to run")
    if config.limit is not None and config.limit < 1:
        raise EvalError("--limit must be at least 1")
    if config.every < 1:
        raise EvalError("--every must be at least 1")
    if not (math.isfinite(config.timeout_s) and config.timeout_s > 0):
        raise EvalError("--timeout must be a positive number of seconds")
    if config.bootstrap < 1:  # found at the end otherwise, after every task has run
        raise EvalError("--bootstrap must be at least 1")
    try:
        base = load_settings(None, config.overrides, overrides_source="command line")
        base = settings_with(base, {"completion": eval_completion(config.overrides)}, "evaluation")
        settings = {n: condition_settings(base, a) for n, a in config.conditions.items()}
    except SettingsError as exc:
        raise EvalError(str(exc)) from None
    sets = []
    for path in config.data:
        tasks = load_tasks(path)
        sets.append((path, set_kind(path, tasks), tasks, sample(tasks, config.limit, config.every)))
    adapters = {name: describe_adapter(s) for name, s in settings.items()}  # fail before work
    result_sets: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for path, kind, every_task, picked in sets:
        answers: dict[str, list[Answer]] = {}
        for name, condition in settings.items():
            desc = f"{kind} {name}"
            answers[name] = complete_and_run(
                condition, picked, kind, config.timeout_s, desc, config.progress
            )
            rows += [{"set": kind, "condition": name, **vars(a)} for a in answers[name]]
        result_sets[kind] = {
            "file": path.name,
            "tasks_in_file": len(every_task),
            "tasks": len(picked),
            "task_ids": [t.task_id for t in picked],
            "conditions": {name: summarize(a) for name, a in answers.items()},
            "comparisons": compare(answers, config.bootstrap, config.seed),
        }
    from repotune.server.models import resolve_generator

    generator = resolve_generator(base.model.generator)
    result = {
        "benchmark": "HumanEval infilling (openai/human-eval-infilling), pass@1, greedy",
        "command": config.command,
        **source_commit(),
        "machine": machine_facts(),
        "config": {
            "data": [str(p) for p in config.data],
            "limit": config.limit,
            "every": config.every,
            "timeout_s": config.timeout_s,
            "bootstrap_resamples": config.bootstrap,
            "seed": config.seed,
            "conditions": adapters,
            "generator": f"{base.model.generator} ({generator.path.name}, "
            f"sha256 {generator.sha256[:12]})",
            "budget": [base.completion.prefix_tokens, base.completion.suffix_tokens],
            "settings": base.model_dump(),
        },
        "sets": result_sets,
        "duration_s": round(time.perf_counter() - started, 1),
    }
    if config.out is not None:
        write_outputs(result, rows, config.out)
    return result


def write_outputs(result: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "humaneval.json").write_text(json.dumps(result, indent=2, default=str))
    with (out / "humaneval-predictions.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "humaneval.md").write_text(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# HumanEval infilling",
        "",
        f"Command: `{result['command']}`  ",
        f"Commit: {result['commit']}{' (with local changes)' if result['dirty'] else ''}  ",
        f"Machine: {result['machine']['summary']}  ",
        f"Generator: {result['config']['generator']}; greedy; no retrieved context; "
        f"{result['duration_s'] / 60:.1f} min.",
    ]
    for kind, data in result["sets"].items():
        lines += [
            "",
            f"## {kind} ({data['tasks']} of {data['tasks_in_file']} tasks, {data['file']})",
            "",
            "| condition | pass@1 % | passed | exact match % | timeouts | empty |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, s in data["conditions"].items():
            lines.append(
                f"| {name} | {100 * (s['pass_at_1'] or 0):.1f} | {s['passed']}/{s['tasks']} "
                f"| {100 * (s['exact_match'] or 0):.1f} | {s['timeouts']} | {s['empty']} |"
            )
        if data["comparisons"]:
            lines += [
                "",
                "| difference | pass@1 points [95 % CI] | McNemar exact p |",
                "|---|---:|---:|",
            ]
            for c in data["comparisons"]:
                iv, test = c["pass_at_1"], c["mcnemar"]
                lines.append(
                    f"| {c['a']} − {c['b']} | {100 * iv['difference']:+.1f} "
                    f"[{100 * iv['low']:+.1f}, {100 * iv['high']:+.1f}] | {test['p_value']:.3g} "
                    f"({test['a_only']} vs {test['b_only']} discordant) |"
                )
    lines.append("")
    return "\n".join(lines)


def parse_conditions(names: str, adapters: Sequence[str]) -> dict[str, str]:
    """`base`/`default` by name, plus `[LABEL=]PATH.gguf` adapters (label: the file's stem)."""
    conditions: dict[str, str] = {}
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in BUILT_IN:
            raise EvalError(f"unknown condition '{name}'; known: {', '.join(BUILT_IN)}")
        conditions[name] = BUILT_IN[name]
    for item in adapters:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = Path(item).stem, item
        file = Path(path).expanduser()
        if not file.is_file():
            raise EvalError(f"adapter not found: {path}")
        if not label or label in conditions:
            raise EvalError(f"adapter label '{label}' is empty or already used")
        conditions[label] = str(file.resolve())
    return conditions
