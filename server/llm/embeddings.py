"""The embedder: a GGUF sentence-embedding model run by llama.cpp, batched, no torch."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from repotune.server.llm.gpu import (
    block_count,
    load_with_fallback,
    offload_supported,
    offloaded_layers,
    requested_layers,
)
from repotune.server.llm.runtime import llama_extra_buffers, llama_verbose, thread_count
from repotune.server.models import ModelError, resolve_embedder

# The window sentence-transformers uses for all-MiniLM-L6-v2; longer texts are cut, as it does.
DEFAULT_MAX_TOKENS = 256
# Queries of this many tokens are padded (with a second sequence) to the fast batch size.
PAD_QUERY_FROM = 32
PAD_QUERY_TO = 64
# BERT's WordPiece turns a word of more than 100 characters into [UNK]; llama.cpp does not, so
# such runs (long hashes, minified identifiers) are mapped to [UNK] here to keep parity.
_OVERLONG_WORD = re.compile(r"[^\W_]{101,}")


class QueryFirstLock:
    """One embedder serves the background fill and the queries: a waiting query goes before the
    fill's next slice, so a completion waits at most for one small slice, not a whole batch (a
    second embedder would cost ~100 MB of RSS)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns = threading.Condition()
        self._queries_waiting = 0

    @contextlib.contextmanager
    def for_query(self, timeout: float) -> Iterator[bool]:
        """Yields whether the embedder was had within `timeout` seconds."""
        with self._turns:
            self._queries_waiting += 1
        try:
            acquired = self._lock.acquire(timeout=timeout)
        finally:
            with self._turns:
                self._queries_waiting -= 1
                self._turns.notify_all()
        try:
            yield acquired
        finally:
            if acquired:
                self._lock.release()

    @contextlib.contextmanager
    def for_background(self) -> Iterator[None]:
        with self._turns:
            self._turns.wait_for(lambda: self._queries_waiting == 0)
        with self._lock:
            yield


