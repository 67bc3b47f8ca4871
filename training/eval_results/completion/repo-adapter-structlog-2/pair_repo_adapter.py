"""Pair a repo+ctx run's predictions with stored default+ctx predictions, task by task.

    python pair_repo_adapter.py STORED_LINES.jsonl STORED_QUESTIONS.jsonl NEW.jsonl

Same tasks (same seed and held-out files), so each task is scored under both conditions; prints
line EM / edit similarity and question metrics with the paired difference (bootstrap 95 %
interval; McNemar's exact test on EM). predictions.jsonl files are not stored in the repository
(they quote third-party code).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from repotune.training.eval.metrics import mcnemar_exact, paired_bootstrap


def rows(path: str, condition: str, kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            is_question = row.get("kind") == "question"
            if row["condition"] == condition and is_question == (kind == "question"):
                found[row["task"]] = row
    return found


def paired(
    new: dict[str, Any], old: dict[str, Any], metric: str, answerable: bool | None = None
) -> dict[str, Any]:
    """`answerable`: only questions about a name the repository defines (they have a citation
    score), or only the others (None: every task)."""
    tasks = sorted(
        t
        for t in new
        if t in old
        and new[t].get(metric) is not None
        and (answerable is None or (old[t].get("citation") is not None) == answerable)
    )
    mine = [float(new[t][metric]) for t in tasks]
    theirs = [float(old[t][metric]) for t in tasks]
    interval = paired_bootstrap(mine, theirs, resamples=2000, seed=1234)
    result: dict[str, Any] = {
        "tasks": len(tasks),
        "default+ctx": round(100 * sum(theirs) / len(tasks), 1),
        "repo+ctx": round(100 * sum(mine) / len(tasks), 1),
        "difference": interval.points(),
    }
    if metric == "exact_match":
        result["mcnemar"] = mcnemar_exact(mine, theirs).to_json()
    return result


def main(stored_lines: str, stored_questions: str, new: str) -> dict[str, Any]:
    lines_old = rows(stored_lines, "default+ctx", "line")
    lines_new = rows(new, "repo+ctx", "line")
    questions_old = rows(stored_questions, "default+ctx", "question")
    questions_new = rows(new, "repo+ctx", "question")
    return {
        "lines": {m: paired(lines_new, lines_old, m) for m in ("exact_match", "edit_similarity")},
        "questions": {
            **{
                m: paired(questions_new, questions_old, m, answerable=True)
                for m in ("citation", "cosine", "rouge_l")
            },
            "false_abstention": paired(questions_new, questions_old, "abstained", True),
            "abstention": paired(questions_new, questions_old, "abstained", answerable=False),
        },
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4]), indent=1))
