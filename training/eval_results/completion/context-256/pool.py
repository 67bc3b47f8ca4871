"""Pool the three paired runs (600 line tasks): EM and edit-similarity difference with a paired
bootstrap interval (2,000 resamples, seed 1234) and McNemar's exact test.

    python pool.py EVALS [TEST REF]    # EVALS/ctxTEST-REPO, EVALS/ctxREF-REPO: predictions.jsonl
                                       # (TEST REF: 256 512, the default, or 128 256, 128 512;
                                       # a run name that is not a number is the folder's own
                                       # prefix: p384 256 pools EVALS/p384-REPO against ctx256)
"""

import json
import random
import sys
from math import comb
from pathlib import Path

REPOS = ("structlog", "trl", "outlines")


def load(path: Path) -> dict[str, dict]:
    return {row["task"]: row for row in map(json.loads, path.read_text().splitlines())}


def run_folder(evals: Path, run: str, repo: str) -> Path:
    return evals / (f"ctx{run}-{repo}" if run.isdigit() else f"{run}-{repo}")


def main(evals: Path, test_budget: str = "256", ref_budget: str = "512") -> None:
    pairs = []
    for repo in REPOS:
        test = load(run_folder(evals, test_budget, repo) / "predictions.jsonl")
        ref = load(run_folder(evals, ref_budget, repo) / "predictions.jsonl")
        pairs += [(test[t], ref[t]) for t in test]
    rng = random.Random(1234)
    n = len(pairs)

    def interval(diffs: list[float]) -> list[float]:
        means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(2000))
        return [
            round(100 * sum(diffs) / n, 2),
            round(100 * means[50], 2),
            round(100 * means[1949], 2),
        ]

    em = [a["exact_match"] - b["exact_match"] for a, b in pairs]
    es = [a["edit_similarity"] - b["edit_similarity"] for a, b in pairs]
    gained, lost = sum(d > 0 for d in em), sum(d < 0 for d in em)
    k, m = min(gained, lost), gained + lost
    p_value = min(1.0, 2 * sum(comb(m, i) for i in range(k + 1)) / 2**m)
    print(
        json.dumps(
            {
                "tasks": n,
                "exact_match": {
                    "test": round(100 * sum(a["exact_match"] for a, _ in pairs) / n, 2),
                    "reference": round(100 * sum(b["exact_match"] for _, b in pairs) / n, 2),
                    "difference": interval(em),
                    "mcnemar": {"a_only": gained, "b_only": lost, "p_value": round(p_value, 3)},
                },
                "edit_similarity_difference": interval(es),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:4])
