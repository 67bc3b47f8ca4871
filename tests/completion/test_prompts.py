"""Prompt formats: exact layouts, budget truncation, stable context order, format detection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from repotune.server.ask.prompts import build_ask_messages
from repotune.server.completion.context import ContextSnippet, as_snippet
from repotune.server.completion.formats import FORMATS, detect_format, get_format
from repotune.server.completion.prompts import build_fim_prompt
from repotune.server.completion.truncation import truncate_prefix, truncate_suffix


def chars(text: str) -> int:
    """A deterministic token counter for exact expectations: one token per character."""
    return len(text)


BIG = (10_000, 10_000, 10_000)
SNIPPETS = [
    ContextSnippet("pkg/b.py", "def b():\n    return 2\n", 5, 6),
    ContextSnippet("pkg/a.py", "def a():\n    return 1\n", 1, 2),
]
PREFIX = "def f(x):\n    y = "
SUFFIX = "\n    return y\n"


def build(name: str, **kwargs):
    args = dict(path="pkg/m.py", prefix=PREFIX, suffix=SUFFIX, context=SNIPPETS, budget=BIG)
    args.update(kwargs)
    return build_fim_prompt(name, count_tokens=chars, **args)


def test_repotune_layout_is_context_then_suffix_then_prefix() -> None:
    prompt = build("repotune")
    assert prompt.text == (
        "<|rt_file|>pkg/a.py:1-2\ndef a():\n    return 1\n"
        "<|rt_file|>pkg/b.py:5-6\ndef b():\n    return 2\n"
        "<|rt_suffix|>pkg/m.py\n\n    return y\n"
        "<|rt_prefix|>pkg/m.py\ndef f(x):\n    y = "
    )
    assert prompt.end_of_middle == "<|rt_end|>"
    assert prompt.with_middle("x + 1") == prompt.text + "x + 1<|rt_end|>"
    assert prompt.stop == ("<|rt_",)
    assert not prompt.special_markers


def test_repotune_without_context_or_suffix() -> None:
    prompt = build("repotune", context=(), suffix="")
    assert prompt.text == "<|rt_suffix|>pkg/m.py\n<|rt_prefix|>pkg/m.py\ndef f(x):\n    y = "


def test_qwen_repo_level_layout() -> None:
    prompt = build("qwen2.5-coder", repo_name="octo/demo")
    assert prompt.text == (
        "<|repo_name|>octo/demo\n"
        "<|file_sep|>pkg/a.py\ndef a():\n    return 1\n"
        "<|file_sep|>pkg/b.py\ndef b():\n    return 2\n"
        "<|file_sep|>pkg/m.py\n"
        "<|fim_prefix|>def f(x):\n    y = <|fim_suffix|>\n    return y\n<|fim_middle|>"
    )
    assert prompt.special_markers
    assert "<|endoftext|>" in prompt.stop and "<|file_sep|>" in prompt.stop


def test_qwen_plain_fim_without_context() -> None:
    prompt = build("qwen2.5-coder", context=())
    assert prompt.text == (
        "<|fim_prefix|>def f(x):\n    y = <|fim_suffix|>\n    return y\n<|fim_middle|>"
    )


def test_starcoder2_layout() -> None:
    prompt = build("starcoder2", repo_name="demo")
    assert prompt.text == (
        "<repo_name>demo"
        "<file_sep>pkg/a.py\ndef a():\n    return 1\n"
        "<file_sep>pkg/b.py\ndef b():\n    return 2\n"
        "<file_sep><fim_prefix>pkg/m.py\ndef f(x):\n    y = "
        "<fim_suffix>\n    return y\n<fim_middle>"
    )
    assert prompt.end_of_middle == "<file_sep>"


def test_deepseek_layout_puts_context_as_comments_in_prefix() -> None:
    prompt = build("deepseek-coder")
    assert prompt.text == (
        "<｜fim▁begin｜>"
        "# pkg/a.py\ndef a():\n    return 1\n"
        "# pkg/b.py\ndef b():\n    return 2\n"
        "# pkg/m.py\ndef f(x):\n    y = "
        "<｜fim▁hole｜>\n    return y\n<｜fim▁end｜>"
    )


def test_codellama_layout() -> None:
    prompt = build("codellama", context=())
    assert prompt.text == "<PRE> def f(x):\n    y =  <SUF>\n    return y\n <MID>"
    assert prompt.end_of_middle == "<EOT>"


def test_codegemma_layout() -> None:
    prompt = build("codegemma")
    assert prompt.text == (
        "pkg/a.py\ndef a():\n    return 1\n<|file_separator|>"
        "pkg/b.py\ndef b():\n    return 2\n<|file_separator|>"
        "<|fim_prefix|>def f(x):\n    y = <|fim_suffix|>\n    return y\n<|fim_middle|>"
    )
    assert prompt.end_of_middle == "<|file_separator|>"


def test_js_path_comments_use_slashes() -> None:
    prompt = build_fim_prompt(
        "deepseek-coder",
        path="src/m.ts",
        prefix="let x = ",
        suffix="",
        context=[ContextSnippet("src/u.ts", "export const u = 1;\n")],
        budget=BIG,
        count_tokens=chars,
    )
    assert prompt.text.startswith("<｜fim▁begin｜>// src/u.ts\nexport const u = 1;\n// src/m.ts\n")


def test_every_registered_format_builds() -> None:
    for name in FORMATS:
        prompt = build(name)
        assert "def f(x):\n    y = " in prompt.text
        assert prompt.end_of_middle
        assert prompt.stop


# --------------------------------------------------------------------------- budgets


def test_prefix_keeps_last_whole_lines_and_cursor_line() -> None:
    prefix = "line1\nline2\nline3\n    cur"
    kept, used, dropped = truncate_prefix(prefix, budget=len("line3\n    cur"), count=chars)
    assert kept == "line3\n    cur"
    assert used == len("line3\n    cur")
    assert dropped == 2


def test_prefix_cursor_line_alone_too_long_is_cut_from_the_left() -> None:
    kept, used, dropped = truncate_prefix("a\n" + "x" * 50, budget=10, count=chars)
    assert kept == "x" * 10 and used == 10 and dropped == 1


def test_prefix_quantum_keeps_the_first_line_while_typing() -> None:
    def words(text: str) -> int:
        return len(text.split()) + text.count("\n")

    body = "".join(f"line number {i}\n" for i in range(40))
    starts = set()
    for typed in range(1, 12):
        kept, used, _ = truncate_prefix(body + "x " * typed, 64, words, quantum=16)
        assert used <= 64
        starts.add(kept.split("\n", 1)[0])
    assert len(starts) == 1  # the same first line for every keystroke
    exact = {truncate_prefix(body + "x " * t, 64, words)[0].split("\n", 1)[0] for t in range(12)}
    assert len(exact) > 1  # without the quantum it moves


def test_suffix_keeps_first_whole_lines() -> None:
    suffix = ")\n    return y\n\nother()\n"
    kept, _used, dropped = truncate_suffix(suffix, budget=len(")\n    return y"), count=chars)
    assert kept == ")\n    return y"
    assert dropped == 3
    assert truncate_suffix(suffix, 0, chars) == ("", 0, 5)


def test_budget_truncation_in_a_full_prompt() -> None:
    prefix = "\n".join(f"p{i}" for i in range(10)) + "\ncur"
    suffix = "s0\n" + "\n".join(f"s{i}" for i in range(1, 10))
    prompt = build_fim_prompt(
        "qwen2.5-coder",
        path="m.py",
        prefix=prefix,
        suffix=suffix,
        context=(),
        budget=(0, len("p8\np9\ncur"), len("s0\ns1")),
        count_tokens=chars,
    )
    assert prompt.text == "<|fim_prefix|>p8\np9\ncur<|fim_suffix|>s0\ns1<|fim_middle|>"
    assert prompt.prefix_lines_dropped == 8
    assert prompt.suffix_lines_dropped == 8
    assert prompt.prefix_tokens == len("p8\np9\ncur")
    assert prompt.suffix_tokens == len("s0\ns1")


def test_context_chosen_by_relevance_then_sorted_and_cut_at_lines() -> None:
    best = ContextSnippet("z.py", "z1\nz2\n", 1)
    second = ContextSnippet("a.py", "a1\na2\na3\na4\na5\n", 10)
    third = ContextSnippet("m.py", "m1\n", 3)
    one_block = len("<|rt_file|>") + len("z.py:1-2\nz1\nz2\n")
    header = len("<|rt_file|>") + len("a.py:10-12\n")
    budget = one_block + header + len("a1\na2\na3\n")
    prompt = build_fim_prompt(
        "repotune",
        path="cur.py",
        prefix="x",
        suffix="",
        context=[best, second, third],
        budget=(budget, 100, 100),
        count_tokens=chars,
    )
    assert [s.path for s in prompt.snippets] == ["a.py", "z.py"]  # stable order, not relevance
    assert prompt.snippets[0] == ContextSnippet("a.py", "a1\na2\na3\n", 10, 12)
    assert prompt.dropped_snippets == 1
    assert prompt.text.startswith("<|rt_file|>a.py:10-12\na1\na2\na3\n<|rt_file|>z.py:1-2\n")


def test_context_order_is_stable_across_retrieval_orders() -> None:
    forward = build("repotune")
    backward = build("repotune", context=list(reversed(SNIPPETS)))
    assert forward.text == backward.text


def test_duplicate_snippets_are_dropped() -> None:
    prompt = build("repotune", context=[SNIPPETS[0], SNIPPETS[0]])
    assert len(prompt.snippets) == 1 and prompt.dropped_snippets == 1


def test_real_tokenizer_respects_the_budget(generator_model) -> None:
    """With Gemma's own tokenizer, the packed parts stay within their budgets."""
    from llama_cpp import Llama

    vocab = Llama(model_path=str(generator_model.path), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False))

    import json.encoder as source_module

    source = Path(source_module.__file__).read_text(encoding="utf-8")
    cut = source.index("def py_encode_basestring(s):")
    prompt = build_fim_prompt(
        "repotune",
        path="json/encoder.py",
        prefix=source[:cut],
        suffix=source[cut:],
        context=[ContextSnippet("json/decoder.py", source[:3000], 1)],
        budget=(200, 300, 100),
        count_tokens=count,
    )
    assert count(prompt.prefix) <= 300
    assert count(prompt.suffix) <= 100
    kept_context = "".join(s.text for s in prompt.snippets)
    assert 0 < count(kept_context) <= 200
    assert source[:cut].endswith(prompt.prefix) and source[cut:].startswith(prompt.suffix)
    assert count(prompt.text) <= 200 + 300 + 100 + 40  # markers and headers


