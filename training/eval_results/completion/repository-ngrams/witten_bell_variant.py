"""The variant run of rich-witten-bell/: `repotune` with repo_ngrams' mixing share changed to
Witten-Bell's c/(c+u) (u: how many different tokens followed the match) where the shipped rule
has c/(c+1); RNG_MIN sets MIN_ORDER. Written against commit 195ced3.

    RNG_WB=1 python witten_bell_variant.py eval --repo rich==15.0.0 --conditions default+ctx \
        --line-tasks 200 --midword-tasks 0 --span-tasks 0 --api-tasks 0 --question-tasks 0 \
        --no-parity --out OUT
"""

import os
import sys

import numpy as np
import repotune.server.completion.repo_ngrams as rn

if os.environ.get("RNG_MIN"):
    rn.MIN_ORDER = int(os.environ["RNG_MIN"])
if os.environ.get("RNG_WB"):

    def choose(self, logits, generated):
        best = int(logits.argmax())
        counts = self.next_counts(generated)
        if not counts:
            return best
        total = sum(counts.values())
        share = self._weight * total / (total + len(counts))
        shifted = np.exp(logits - logits[best])
        model = shifted / shifted.sum()
        mixed_best, mixed_score = best, (1 - share) * float(model[best])
        if best in counts:
            mixed_score += share * counts[best] / total
        for token, count in counts.items():
            if not np.isfinite(logits[token]):
                continue
            score = (1 - share) * float(model[token]) + share * count / total
            if score > mixed_score:
                mixed_best, mixed_score = token, score
        return mixed_best

    rn.NgramPrior.choose = choose
from repotune.server.cli.app import main

sys.argv = ["repotune", *sys.argv[1:]]
main()
