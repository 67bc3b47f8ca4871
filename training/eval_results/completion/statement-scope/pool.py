"""Pool paired line-task runs over several repositories: exact match on the first line (how
line tasks are scored) and on all that is shown, with a paired bootstrap interval (2,000
resamples, seed 1234) and McNemar's exact test, and the tokens generated per completion.

    python pool.py EVALS TEST REF [REPO ...]   # EVALS/TEST-REPO and EVALS/REF-REPO hold
                                               # predictions.jsonl from `repotune eval`
                                               # (RepoTune's Python: it imports its compare)
"""

import json
import random
import sys
from math import comb
from pathlib import Path
from statistics import mean

from repotune.training.eval.compare import with_shown_exact

REPOS = ("structlog", "trl", "outlines", "rich", "trpc")


def load(path: Path) -> dict[str, dict]:
    return {row["task"]: row for row in map(json.loads, path.read_text().splitlines())}


def paired(pairs: list[tuple[float, float]]) -> dict:
    rng = random.Random(1234)
    n = len(pairs)
    diffs = [a - b for a, b in pairs]
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(2000))
    gained, lost = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    k, m = min(gained, lost), gained + lost
    p_value = min(1.0, 2 * sum(comb(m, i) for i in range(k + 1)) / 2**m) if m else 1.0
    return {
        "test": round(100 * sum(a for a, _ in pairs) / n, 2),
        "reference": round(100 * sum(b for _, b in pairs) / n, 2),
        "difference": [
            round(100 * sum(diffs) / n, 2),
            round(100 * means[50], 2),
            round(100 * means[1949], 2),
        ],
        "mcnemar": {"a_only": gained, "b_only": lost, "p_value": float(f"{p_value:.3g}")},
    }


def main(evals: Path, test_run: str, ref_run: str, repos: tuple[str, ...]) -> None:
    rows = []
    for repo in repos:
        test = load(evals / f"{test_run}-{repo}" / "predictions.jsonl")
        ref = load(evals / f"{ref_run}-{repo}" / "predictions.jsonl")
        for run in (test, ref):  # runs scored before `shown_exact`: derived as `eval compare` does
            with_shown_exact(run, dict.fromkeys(run, "line"))
        rows += [(test[t], ref[t]) for t in test]
    result = {
        "repos": list(repos),
        "tasks": len(rows),
        "exact_match": paired([(a["exact_match"], b["exact_match"]) for a, b in rows]),
        "shown_exact": paired([(a["shown_exact"], b["shown_exact"]) for a, b in rows]),
        "shown_with_more_lines": {
            "test": sum("\n" in a["prediction"].strip() for a, _ in rows),
            "reference": sum("\n" in b["prediction"].strip() for _, b in rows),
        },
        "tokens_per_completion": {
            "test": round(mean(a["tokens"] for a, _ in rows), 1),
            "reference": round(mean(b["tokens"] for _, b in rows), 1),
        },
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], tuple(sys.argv[4:]) or REPOS)
