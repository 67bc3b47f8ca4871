"""Pair a quick-start run's line predictions with a stored run's, task by task (same seed).

    python compare.py STORED/predictions.jsonl QUICK/predictions.jsonl [PROMPT_TOKEN_LIMIT]

Prints, per repository, the quick run's exact match and edit similarity, each stored
condition's, and the paired difference (bootstrap 95 % interval, McNemar's exact test on EM).
A quick prediction whose prompt had fewer than PROMPT_TOKEN_LIMIT tokens came from the short
prompt. predictions.jsonl files are not stored in the repository (they quote third-party code).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

from repotune.training.eval.metrics import mcnemar_exact, paired_bootstrap

CONDITIONS = ("default+ctx", "default", "base+ctx", "base")


def load(path: str, label: str | None) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            rows[(record["repo"], label or record["condition"])][record["task"]] = record
    return rows


def compare(stored: str, quick: str, limit: int) -> dict[str, Any]:
    rows = {**load(stored, None), **load(quick, "quick")}
    report: dict[str, Any] = {}
    for repo in sorted({repo for repo, _ in rows}):
        answers = rows.get((repo, "quick"), {})
        if not answers:
            continue
        tasks = sorted(answers)
        prompt_tokens = [answers[t]["prompt_tokens"] for t in tasks]
        result: dict[str, Any] = {
            "tasks": len(tasks),
            "quick_answers": sum(1 for n in prompt_tokens if n < limit),
            "quick_prompt_tokens_mean": round(sum(prompt_tokens) / len(tasks), 1),
        }
        for metric in ("exact_match", "edit_similarity"):
            mine = [answers[t][metric] for t in tasks]
            result[metric] = {"quick": round(100 * sum(mine) / len(mine), 1)}
            for condition in CONDITIONS:
                other = rows.get((repo, condition))
                if not other:
                    continue
                theirs = [other[t][metric] for t in tasks]
                interval = paired_bootstrap(mine, theirs, resamples=2000, seed=1234)
                entry: dict[str, Any] = {
                    "em": round(100 * sum(theirs) / len(theirs), 1),
                    "quick_minus": interval.points(),
                }
                if metric == "exact_match":
                    entry["mcnemar"] = mcnemar_exact(mine, theirs).to_json()
                result[metric][condition] = entry
        report[repo] = result
    return report


if __name__ == "__main__":
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 250
    print(json.dumps(compare(sys.argv[1], sys.argv[2], limit), indent=1))
