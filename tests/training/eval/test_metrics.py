"""Evaluation metrics against hand-computed cases (and the LCS against a plain DP)."""

from __future__ import annotations

import random

import pytest
from repotune.training.eval.metrics import (
    edit_similarity,
    exact_match,
    first_line,
    hit,
    identifier_match,
    identifiers,
    key_identifier,
    lcs_length,
    mcnemar_exact,
    normalize,
    paired_bootstrap,
    percentile,
)


def _lcs_dp(a: str, b: str) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            if x == y:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def test_lcs_hand_cases() -> None:
    assert lcs_length("kitten", "sitting") == 4  # i, t, t, n
    assert lcs_length("abc", "abc") == 3
    assert lcs_length("abc", "") == 0
    assert lcs_length("abcbdab", "bdcaba") == 4  # the textbook (CLRS) example
    assert lcs_length("aaaa", "aa") == 2


def test_lcs_matches_dynamic_programming() -> None:
    rng = random.Random(7)
    for _ in range(300):
        a = "".join(rng.choice("abcd(). _") for _ in range(rng.randrange(0, 90)))
        b = "".join(rng.choice("abcd(). _") for _ in range(rng.randrange(0, 90)))
        assert lcs_length(a, b) == _lcs_dp(a, b), (a, b)


def test_edit_similarity_is_fuzz_ratio() -> None:
    # fuzz.ratio("this is a test", "this is a test!") == 97 (2*14/29 = 0.9655...)
    assert edit_similarity("this is a test", "this is a test!") == pytest.approx(28 / 29)
    assert edit_similarity("kitten", "sitting") == pytest.approx(8 / 13)
    assert edit_similarity("foo(x)", "foo(x)") == 1.0
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("abc", "") == 0.0
    assert edit_similarity("abc", "xyz") == 0.0


def test_normalize_and_exact_match() -> None:
    assert normalize("\n\n  return x  \n    y\t\n\n") == "return x\n    y"
    assert exact_match("return x   \n", "return x")
    assert exact_match("    return x", "return x")  # the first line's indentation is the cursor's
    assert not exact_match("return  x", "return x")  # inner spaces count
    assert not exact_match("a\n  b", "a\nb")  # indentation of later lines counts


def test_first_line() -> None:
    assert first_line("\n\n  foo(x)\nbar") == "  foo(x)"
    assert first_line("") == ""


def test_a_line_task_is_scored_on_its_first_line_and_on_all_it_shows() -> None:
    from repotune.training.eval.scoring import score
    from repotune.training.eval.tasks import Task

    task = Task("t", "line", "line", "a.py", "python", 0, 0, "x = ", "\ny = 2\n", "compute(1)")
    right_then_more = score(task, "compute(1)\ny = 3")
    assert right_then_more["exact_match"] == 1.0 and right_then_more["shown_exact"] == 0.0
    assert score(task, "compute(1)")["shown_exact"] == 1.0


def test_identifiers_skip_keywords_strings_and_comments() -> None:
    assert identifiers("x = foo(bar, 'baz')  # qux") == ["x", "foo", "bar"]
    assert identifiers("return self.a if b else None") == ["self", "a", "b"]
    # A fragment that does not tokenize falls back to the regex, keywords still removed.
    assert identifiers('if x == "a', "python") == ["x", "a"]
    assert identifiers("const y = obj.run(z);", "javascript") == ["y", "obj", "run", "z"]


def test_identifier_match_hand_cases() -> None:
    same = identifier_match("foo(a, b)", "foo(a, b)", "python")
    assert same.exact_match and same.f1 == 1.0
    swapped = identifier_match("foo(b, a)", "foo(a, b)", "python")
    assert not swapped.exact_match
    assert (swapped.precision, swapped.recall, swapped.f1) == (1.0, 1.0, 1.0)
    short = identifier_match("foo(a)", "foo(a, b)", "python")
    assert short.precision == 1.0
    assert short.recall == pytest.approx(2 / 3)
    assert short.f1 == pytest.approx(0.8)
    wrong = identifier_match("bar(c)", "foo(a)", "python")
    assert (wrong.exact_match, wrong.f1) == (False, 0.0)
    repeated = identifier_match("a + a + a", "a + b", "python")  # multiset: one a counts once
    assert repeated.precision == pytest.approx(1 / 3)
    assert repeated.recall == pytest.approx(1 / 2)


def test_percentile() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile([], 50) is None


