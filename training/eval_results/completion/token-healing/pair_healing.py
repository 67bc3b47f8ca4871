"""Pair two sets of predictions of the same tasks, task by task.

    python pair_healing.py ON_DIR OFF_DIR [OFF_DIR ...]

A folder is a `repotune eval` output folder, optionally `DIR@CONDITION` (default: default+ctx).
ON_DIR ("on": token healing on, or the condition under test) is compared with the OFF_DIRs
("off": the same tasks, same seed and held-out files, with healing off or the reference
condition). Task kinds come from ON_DIR's eval.json. Prints, per kind, exact match and edit
similarity on both sides with the paired difference on − off (bootstrap 95 % interval; McNemar's
exact test on EM), and how many predictions changed. predictions.jsonl files are not stored in
the repository (they quote third-party code).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from repotune.training.eval.metrics import mcnemar_exact, paired_bootstrap

CONDITION = "default+ctx"


def folder_and_condition(spec: str) -> tuple[Path, str]:
    folder, _, condition = spec.partition("@")
    return Path(folder), condition or CONDITION


def predictions(spec: str) -> dict[str, dict[str, Any]]:
    folder, condition = folder_and_condition(spec)
    found = {}
    with open(folder / "predictions.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["condition"] == condition and "exact_match" in row:
                found[row["task"]] = row
    return found


def kinds(folder: Path) -> dict[str, str]:
    result = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
    return {task["id"]: task["kind"] for repo in result["repos"].values() for task in repo["tasks"]}


def paired(on: dict[str, Any], off: dict[str, Any], tasks: list[str], metric: str) -> dict:
    with_healing = [float(on[t][metric]) for t in tasks]
    without = [float(off[t][metric]) for t in tasks]
    interval = paired_bootstrap(with_healing, without, resamples=2000, seed=1234)
    result: dict[str, Any] = {
        "off": round(100 * sum(without) / len(tasks), 1),
        "on": round(100 * sum(with_healing) / len(tasks), 1),
        "difference": interval.points(),
    }
    if metric == "exact_match":
        result["mcnemar"] = mcnemar_exact(with_healing, without).to_json()
    return result


def main(on_dir: str, *off_dirs: str) -> dict[str, Any]:
    on = predictions(on_dir)
    off: dict[str, dict[str, Any]] = {}
    for spec in off_dirs:
        off.update(predictions(spec))
    kind_of = kinds(folder_and_condition(on_dir)[0])
    report: dict[str, Any] = {}
    for kind in sorted(set(kind_of.values())):
        tasks = sorted(t for t, k in kind_of.items() if k == kind and t in on and t in off)
        if not tasks:
            continue
        changed = [t for t in tasks if on[t]["prediction"] != off[t]["prediction"]]
        report[kind] = {
            "tasks": len(tasks),
            "changed_predictions": len(changed),
            **{m: paired(on, off, tasks, m) for m in ("exact_match", "edit_similarity")},
        }
    return report


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:]), indent=1))