# --------------------------------------------------------------------------- detection


def vocab(*tokens: str):
    return lambda text: text in set(tokens)


@pytest.mark.parametrize(
    ("metadata", "tokens", "expected"),
    [
        ({"general.architecture": "gemma3", "general.name": "Gemma 3 270m"}, (), "repotune"),
        (
            {"general.architecture": "qwen2", "general.name": "Qwen2.5 Coder 1.5B"},
            ("<|fim_prefix|>", "<|fim_suffix|>", "<|repo_name|>", "<|file_sep|>"),
            "qwen2.5-coder",
        ),
        ({"general.architecture": "starcoder2"}, ("<fim_prefix>", "<file_sep>"), "starcoder2"),
        ({"general.architecture": "llama"}, ("<｜fim▁begin｜>",), "deepseek-coder"),
        ({"general.architecture": "llama"}, ("▁<PRE>", "▁<SUF>"), "codellama"),
        ({"general.architecture": "llama", "general.name": "CodeLlama-7b-hf"}, (), "codellama"),
        (
            {"general.architecture": "gemma", "general.name": "codegemma-2b"},
            ("<|fim_prefix|>", "<|file_separator|>"),
            "codegemma",
        ),
        ({"general.architecture": "llama", "general.name": "Llama 3.2 1B"}, (), "repotune"),
    ],
)
def test_detect_format(metadata: dict[str, str], tokens: tuple[str, ...], expected: str) -> None:
    assert detect_format(metadata, vocab(*tokens)) == expected


