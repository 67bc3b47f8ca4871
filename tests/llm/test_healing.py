"""Token healing: which tokens are dropped, which may spell them again, and the constraint."""

from __future__ import annotations

import numpy as np
import pytest
from repotune.server.llm.healing import (
    NO_HEALING,
    Healing,
    Speller,
    Vocabulary,
    heal,
    healed_count,
)

PIECES = [
    b"",
    b"pool",
    b"_",
    b"kw",
    b"arg",
    b"args",
    b"kwargs",
    b" =",
    b" ",
    b"\n",
    b"ar",
    b"x",
    b"g",
]
TOKEN = {piece: i for i, piece in enumerate(PIECES) if piece}


def test_allowed_tokens_fit_what_is_left_to_spell() -> None:
    vocabulary = Vocabulary(PIECES)
    fits = {PIECES[t] for t in vocabulary.allowed(b"arg")}
    assert fits == {b"arg", b"args", b"ar"}  # start with it, or are a prefix of it
    assert {PIECES[t] for t in vocabulary.allowed(b"kwarg")} == {b"kwargs", b"kw"}
    assert vocabulary.allowed(b"zzz").size == 0
    assert b"" not in {PIECES[t] for t in vocabulary.allowed(b"a")}  # special tokens never fit


def test_allowed_handles_the_top_byte() -> None:
    vocabulary = Vocabulary([b"", b"\xff", b"\xff\xfe", b"\xfe"])
    assert sorted(vocabulary.allowed(b"\xff").tolist()) == [1, 2]


def test_a_half_typed_word_is_dropped_whole() -> None:
    assert healed_count([b"x", b" =", b" pool", b"_", b"kw", b"arg"]) == 3
    assert healed_count([b"x", b" ="]) == 1  # not a word: the last token alone
    assert healed_count([b"x", b" =", b" "]) == 1
    assert healed_count([b"x", b"\n"]) == 0  # the line is complete
    assert healed_count([b"x", b""]) == 0  # a special token
    assert healed_count([b"a"] * 9) == 4  # at most MAX_HEALED_TOKENS


def test_heal_removes_the_cursor_tokens_and_keeps_what_follows() -> None:
    vocabulary = Vocabulary(PIECES)
    ids = [TOKEN[b"pool"], TOKEN[b"_"], TOKEN[b"kw"], TOKEN[b"arg"], TOKEN[b"\n"], TOKEN[b"x"]]
    tokens, healing = heal(ids, 4, vocabulary)  # the cursor after `arg`, a suffix after it
    assert healing == Healing(b"pool_kwarg")
    assert tokens == [TOKEN[b"\n"], TOKEN[b"x"]]
    assert heal([TOKEN[b"x"], TOKEN[b"\n"]], 2, vocabulary) == (
        [TOKEN[b"x"], TOKEN[b"\n"]],
        NO_HEALING,
    )


def test_speller_picks_the_likeliest_fitting_token_until_spelled() -> None:
    vocabulary = Vocabulary(PIECES)
    speller = Speller(vocabulary, Healing(b"kwarg"))
    logits = np.zeros(len(PIECES), dtype=np.float32)
    logits[TOKEN[b" ="]] = 9.0  # the unconstrained favourite does not fit
    logits[TOKEN[b"kw"]] = 2.0
    logits[TOKEN[b"kwargs"]] = 1.0
    assert speller.choose(logits) == TOKEN[b"kw"]
    assert speller.remaining == b"arg"
    logits[TOKEN[b"args"]] = 3.0
    assert speller.choose(logits) == TOKEN[b"args"]  # goes past the word: spelled
    assert speller.remaining == b""
    assert speller.mask(logits) is logits  # nothing constrained any more


def test_mask_keeps_only_fitting_tokens_for_sampling() -> None:
    vocabulary = Vocabulary(PIECES)
    speller = Speller(vocabulary, Healing(b"arg"))
    process = speller.logits_processor(prompt_length=2)
    scores = np.ones(len(PIECES), dtype=np.float32)
    masked = process(np.array([7, 7]), scores)
    assert {PIECES[i] for i in np.flatnonzero(np.isfinite(masked))} == {b"arg", b"args", b"ar"}
    # the sampler chose `ar`: the next call sees it and moves past it
    masked = process(np.array([7, 7, TOKEN[b"ar"]]), scores)
    assert speller.remaining == b"g"
    assert {PIECES[i] for i in np.flatnonzero(np.isfinite(masked))} == {b"g"}


@pytest.mark.slow
def test_real_vocabulary_heals_a_half_typed_name(generator_model) -> None:
    """Gemma 3's own pieces: `pool_kwarg` is dropped to its word start, and `kwargs` fits."""
    from llama_cpp import Llama

    llm = Llama(str(generator_model.path), n_ctx=256, verbose=False)
    try:
        vocabulary = Vocabulary.of(llm)
        ids = llm.tokenize(b"x = pool_kwarg", add_bos=False)
        tokens, healing = heal(ids, len(ids), vocabulary)
        assert healing.text.endswith(b"kwarg") and b"=" not in healing.text
        assert llm.detokenize(tokens) + healing.text == b"x = pool_kwarg"
        fitting = {vocabulary.pieces[t] for t in vocabulary.allowed(healing.text)}
        assert all(p.startswith(healing.text) or healing.text.startswith(p) for p in fitting)
        # once `_` is spelled, a piece that finishes the name fits: `kwargs`
        assert b"kwargs" in {vocabulary.pieces[t] for t in vocabulary.allowed(b"kwarg")}
    finally:
        llm.close()