class Embedder:
    """Turns texts into L2-normalised float32 vectors. Thread-safe (one call at a time)."""

    def __init__(
        self,
        model_path: Path,
        threads: int = 0,
        batch_tokens: int = 512,
        max_tokens: int | None = None,
        gpu_layers: int | str = "auto",
    ) -> None:
        """`batch_tokens` bounds one llama.cpp batch: texts are packed into it whole, and its
        attention buffers grow with its square (2048 cost far more memory than 512 and was
        no faster), so it only needs to hold the longest text (`max_tokens`)."""
        from llama_cpp import LLAMA_POOLING_TYPE_NONE, LLAMA_POOLING_TYPE_RANK, Llama

        self.model_path = model_path
        self.threads = thread_count(threads or 0)

        def build(n_gpu_layers: int) -> Llama:
            with llama_extra_buffers(True):  # one load at a time in the process (see there)
                return Llama(
                    model_path=str(model_path),
                    embedding=True,
                    n_ctx=batch_tokens,
                    n_batch=batch_tokens,
                    n_ubatch=batch_tokens,
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    n_gpu_layers=n_gpu_layers,
                    flash_attn=True,
                    verbose=llama_verbose(),
                )

        try:
            self._llm, self.gpu_layers, self.gpu_fallback = load_with_fallback(
                build, requested_layers(gpu_layers, offload_supported()), "embedder"
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(
                f"embedder {model_path}: llama.cpp could not load it ({exc})"
            ) from None
        if self._llm._ctx.pooling_type() in (LLAMA_POOLING_TYPE_NONE, LLAMA_POOLING_TYPE_RANK):
            self._llm.close()  # a vector per token (a generator) or a score: not one per text
            raise ModelError(
                f"embedder {model_path}: it gives no vector per text (no pooling in its "
                "metadata: a generator? a generator goes in model.generator)"
            )
        metadata = self._llm.metadata
        if self.gpu_layers:  # as many as llama.cpp offloads (all: the blocks + the output)
            self.gpu_layers = offloaded_layers(self.gpu_layers, block_count(metadata))
        self.max_tokens = min(
            batch_tokens,
            max_tokens or int(metadata.get("repotune.max_seq_tokens", DEFAULT_MAX_TOKENS)),
        )
        self.dimension = int(self._llm.n_embd())
        self._lock = threading.Lock()
        self._cls = self._llm.token_bos()
        self._sep = self._llm.token_eos()
        # Llama.embed tokenises internally and would cut [SEP] off a long text; truncate here
        # instead, the way sentence-transformers does (keep [CLS] ... [SEP]).
        original_tokenize: Callable[..., list[int]] = self._llm.tokenize
        unknown = self._llm.tokenize(b"[UNK]", add_bos=False, special=True)

        def tokenize_truncated(
            text: bytes, add_bos: bool = True, special: bool = False
        ) -> list[int]:
            decoded = text.decode("utf-8", errors="replace")
            if _OVERLONG_WORD.search(decoded) is None:
                tokens = original_tokenize(text, add_bos, special)
            else:
                tokens = [self._cls]
                for index, piece in enumerate(_OVERLONG_WORD.split(decoded)):
                    if index:
                        tokens.extend(unknown)
                    tokens.extend(original_tokenize(piece.encode(), True, special)[1:-1])
                tokens.append(self._sep)
            if len(tokens) > self.max_tokens:
                tokens = [*tokens[: self.max_tokens - 1], self._sep]
            return tokens

        self._llm.tokenize = tokenize_truncated  # type: ignore[method-assign]

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8")))

    def count_text_tokens(self, text: str) -> int:
        """Tokens of `text` alone, without [CLS]/[SEP]: to budget a query line by line."""
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False))

    def embed_query(self, text: str) -> np.ndarray:
        """One text, fast: llama.cpp's CPU matrix products take a slow path below 64 tokens in a
        batch (a query just short of 64 tokens took about twice as long as a 64-token one), so
        a short query is sent with a filler sequence beside it. Sequences do not see each other
        (own attention mask, own pooling): the vector is the same (tests/llm/test_embeddings.py)."""
        tokens = self.count_tokens(text)
        if PAD_QUERY_FROM <= tokens < PAD_QUERY_TO:
            filler = " ".join(["x"] * max(1, PAD_QUERY_TO - tokens - 2))
            return self.embed([text, filler])[0]
        return self.embed([text])[0]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        cleaned = [text if text.strip() else "(empty)" for text in texts]
        with self._lock:
            vectors = self._llm.embed(list(cleaned), normalize=True, truncate=True)
        return np.asarray(vectors, dtype=np.float32)

    def close(self) -> None:
        with self._lock:
            self._llm.close()


def load_embedder(
    reference: str = "default", threads: int = 0, gpu_layers: int | str = "auto"
) -> Embedder:
    return Embedder(resolve_embedder(reference).path, threads=threads, gpu_layers=gpu_layers)


class SharedEmbedders:
    """One embedder, and its turn-taking lock, per model for all the workspace folders of a
    server: each costs ~140 MB of RSS, so a multi-root session must not load one per folder."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: dict[tuple[str, int], QueryFirstLock] = {}
        self._loaded: dict[tuple[str, int], Embedder] = {}

    def lock_for(self, reference: str, threads: int) -> QueryFirstLock:
        with self._lock:
            return self._turns.setdefault((reference, threads), QueryFirstLock())

    def get(self, reference: str, threads: int, gpu_layers: int | str = "auto") -> Embedder:
        key = (reference, threads)  # the first folder's gpu_layers holds for the shared one
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load_embedder(reference, threads, gpu_layers)
            return self._loaded[key]

    def close(self) -> None:
        with self._lock:
            loaded, self._loaded = list(self._loaded.values()), {}
        for embedder in loaded:
            with contextlib.suppress(Exception):
                embedder.close()
