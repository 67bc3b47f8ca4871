"""Token healing: a prompt that ends inside a word ends on a token the model rarely saw there.

A user typing `pool_kwarg` leaves the prompt ending in the tokens `kw`, `arg`; in the text the
model learned from, `kwargs` is one token, so after `arg` it predicts what follows a finished
name (` = ...`) and the suggestion drops the `s`. Healing drops the prompt's last token and
makes the first generated tokens spell it out again (any token that starts with it, or a run of
tokens that does): the model then chooses how the word goes on. The text it re-spells is not
part of the suggestion.

The vocabulary's pieces are read once per model; a constraint step looks up the compatible
tokens with a dictionary (pieces that are a prefix of what is left) and a bisection over the
sorted pieces (pieces that start with it).
"""

from __future__ import annotations

import bisect
import ctypes
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# A piece longer than this is not a word's tail worth healing (llama.cpp pieces are short).
_MAX_PIECE_BYTES = 256


@dataclass(frozen=True)
class Healing:
    """The prompt's dropped tail: the first generated tokens must spell out `text`."""

    text: bytes = b""

    def __bool__(self) -> bool:
        return bool(self.text)


NO_HEALING = Healing()


class Vocabulary:
    """A model's token pieces as bytes, indexed for "which tokens fit this text"."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self._by_piece: dict[bytes, list[int]] = {}
        for token, piece in enumerate(pieces):
            if piece:
                self._by_piece.setdefault(piece, []).append(token)
        order = sorted((piece, token) for token, piece in enumerate(pieces) if piece)
        self._sorted_pieces = [piece for piece, _ in order]
        self._sorted_tokens = np.array([token for _, token in order], dtype=np.int64)

    @classmethod
    def of(cls, llm: Any) -> Vocabulary:
        """The pieces of `llm`'s vocabulary (special tokens read as empty: never allowed)."""
        import llama_cpp

        vocab = llm._model.vocab
        buffer = ctypes.create_string_buffer(_MAX_PIECE_BYTES)
        pieces: list[bytes] = []
        for token in range(llm.n_vocab()):
            size = llama_cpp.llama_token_to_piece(vocab, token, buffer, _MAX_PIECE_BYTES, 0, False)
            pieces.append(buffer.raw[:size] if size > 0 else b"")
        return cls(pieces)

    def allowed(self, remaining: bytes) -> np.ndarray:
        """Token ids whose piece starts with `remaining` or is a proper prefix of it."""
        found: list[int] = []
        for end in range(1, len(remaining)):
            found.extend(self._by_piece.get(remaining[:end], ()))
        low = bisect.bisect_left(self._sorted_pieces, remaining)
        high = bisect.bisect_left(self._sorted_pieces, _next_prefix(remaining), lo=low)
        starting = self._sorted_tokens[low:high]
        return np.concatenate([np.array(found, dtype=np.int64), starting])

    def spelled(self, token: int, remaining: bytes) -> bytes:
        """What is left to spell after `token` (one of `allowed(remaining)`)."""
        piece = self.pieces[token]
        return remaining[len(piece) :] if len(piece) < len(remaining) else b""


def _next_prefix(text: bytes) -> bytes:
    """The smallest bytes string above every string that starts with `text`."""
    stripped = text.rstrip(b"\xff")
    if not stripped:
        return b"\xff" * (len(text) + 1)
    return stripped[:-1] + bytes([stripped[-1] + 1])


# Tokens of a half-typed word that healing may drop (`pool_kwarg` is `_`, `kw`, `arg`).
MAX_HEALED_TOKENS = 4
_WORD = re.compile(rb"[A-Za-z0-9_]+")


def wants_healing(piece: bytes) -> bool:
    """Heal a last token that is part of a line: a word's start, a name, an operator, spaces.
    Not a newline (the line is complete) and not a special token (no piece)."""
    return bool(piece) and b"\n" not in piece


def healed_count(pieces: list[bytes]) -> int:
    """How many of the last `pieces` to drop: the tail of a half-typed word (only word
    characters, so `kwargs` can replace `kw` `arg`), else the last token alone."""
    count = 0
    for piece in reversed(pieces[-MAX_HEALED_TOKENS:]):
        if not _WORD.fullmatch(piece):
            break
        count += 1
    return count or int(bool(pieces) and wants_healing(pieces[-1]))


def heal(tokens: list[int], end: int, vocabulary: Vocabulary) -> tuple[list[int], Healing]:
    """`tokens` without the tokens before index `end` (the cursor's) that healing re-spells,
    and what they spelled. Nothing changes when there is nothing to heal."""
    if end <= 0 or end > len(tokens):
        return tokens, NO_HEALING
    pieces = [vocabulary.pieces[token] for token in tokens[max(0, end - MAX_HEALED_TOKENS) : end]]
    count = healed_count(pieces)
    if not count:
        return tokens, NO_HEALING
    return [*tokens[: end - count], *tokens[end:]], Healing(b"".join(pieces[-count:]))


class Speller:
    """The constraint while healing: until the dropped text is spelled out again, only tokens
    that fit it may come next."""

    def __init__(self, vocabulary: Vocabulary | None, healing: Healing) -> None:
        self._vocabulary = vocabulary
        self.remaining = healing.text if vocabulary is not None else b""

    def choose(self, logits: np.ndarray) -> int:
        """The most likely token that fits (greedy), and the constraint moves past it."""
        assert self._vocabulary is not None and self.remaining
        allowed = self._vocabulary.allowed(self.remaining)
        token = int(allowed[int(np.argmax(logits[allowed]))])
        self.advance(token)
        return token

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """`logits` with every token that does not fit at -inf (for sampling)."""
        if not self.remaining or self._vocabulary is None:
            return logits
        masked = np.full_like(logits, -np.inf)
        allowed = self._vocabulary.allowed(self.remaining)
        masked[allowed] = logits[allowed]
        return masked

    def advance(self, token: int) -> None:
        if self.remaining and self._vocabulary is not None:
            self.remaining = self._vocabulary.spelled(token, self.remaining)

    def logits_processor(self, prompt_length: int) -> Callable[[Any, np.ndarray], np.ndarray]:
        """The constraint as llama-cpp-python's logits processor (sampling): it sees the whole
        sequence before each token, so it moves past what was generated since its last call."""
        seen = prompt_length

        def process(input_ids: Any, scores: np.ndarray) -> np.ndarray:
            nonlocal seen
            for token in input_ids[seen:]:
                self.advance(int(token))
            seen = len(input_ids)
            return self.mask(scores)

        return process
