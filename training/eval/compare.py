"""`repotune eval compare`: pair two evaluation runs task by task.

Runs made apart (another adapter, a setting changed, another commit) answer the same tasks when
they share the seed and the held-out files, so their predictions pair by task id. For each task
kind: exact match and edit similarity on both sides, the paired difference test − reference
(bootstrap 95 % interval), McNemar's exact test on exact match, and how many predictions changed;
exact match of the whole suggestion as shown (line kinds are scored on their first line) beside.
Questions pair the same way: citation, cosine and ROUGE-L on the answerable ones (McNemar's
test on citation), abstention on the others.

A side is a `repotune eval` output folder (its predictions.jsonl and eval.json), optionally
`FOLDER@CONDITION` (default: default+ctx). Several reference folders are read as one (for tasks
split over two runs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repotune.training.eval.corpora import EvalError
from repotune.training.eval.metrics import mcnemar_exact, paired_bootstrap
from repotune.training.eval.tasks import LINE_KINDS

DEFAULT_CONDITION = "default+ctx"
METRICS = ("exact_match", "shown_exact", "edit_similarity")
# Question metrics, each on the questions it applies to (answerable or not).
QUESTION_METRICS = {"citation": True, "cosine": True, "rouge_l": True, "abstained": False}
# Pass/fail metrics get McNemar's exact test beside the bootstrap interval.
BINARY_METRICS = ("exact_match", "shown_exact", "citation")


@dataclass(frozen=True)
class RunSide:
    folder: Path
    condition: str

    @classmethod
    def parse(cls, spec: str) -> RunSide:
        folder, _, condition = spec.partition("@")
        return cls(Path(folder), condition or DEFAULT_CONDITION)

    def __str__(self) -> str:
        return f"{self.folder}@{self.condition}"


def scored_predictions(side: RunSide) -> dict[str, dict[str, Any]]:
    """Task id -> the side's scored prediction row (completion tasks and questions)."""
    path = side.folder / "predictions.jsonl"
    if not path.is_file():
        raise EvalError(f"{side.folder} has no predictions.jsonl (not a `repotune eval` output)")
    found: dict[str, dict[str, Any]] = {}
    conditions: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            conditions.add(str(row.get("condition")))
            scored = "exact_match" in row or row.get("kind") == "question"
            if row.get("condition") == side.condition and scored:
                found[row["task"]] = row
    if not found:
        raise EvalError(
            f"{side.folder} has no scored predictions for {side.condition} "
            f"(it has: {', '.join(sorted(conditions)) or 'none'})"
        )
    return found


def task_kinds(folder: Path) -> dict[str, str]:
    """Task id -> kind (line, midword, span, api, question) from the run's eval.json."""
    path = folder / "eval.json"
    if not path.is_file():
        raise EvalError(f"{folder} has no eval.json (not a `repotune eval` output)")
    result = json.loads(path.read_text(encoding="utf-8"))
    kinds: dict[str, str] = {}
    for repo in result.get("repos", {}).values():
        kinds.update((task["id"], task["kind"]) for task in repo.get("tasks", []))
        questions = (repo.get("questions") or {}).get("tasks", [])
        kinds.update((task["id"], "question") for task in questions)
    return kinds


def with_shown_exact(rows: dict[str, dict[str, Any]], kind_of: dict[str, str]) -> None:
    """Fill in `shown_exact` for runs scored before it: a line task's answer is one line, so
    all that is shown is right when its first line is and nothing follows."""
    for task, row in rows.items():
        if "shown_exact" in row or "exact_match" not in row:
            continue
        one_line = "\n" not in row["prediction"].strip()
        line_kind = kind_of.get(task) in LINE_KINDS
        row["shown_exact"] = float(bool(row["exact_match"]) and (one_line or not line_kind))


def paired_metric(
    test: dict[str, dict[str, Any]],
    reference: dict[str, dict[str, Any]],
    tasks: Sequence[str],
    metric: str,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    tested = [float(test[t][metric]) for t in tasks]
    referred = [float(reference[t][metric]) for t in tasks]
    interval = paired_bootstrap(tested, referred, resamples=resamples, seed=seed)
    result: dict[str, Any] = {
        "test": round(100 * sum(tested) / len(tasks), 1),
        "reference": round(100 * sum(referred) / len(tasks), 1),
        "difference": interval.points(),  # [test − reference, low, high] in points
    }
    if metric in BINARY_METRICS:
        result["mcnemar"] = mcnemar_exact(tested, referred).to_json()  # a_only: test only
    return result


def compare(
    test_spec: str, reference_specs: Sequence[str], resamples: int = 2000, seed: int = 1234
) -> dict[str, Any]:
    """Per task kind, the test run against the reference run(s) on the tasks both answered."""
    if not reference_specs:
        raise EvalError("compare needs a reference run besides the test run")
    if resamples < 1:
        raise EvalError("--bootstrap must be at least 1")
    test_side = RunSide.parse(test_spec)
    reference_sides = [RunSide.parse(spec) for spec in reference_specs]
    test = scored_predictions(test_side)
    reference: dict[str, dict[str, Any]] = {}
    for side in reference_sides:
        reference.update(scored_predictions(side))
    kind_of = task_kinds(test_side.folder)
    for rows in (test, reference):
        with_shown_exact(rows, kind_of)
    kinds: dict[str, Any] = {}
    for kind in sorted(set(kind_of.values())):
        tasks = sorted(t for t, k in kind_of.items() if k == kind and t in test and t in reference)
        if not tasks:
            continue
        changed = sum(1 for t in tasks if test[t]["prediction"] != reference[t]["prediction"])
        kinds[kind] = {"tasks": len(tasks), "changed_predictions": changed}
        if kind != "question":
            for metric in METRICS:
                kinds[kind][metric] = paired_metric(test, reference, tasks, metric, resamples, seed)
            continue
        answerable = {t for t in tasks if test[t].get("citation") is not None}
        for metric, on_answerable in QUESTION_METRICS.items():
            applies = [
                t
                for t in tasks
                if (t in answerable) == on_answerable
                and test[t].get(metric) is not None
                and reference[t].get(metric) is not None
            ]
            if applies:
                kinds[kind][metric] = paired_metric(
                    test, reference, applies, metric, resamples, seed
                ) | {"tasks": len(applies)}
    if not kinds:
        raise EvalError(
            f"{test_side} and the reference share no task: were they run with the same seed "
            "and repository?"
        )
    return {
        "test": str(test_side),
        "reference": [str(side) for side in reference_sides],
        "bootstrap": {"resamples": resamples, "seed": seed},
        "kinds": kinds,
    }
