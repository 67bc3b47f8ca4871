"""The machine's prompt speed (tokens evaluated per second), measured from the engine's own
evaluations: background prefill steps and requests' prompts.

Latency at a new place follows it (a whole prompt is evaluated before the first token), and it
varies between machines of the same size and with what else runs on them (indexing shares the
cores), so quick start's "auto" mode reads it here instead of assuming one machine.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque

# Evaluations shorter than this (a prefill step is 64 tokens) say more about fixed costs than
# about speed.
MIN_SAMPLE_TOKENS = 64
# The rate is the upper quartile of the latest evaluations': what the machine does when the
# evaluation has the cores (as `repotune doctor --speed` measures it, which quick start's rule
# was set by); evaluations slowed by a query embedding or an index update on the same cores,
# common while typing, do not count unless most are. It still follows a lasting load.
SAMPLES = 16
# No rate until this many evaluations were measured.
MIN_SAMPLES = 2


class PromptSpeed:
    """Recent prompt evaluations and their rate; thread-safe."""

    def __init__(self) -> None:
        self._samples: deque[tuple[int, float]] = deque(maxlen=SAMPLES)
        self._lock = threading.Lock()

    def record(self, tokens: int, seconds: float) -> None:
        """`tokens` prompt tokens were evaluated in `seconds` (short evaluations are ignored)."""
        if tokens < MIN_SAMPLE_TOKENS or seconds <= 0:
            return
        with self._lock:
            self._samples.append((tokens, seconds))

    @property
    def tokens_per_s(self) -> float | None:
        """The upper quartile of the latest evaluations' rates; None until enough were
        measured."""
        with self._lock:
            rates = [count / spent for count, spent in self._samples]
        if len(rates) < MIN_SAMPLES:
            return None
        return statistics.quantiles(rates, n=4, method="inclusive")[2]
