"""Saved KV caches of the last few files, so going back to one re-evaluates only what changed.

llama.cpp keeps one KV cache per context; the engine reuses its longest common prefix with the
next prompt. A prompt for another file shares little with it, so before the context moves to
another file its cache is copied out (`llama_state_seq_get_data`: the KV cells of sequence 0,
no logits), and a prompt that shares more with a saved copy than with the live cache gets the
copy restored first. Copies are taken only when the context switches files, so typing in one
file costs nothing.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# A restore must save at least this many tokens of evaluation to be worth its copy.
MIN_GAIN_TOKENS = 32


@dataclass
class _Slot:
    tokens: np.ndarray  # the token ids whose KV cells `data` holds
    data: Any  # ctypes byte buffer from llama_state_seq_get_data


def _common(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    mismatch = np.nonzero(a[:n] != b[:n])[0]
    return int(mismatch[0]) if len(mismatch) else n


class KvSlots:
    """An LRU of saved KV caches keyed by file path; all calls hold the engine's model lock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._lock = threading.Lock()
        self.owner: str | None = None  # the file whose prompt the live cache holds
        self.saved = 0
        self.restored = 0
        self.restored_tokens = 0

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()
            self.owner = None

    def bytes_held(self) -> int:
        with self._lock:
            return sum(len(slot.data) for slot in self._slots.values())

    def best_start(self, llm: Any, tokens: Sequence[int]) -> int:
        """How many of `tokens` the live cache or a saved one already holds (the prompt's
        evaluation can start there)."""
        wanted = np.asarray(tokens, dtype=np.intc)
        best = _common(np.asarray(llm.input_ids[: llm.n_tokens], dtype=np.intc), wanted)
        with self._lock:
            for slot in self._slots.values():
                best = max(best, _common(slot.tokens, wanted))
        return best

    def prepare(self, llm: Any, path: str, tokens: Sequence[int]) -> int:
        """Make the live cache the best start for `tokens` (a prompt for `path`): save the live
        cache when it belongs to another file, restore a saved one that shares more. Returns
        how many tokens a restore brought back (0 when none)."""
        import llama_cpp

        if self.size <= 0:
            return 0
        wanted = np.asarray(tokens, dtype=np.intc)
        live = np.asarray(llm.input_ids[: llm.n_tokens], dtype=np.intc)
        with self._lock:
            if self.owner is not None and self.owner != path and len(live):
                self._save(llm, self.owner, live)
            self.owner = path
            best_path, best = None, _common(live, wanted) + MIN_GAIN_TOKENS
            for slot_path, slot in self._slots.items():
                shared = _common(slot.tokens, wanted)
                if shared > best:
                    best_path, best = slot_path, shared
            if best_path is None:
                return 0
            slot = self._slots[best_path]
            self._slots.move_to_end(best_path)
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            if not llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, slot.data, len(slot.data), 0):
                llm.n_tokens = 0  # the cache is empty now: the prompt is evaluated in full
                return 0
            count = len(slot.tokens)
            llm.input_ids[:count] = slot.tokens
            llm.n_tokens = count
            self.restored += 1
            self.restored_tokens += best
            return best

    def rename_owner(self, path: str) -> None:
        """The live cache now counts as `path`'s (its prompt was evaluated under another key)."""
        with self._lock:
            self.owner = path

    def _save(self, llm: Any, path: str, live: np.ndarray) -> None:
        import llama_cpp

        ctx = llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        data = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, data, size, 0)
        if not written:
            return
        self._slots[path] = _Slot(live.copy(), data)
        self._slots.move_to_end(path)
        self.saved += 1
        while len(self._slots) > self.size:
            self._slots.popitem(last=False)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "slots": len(self._slots),
                "saved": self.saved,
                "restored": self.restored,
                "restored_tokens": self.restored_tokens,
                "bytes": sum(len(slot.data) for slot in self._slots.values()),
            }