def test_detect_format_on_the_real_default_model(generator_model) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=str(generator_model.path), vocab_only=True, verbose=False)

    def has_token(text: str) -> bool:
        return len(llm.tokenize(text.encode(), add_bos=False, special=True)) == 1

    assert has_token("<start_of_turn>")  # the check itself can say yes
    assert detect_format(dict(llm.metadata), has_token) == "repotune"


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown prompt format .nope.*repotune"):
        get_format("nope")


# --------------------------------------------------------------------------- snippets, ask


@dataclass
class Chunk:  # the shape of retrieval's RetrievedChunk
    path: str
    start_line: int
    end_line: int
    text: str
    symbol: str = "f"
    score: float = 1.0


def test_retrieved_chunks_convert_to_snippets() -> None:
    snippet = as_snippet(Chunk("a.py", 3, 4, "x = 1\ny = 2\n"))
    assert snippet == ContextSnippet("a.py", "x = 1\ny = 2\n", 3, 4, symbol="f")
    assert snippet.citation == "a.py:3-4"
    assert ContextSnippet("b.py", "one\ntwo\n", 7).citation == "b.py:7-8"


def test_ask_messages_cite_snippets() -> None:
    messages = build_ask_messages("How is y computed?", [Chunk("a.py", 3, 4, "y = x + 1\n")])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "### a.py:3-4\n```python\ny = x + 1\n```" in messages[1]["content"]
    assert messages[1]["content"].endswith("Question: How is y computed?")
    assert "path:line" in messages[0]["content"]
    assert "The indexed code does not define" in messages[0]["content"]  # how to abstain
    empty = build_ask_messages("Where?", [])
    assert "(no code was retrieved" in empty[1]["content"]


