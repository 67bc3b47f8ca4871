"""Recent completions, answered again on a repeat or while the user types through one."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from repotune.server.completion.request import CompletionResult

# How much text around the cursor keys the result cache.
CACHE_PREFIX_CHARS = 1500
CACHE_SUFFIX_CHARS = 500
# How many recent entries a "typing through" lookup scans.
TYPE_THROUGH_SCAN = 32


@dataclass(frozen=True)
class CacheEntry:
    path: str
    prefix_tail: str
    suffix_head: str
    text: str
    multiline: bool
    format: str
    quick: bool = False

    def as_result(self, total_ms: float) -> CompletionResult:
        """This entry as a request's answer (nothing evaluated or generated)."""
        return CompletionResult(
            text=self.text,
            multiline=self.multiline,
            timings={"tokenize": 0.0, "prompt_eval": 0.0, "generate": 0.0, "total": total_ms},
            prompt_tokens=0,
            reused_tokens=0,
            generated_tokens=0,
            cached=True,
            format=self.format,
            stop_reason="cache",
            quick=self.quick,
        )


class CompletionCache:
    """LRU of recent completions keyed by (path, text before and after the cursor)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str, str], CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(path: str, prefix: str, suffix: str) -> tuple[str, str, str]:
        return (path, prefix[-CACHE_PREFIX_CHARS:], suffix[:CACHE_SUFFIX_CHARS])

    def put(self, path: str, prefix: str, suffix: str, result: CompletionResult) -> None:
        if self.size <= 0:
            return
        key = self.key(path, prefix, suffix)
        entry = CacheEntry(
            key[0], key[1], key[2], result.text, result.multiline, result.format, result.quick
        )
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def has(self, path: str, prefix: str, suffix: str) -> bool:
        """An exact entry is there (counts no hit or miss)."""
        with self._lock:
            return self.key(path, prefix, suffix) in self._entries

    def get(self, path: str, prefix: str, suffix: str) -> CacheEntry | None:
        """An exact hit, or the rest of a cached completion the user is typing through."""
        key = self.key(path, prefix, suffix)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
            for candidate in list(reversed(self._entries.values()))[:TYPE_THROUGH_SCAN]:
                if candidate.path != path or candidate.suffix_head != key[2]:
                    continue
                for typed in range(1, len(candidate.text)):
                    if not prefix.endswith(candidate.text[:typed]):
                        continue
                    tail = candidate.prefix_tail[-CACHE_PREFIX_CHARS:]
                    if not prefix.endswith(tail, 0, len(prefix) - typed):
                        continue
                    rest = candidate.text[typed:]
                    if not rest.strip():
                        continue
                    # A line's own break (a line opened above code) is part of the line.
                    if not candidate.multiline and "\n" in rest.rstrip("\n"):
                        continue
                    self.hits += 1
                    return replace(candidate, text=rest)
            self.misses += 1
            return None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
