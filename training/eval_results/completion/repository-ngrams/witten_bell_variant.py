"""The variant run of rich-witten-bell/: `repotune` with repo_ngrams' mixing share changed to
Witten-Bell's c/(c+u) (u: how many different tokens followed the match) where the shipped rule
has c/(c+1); RNG_MIN sets MIN_ORDER. Run at commit 195ced3 with a copy of `NgramPrior.choose`
that differed in that one line; since then the share is its own method, replaced here.

    RNG_WB=1 python witten_bell_variant.py eval --repo rich==15.0.0 --conditions default+ctx \
        --line-tasks 200 --midword-tasks 0 --span-tasks 0 --api-tasks 0 --question-tasks 0 \
        --no-parity --out OUT
"""

import os
import sys

import repotune.server.completion.repo_ngrams as rn

if os.environ.get("RNG_MIN"):
    rn.MIN_ORDER = int(os.environ["RNG_MIN"])
if os.environ.get("RNG_WB"):

    def share(self, counts):
        total = sum(counts.values())
        return self._weight * total / (total + len(counts))

    rn.NgramPrior.share = share
from repotune.server.cli.app import main

sys.argv = ["repotune", *sys.argv[1:]]
main()