def test_ask_document_for_base_models_ends_in_answer_and_cites_snippets() -> None:
    from repotune.server.ask.prompts import build_ask_document
    from repotune.server.completion.context import ContextSnippet

    prompt, stops = build_ask_document(
        "  What does add do? ",
        [
            ContextSnippet(
                path="pkg/math.py",
                text="def add(a, b):\n    return a + b\n",
                start_line=3,
                end_line=4,
            )
        ],
    )
    assert "### pkg/math.py:3-4\n```python\ndef add(a, b):\n    return a + b\n```" in prompt
    assert prompt.endswith("\n\nQuestion: What does add do?\nAnswer:")
    assert "\nQuestion:" in stops


def test_prefix_window_start_moves_in_line_steps_as_lines_are_added() -> None:
    """Typing on into the next lines keeps the first kept line for several lines (KV reuse),
    and it is always a line number divisible by the step; without the quantum it moves at every
    line."""
    from repotune.server.completion.truncation import PREFIX_LINE_STEP

    def words(text: str) -> int:
        return len(text.split()) + text.count("\n")

    body = "".join(f"line number {i}\n" for i in range(60))
    starts = []
    for added in range(PREFIX_LINE_STEP * 2):
        text = body + "".join(f"typed line {j}\n" for j in range(added)) + "x"
        kept, used, dropped = truncate_prefix(text, 64, words, quantum=16)
        assert used <= 64 and dropped % PREFIX_LINE_STEP == 0
        assert kept == "\n".join(text.split("\n")[dropped:])
        starts.append(dropped)
    assert len(set(starts)) <= 3  # moved at most twice over 16 new lines
    exact = {truncate_prefix(body + "y\n" * n + "x", 64, words)[2] for n in range(16)}
    assert len(exact) >= 8  # without the quantum it moves every line or two


def test_truncation_tokenizes_a_window_not_a_huge_line() -> None:
    from repotune.server.completion.truncation import (
        MAX_CHARS_PER_TOKEN,
        truncate_prefix,
        truncate_suffix,
    )

    seen: list[int] = []

    def count(text: str) -> int:
        seen.append(len(text))
        return len(text) // 4 + 1

    line = "var a=1;" * 250_000  # a 2 MB minified line
    kept, used, dropped = truncate_prefix("import x\n" + line, 100, count, quantum=32)
    assert used <= 100 and line.endswith(kept) and dropped == 1
    kept, used, dropped = truncate_suffix(line + "\nmore", 100, count)
    assert used <= 100 and line.startswith(kept) and dropped == 1
    assert max(seen) <= 100 * MAX_CHARS_PER_TOKEN


def test_prefix_window_keeps_line_numbers_for_the_stable_first_line() -> None:
    from repotune.server.completion.truncation import truncate_prefix

    text = "".join(f"line {n} = {n}\n" for n in range(5000)) + "cursor"
    count = lambda s: len(s) // 4 + 1  # noqa: E731
    kept, _, dropped = truncate_prefix(text, 200, count, quantum=32)
    assert text.endswith(kept) and dropped % 8 == 0  # PREFIX_LINE_STEP, counted in the file
    assert text.split("\n")[dropped] == kept.split("\n")[0]


def test_token_counter_is_bounded_and_does_not_keep_huge_texts() -> None:
    from repotune.server.completion.tokens import CachedTokenCounter

    calls: list[str] = []
    counter = CachedTokenCounter(lambda t: calls.append(t) or list(t), max_entries=3,
                                 max_chars=100, max_key_chars=50)  # fmt: skip
    assert counter("x" * 1000) == 1000 and len(counter) == 0  # counted, not kept
    for text in ("a", "bb", "ccc", "dddd"):
        counter(text)
    assert len(counter) == 3 and counter.chars == 9  # "a" went first (least recent)
    counter("bb")
    assert calls.count("bb") == 1  # a hit
    for n in range(5):
        counter(str(n) * 40)
    assert counter.chars <= 100
