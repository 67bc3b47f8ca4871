"""Token counts, memoised: packing a prompt counts the same lines again and again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

CountTokens = Callable[[str], int]  # text -> tokens


class CachedTokenCounter:
    """Token counts memoised per text: packing a prompt counts the same lines again and again,
    for the engine and for the trainer alike. `tokenize` turns text into token ids.

    Bounded: least recently used entries go first once there are `max_entries` or their texts
    hold `max_chars` characters, and a text longer than `max_key_chars` is counted, not kept (a
    huge buffer's strings must not outlive its request)."""

    def __init__(
        self,
        tokenize: Callable[[str], Sequence[int]],
        max_entries: int = 20_000,
        max_chars: int = 4_000_000,
        max_key_chars: int = 16_384,
    ):
        self._tokenize = tokenize
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._max_key_chars = max_key_chars
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def chars(self) -> int:
        return self._chars

    def __call__(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            count = self._counts.get(text)
            if count is not None:
                self._counts.move_to_end(text)
                return count
        count = len(self._tokenize(text))
        if len(text) > self._max_key_chars:
            return count
        with self._lock:
            if text not in self._counts:
                self._counts[text] = count
                self._chars += len(text)
            while len(self._counts) > self._max_entries or self._chars > self._max_chars:
                old, _ = self._counts.popitem(last=False)
                self._chars -= len(old)
        return count
