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
# The rate is the median of the latest evaluations', so it follows the machine's load but not
# one evaluation slowed by a query embedding on the same cores.
SAMPLES = 8
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
        """The median rate of the latest evaluations; None until enough were measured."""
        with self._lock:
            rates = [count / spent for count, spent in self._samples]
        if len(rates) < MIN_SAMPLES:
            return None
        return statistics.median(rates)
