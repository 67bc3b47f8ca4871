"""One generation on the llama.cpp context: the prompt's tokens, then tokens until a stop rule,
a cap or the end of generation. The engine holds the model lock around these calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from repotune.server.completion.postprocess import truncate
from repotune.server.completion.prompts import BuiltPrompt
from repotune.server.llm.decoding import Choose, common_prefix, greedy_tokens
from repotune.server.llm.healing import NO_HEALING, Healing, Speller, Vocabulary, heal

if TYPE_CHECKING:
    from repotune.server.config import CompletionSettings


@dataclass
class Decoded:
    text: str
    reason: str  # why decoding stopped
    generated: int  # tokens
    first_token_at: float | None
    finished_at: float
    counters: dict[str, int]  # reused, drafted, accepted tokens
    tokens: list[int]  # the generated ids, `forced` ones first


def prompt_tokens(
    llm: Any, prompt: BuiltPrompt, vocabulary: Vocabulary | None = None
) -> tuple[list[int], Healing]:
    """The prompt's token ids: BOS when the model wants one, markers as special tokens.
    With a `vocabulary`, the token before the cursor is healed (healing.py): it is left out,
    and the Healing says what the answer must spell first."""
    tokens: list[int] = []
    cursor_end = 0
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") != "false"
    if add_bos and llm.token_bos() >= 0:
        tokens.append(llm.token_bos())
    for segment in prompt.segments:
        special = segment.marker and prompt.special_markers
        piece = llm.tokenize(segment.text.encode("utf-8"), add_bos=False, special=special)
        if special and len(piece) != 1:
            # Code Llama's markers are stored as "▁<PRE>" in its vocabulary.
            alt = llm.tokenize(("▁" + segment.text).encode(), add_bos=False, special=True)
            if len(alt) == 1:
                piece = alt
        tokens.extend(piece)
        if segment.cursor and piece:
            cursor_end = len(tokens)
    if vocabulary is None or not cursor_end:
        return tokens, NO_HEALING
    return heal(tokens, cursor_end, vocabulary)


def fit_window(tokens: list[int], window: int, max_tokens: int) -> list[int]:
    """The prompt's tokens with room left in `window` for `max_tokens` (the budget should
    already leave it; if not, BOS and the end nearest the cursor are kept)."""
    limit = window - 8
    if len(tokens) + max_tokens > limit:
        keep = max(1, limit - max_tokens)
        tokens = tokens[:1] + tokens[len(tokens) - keep + 1 :]
    return tokens


def _token_stream(
    llm: Any,
    tokens: list[int],
    completion: CompletionSettings,
    counters: dict[str, int],
    speller: Speller | None,
    prior: Choose | None,
    answer_start: int,
) -> Generator[int, None, None]:
    import llama_cpp

    if completion.temperature == 0:
        return greedy_tokens(
            llm, tokens, completion.prompt_lookup, counters, speller, prior, answer_start
        )
    counters["reused"] = common_prefix(llm, tokens)
    processor = None
    if speller is not None:
        processor = llama_cpp.LogitsProcessorList([speller.logits_processor(len(tokens))])
    return llm.generate(  # type: ignore[no-any-return]
        tokens,
        temp=completion.temperature,
        top_k=40,
        top_p=0.95,
        min_p=0.05,
        repeat_penalty=1.0,
        reset=True,
        logits_processor=processor,
    )


def _answer_text(llm: Any, generated: list[int], healing: Healing) -> str | None:
    """The generated text after what healing re-spells; None while that is not spelled yet."""
    raw = llm.detokenize(generated) if generated else b""
    if healing:
        if not raw.startswith(healing.text):
            return None
        raw = raw[len(healing.text) :]
    return str(raw.decode("utf-8", errors="ignore"))


def decode(
    llm: Any,
    tokens: list[int],
    completion: CompletionSettings,
    *,
    stop: tuple[str, ...],
    near_prefix: str,
    near_suffix: str,
    multiline: bool,
    cancel: threading.Event,
    first_line: bool = False,
    forced: Sequence[int] = (),
    on_first_token: Callable[[int], None] = lambda reused: None,
    healing: Healing = NO_HEALING,
    vocabulary: Vocabulary | None = None,
    prior: Choose | None = None,
    language: str | None = None,
) -> Decoded | None:
    """Tokens until a stop rule, a cap or the end of generation; None when cancelled.
    `first_line`: a block that stops once its first non-empty line is complete.
    `forced`: tokens already generated (a first line returned earlier); decoding goes on after
    them, so the block starts exactly as that line did.
    `on_first_token` gets how many prompt tokens the KV cache already held.
    `healing`: what the prompt left out before the cursor (prompt_tokens); the first tokens
    spell it again (constrained by `vocabulary`) and it is not part of the answer.
    `prior`: chooses each free greedy token (repo_ngrams.py); sampling ignores it.
    `language`: the buffer's, for how the stop rules read comments."""
    import llama_cpp

    max_tokens = completion.max_tokens_block if multiline else completion.max_tokens_line
    vocab = llm._model.vocab
    generated: list[int] = list(forced)
    text = _answer_text(llm, generated, healing) or ""
    reason = "token cap"
    first_token_at: float | None = None
    # The time cap bounds decoding: a slow cold prompt must not leave a one-token stub.
    deadline = float("inf")
    counters = {"reused": 0, "drafted": 0, "accepted": 0}
    # Forced tokens already spelled what healing dropped.
    speller = Speller(vocabulary, healing) if healing and not forced else None
    stream = _token_stream(
        llm, [*tokens, *forced], completion, counters, speller, prior, len(tokens)
    )
    try:
        for token in stream:
            now = time.perf_counter()
            if first_token_at is None:
                first_token_at = now
                deadline = now + completion.time_cap_ms / 1000
                on_first_token(counters["reused"])
            if cancel.is_set():
                return None
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                reason = "end of generation"
                break
            generated.append(token)
            answer = _answer_text(llm, generated, healing)
            if answer is not None:  # None: still spelling what healing dropped
                text = answer
                cut = truncate(
                    text,
                    prefix=near_prefix,
                    suffix=near_suffix,
                    multiline=multiline,
                    stop=stop,
                    language=language,
                )
                if cut.done:
                    reason = cut.reason
                    break
                if first_line and "\n" in text.lstrip("\n"):
                    start = len(text) - len(text.lstrip("\n"))
                    text = text[: text.index("\n", start)]
                    reason = "first line"
                    break
            if len(generated) >= max_tokens:
                reason = "token cap"
                break
            if now >= deadline:
                reason = "time cap"
                break
    finally:
        stream.close()
    return Decoded(
        text, reason, len(generated), first_token_at, time.perf_counter(), counters, generated
    )


def timings_and_stats(
    prompt_length: int, decoded: Decoded, started: float, tokenized: float
) -> tuple[dict[str, float], dict[str, Any]]:
    """A generation's timings (ms), and them with its token counts (the engine's `last_stats`)."""
    done = time.perf_counter()
    first = decoded.first_token_at or decoded.finished_at
    timings = {
        "tokenize": (tokenized - started) * 1000,
        "prompt_eval": (first - tokenized) * 1000,
        "generate": (decoded.finished_at - first) * 1000,
        "postprocess": (done - decoded.finished_at) * 1000,
        "total": (done - started) * 1000,
    }
    counters = decoded.counters
    stats = {
        "timings": timings,
        "prompt_tokens": prompt_length,
        "reused_tokens": counters["reused"],
        "generated_tokens": decoded.generated,
        "drafted_tokens": counters["drafted"],
        "accepted_tokens": counters["accepted"],
    }
    return timings, stats