def test_paired_bootstrap() -> None:
    same = paired_bootstrap([1, 0, 1], [1, 0, 1], seed=1)
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    assert not same.excludes_zero
    always = paired_bootstrap([1, 1, 1, 1], [0, 0, 0, 0], seed=1)
    assert (always.difference, always.low, always.high) == (1.0, 1.0, 1.0)
    assert always.excludes_zero
    once = paired_bootstrap([1, 0, 0, 0], [0, 0, 0, 0], resamples=4000, seed=3)
    assert once.difference == 0.25
    assert once.low == 0.0 and 0.5 <= once.high <= 0.75  # 0 of 4 picked happens ~32 %
    again = paired_bootstrap([1, 0, 0, 0], [0, 0, 0, 0], resamples=4000, seed=3)
    assert again == once
    worse = paired_bootstrap([0] * 20, [1] * 15 + [0] * 5, seed=2)
    assert worse.difference == -0.75 and worse.high < 0 and worse.excludes_zero
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1, 0], [1])


def test_mcnemar_exact_on_known_inputs() -> None:
    # 10 discordant pairs, 8 vs 2: p = 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * 56 / 1024
    a = [1] * 8 + [0] * 2 + [1] * 5 + [0] * 5
    b = [0] * 8 + [1] * 2 + [1] * 5 + [0] * 5
    test = mcnemar_exact(a, b)
    assert (test.a_only, test.b_only) == (8, 2)
    assert test.p_value == pytest.approx(112 / 1024)  # 0.109375
    assert mcnemar_exact(b, a).p_value == test.p_value  # two-sided
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]).p_value == 1.0  # no discordant pairs
    assert mcnemar_exact([1, 0], [0, 1]).p_value == 1.0  # capped at 1
    six = mcnemar_exact([1] * 6, [0] * 6)
    assert six.p_value == pytest.approx(2 / 64)  # 0.03125
    many = mcnemar_exact([1] * 1500 + [0] * 1400, [0] * 1500 + [1] * 1400)  # no float overflow
    assert 0.0 < many.p_value < 0.1
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_exact([1], [1, 0])


def test_key_identifier_and_hit() -> None:
    prefix = "from .store import Store\n\ndef load(path):\n    store = Store(path)\n"
    # the last name the prefix does not show is the one the model had to know
    assert key_identifier("    return store.read_chunks(limit)", prefix, "python") == "limit"
    assert key_identifier("    return store.read_chunks()", prefix, "python") == "read_chunks"
    # everything visible: the last called name
    assert key_identifier("store = Store(path)", prefix, "python") == "Store"
    # an API call task: the called function's name
    assert key_identifier("read_chunks(limit=3)", prefix, "python", api_call=True) == "read_chunks"
    assert key_identifier(")", prefix, "python") is None
    assert hit("return store.read_chunks(5)", "read_chunks")
    assert not hit("return store.read_chunks_all(5)", "read_chunks")  # a longer name is not it
    assert not hit("return store.read(5)", "read_chunks")


def _comparison(a: str, b: str, difference: float, low: float, high: float) -> dict:
    interval = {"difference": difference, "low": low, "high": high, "n": 50}
    return {"a": a, "b": b, "intervals": {"line": {"exact_match": interval}}}


def test_targets_need_the_gain_and_an_interval_above_zero() -> None:
    from repotune.training.eval.scoring import targets

    met = targets(
        [
            _comparison("default+ctx", "base", 0.25, 0.12, 0.38),
            _comparison("default+ctx", "base+ctx", 0.18, 0.05, 0.30),
            _comparison("default+ctx", "default", 0.04, 0.01, 0.08),
            _comparison("repo+ctx", "default+ctx", 0.03, 0.01, 0.06),
            _comparison("repo+ctx", "other-repo+ctx", 0.04, 0.01, 0.08),
        ]
    )
    assert [t["met"] for t in met] == [True, True, True, True]
    assert "+18.0 points" in met[0]["detail"]  # judged against the better baseline
    too_small = targets(
        [
            _comparison("default+ctx", "base", 0.25, 0.12, 0.38),
            _comparison("default+ctx", "base+ctx", 0.12, 0.02, 0.22),
        ]
    )
    assert [t["met"] for t in too_small] == [False]
    crossing = targets([_comparison("repo+ctx", "default+ctx", 0.05, -0.01, 0.11)])
    assert [t["met"] for t in crossing] == [False]
