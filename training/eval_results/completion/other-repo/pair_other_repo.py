"""Pair other-repo+ctx line predictions with stored default+ctx and repo+ctx ones, task by task.

    python pair_other_repo.py OTHER.jsonl STORED.jsonl [STORED.jsonl ...]

Same tasks (same seed and held-out files) under each condition; prints, per repository, line
exact match and edit similarity of each condition and other-repo+ctx's paired difference from
each (bootstrap 95 % interval, McNemar's exact test on EM). predictions.jsonl files are not
stored in the repository (they quote third-party code).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

from repotune.training.eval.metrics import mcnemar_exact, paired_bootstrap

OTHER = "other-repo+ctx"


def load(paths: list[str]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if row.get("kind", "line") != "question" and "exact_match" in row:
                    rows[(row["repo"], row["condition"])][row["task"]] = row
    return rows


def compare(paths: list[str]) -> dict[str, Any]:
    rows = load(paths)
    report: dict[str, Any] = {}
    for repo in sorted({repo for repo, condition in rows if condition == OTHER}):
        other = rows[(repo, OTHER)]
        tasks = sorted(other)
        result: dict[str, Any] = {"tasks": len(tasks)}
        for metric in ("exact_match", "edit_similarity"):
            mine = [other[t][metric] for t in tasks]
            entry: dict[str, Any] = {OTHER: round(100 * sum(mine) / len(mine), 1)}
            for condition in ("default+ctx", "repo+ctx"):
                theirs_rows = rows.get((repo, condition), {})
                if not all(t in theirs_rows for t in tasks):
                    continue
                theirs = [theirs_rows[t][metric] for t in tasks]
                interval = paired_bootstrap(mine, theirs, resamples=2000, seed=1234)
                entry[condition] = {
                    "score": round(100 * sum(theirs) / len(theirs), 1),
                    "other_minus": interval.points(),
                }
                if metric == "exact_match":
                    entry[condition]["mcnemar"] = mcnemar_exact(mine, theirs).to_json()
            result[metric] = entry
        report[repo] = result
    return report


if __name__ == "__main__":
    print(json.dumps(compare(sys.argv[1:]), indent=1))
