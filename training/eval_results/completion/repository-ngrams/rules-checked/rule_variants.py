"""The variant runs of this folder: `repotune` with one of repo_ngrams' rules changed by an
environment variable (run at commit ada9e3c; the shipped rules are those with none set).

    RNG_MIN=4         MIN_ORDER 4 (shipped: 3)
    RNG_ORDK=3        the repository's share scaled by min(1, (order - MIN_ORDER + 1) / 3):
                      a 3-token match counts a third, 4 two thirds, 5 and longer fully
    RNG_NOBUF=1       the open file's window left out (the repository's other files only)
    RNG_FW=1          the open file counts once (shipped: FILE_WEIGHT 2)
    RNG_WINDOW_ONLY=1 a request without a repository gets an empty table, so the open file's
                      window alone still counts (shipped: no n-grams without a repository)

    RNG_MIN=4 python rule_variants.py eval --repo rich==15.0.0 --conditions default+ctx \
        --line-tasks 200 --midword-tasks 0 --span-tasks 0 --api-tasks 0 --question-tasks 0 \
        --no-parity --out OUT
    RNG_WINDOW_ONLY=1 python rule_variants.py eval humaneval --data \
        HumanEval-SingleLineInfilling.jsonl.gz --conditions default --limit 200 --out OUT
"""

import os
import sys

import numpy as np
import repotune.server.completion.repo_ngrams as rn
import repotune.server.completion.repositories as rp

if os.environ.get("RNG_MIN"):
    rn.MIN_ORDER = int(os.environ["RNG_MIN"])
if os.environ.get("RNG_FW"):
    rn.FILE_WEIGHT = float(os.environ["RNG_FW"])
if os.environ.get("RNG_ORDK"):
    steps = float(os.environ["RNG_ORDK"])
    shipped_counts, shipped_share = rn.NgramPrior.next_counts, rn.NgramPrior.share

    def next_counts(self, generated):
        context = np.concatenate([self._before, np.asarray(generated, dtype=np.int64)])
        context = context[-rn.MAX_ORDER :]
        in_file = rn._following_in(self._buffer, context)[0]
        self._order = max(in_file, self._table.following(context, self._path)[0])
        return shipped_counts(self, generated)

    def share(self, counts):
        return shipped_share(self, counts) * min(1.0, (self._order - rn.MIN_ORDER + 1) / steps)

    rn.NgramPrior.next_counts, rn.NgramPrior.share = next_counts, share
if os.environ.get("RNG_NOBUF"):
    shipped_following_in = rn._following_in
    shipped_next_counts = rn.NgramPrior.next_counts

    def next_counts_without_window(self, generated):
        rn._following_in = lambda tokens, context: (0, np.zeros(0, dtype=np.int64))
        try:
            return shipped_next_counts(self, generated)
        finally:
            rn._following_in = shipped_following_in

    rn.NgramPrior.next_counts = next_counts_without_window
if os.environ.get("RNG_WINDOW_ONLY"):
    shipped_for_request = rp.ModelRepositories.for_request
    empty: dict[int, rn.RepositoryNgrams] = {}

    def for_request(self, loaded, request, weight):
        if request.repository is None and weight > 0:
            if id(loaded) not in empty:
                empty.clear()
                empty[id(loaded)] = rn.RepositoryNgrams()
            return empty[id(loaded)]
        return shipped_for_request(self, loaded, request, weight)

    rp.ModelRepositories.for_request = for_request

from repotune.server.cli.app import main

sys.argv = ["repotune", *sys.argv[1:]]
main()
