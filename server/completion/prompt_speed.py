"""The machine's prompt speed (tokens evaluated per second), measured from the engine's own
evaluations: background prefill steps and requests' prompts.

Latency at a new place follows it (a whole prompt is evaluated before the first token), and it
varies between machines of the same size and with what else runs on them (indexing shares the
cores), so quick start's "auto" mode reads it here instead of assuming one machine.
"""

from __future__ import annotations

import threading
from collections import deque

# Evaluations shorter than this say more about fixed costs than about speed.
MIN_SAMPLE_TOKENS = 32
# The rate is over the latest evaluations only, so it follows the machine's load.
SAMPLES = 8
# No rate until this many tokens were measured.
MIN_MEASURED_TOKENS = 128


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
        """Tokens per second over the latest evaluations; None until enough were measured."""
        with self._lock:
            tokens = sum(count for count, _ in self._samples)
            seconds = sum(spent for _, spent in self._samples)
        if tokens < MIN_MEASURED_TOKENS:
            return None
        return tokens / seconds
