"""Pair default+ctx predictions with token healing on and off, task by task.

    python pair_healing.py ON_DIR OFF_DIR [OFF_DIR ...]

ON_DIR is a `repotune eval` output folder run with `--set completion.token_healing=true`; the
OFF_DIRs hold runs of the same tasks (same seed and held-out files) with it off. Task kinds come
from ON_DIR's eval.json. Prints, per kind, exact match and edit similarity under both settings
with the paired difference (bootstrap 95 % interval; McNemar's exact test on EM), and which
predictions changed. predictions.jsonl files are not stored in the repository (they quote
third-party code).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from repotune.training.eval.metrics import mcnemar_exact, paired_bootstrap

CONDITION = "default+ctx"


def predictions(folder: Path) -> dict[str, dict[str, Any]]:
    found = {}
    with open(folder / "predictions.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["condition"] == CONDITION and "exact_match" in row:
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
    on = predictions(Path(on_dir))
    off: dict[str, dict[str, Any]] = {}
    for folder in off_dirs:
        off.update(predictions(Path(folder)))
    kind_of = kinds(Path(on_dir))
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
