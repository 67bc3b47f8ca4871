"""The result cache's typing-through rule (pure logic; the engine's use of it is in test_engine)."""

from __future__ import annotations

from repotune.server.completion.cache import CompletionCache
from repotune.server.completion.request import CompletionResult


def _line(text: str) -> CompletionResult:
    return CompletionResult(text, False, {}, 1, 0, 1, False, "repotune")


def test_typing_through_a_line_opened_above_code_keeps_its_line_break() -> None:
    """A line inserted above code ends with its line break (postprocess.opens_a_line): typing
    it serves the rest, break included; a one-line answer never serves a second line."""
    cache = CompletionCache(8)
    prefix, suffix = "def f(x):\n", "    return y\n"
    cache.put("f.py", prefix, suffix, _line("    y = x + 1\n"))
    hit = cache.get("f.py", prefix + "    y =", suffix)
    assert hit is not None and hit.text == " x + 1\n"
    cache.put("g.py", prefix, suffix, _line("    a\n    b"))
    assert cache.get("g.py", prefix + "    a", suffix) is None
