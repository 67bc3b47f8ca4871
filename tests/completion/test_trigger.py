"""When an as-you-type request is declined (pure logic; the LSP test drives it end to end)."""

from __future__ import annotations

from lsprotocol import types
from repotune.server.completion.trigger import auto_trigger_skip, line_suffix_at
from repotune.server.config import CompletionSettings
from repotune.server.lsp.server import edit_only_deletes


def test_deletions_and_long_line_suffixes_decline_automatic_requests() -> None:
    settings = CompletionSettings()
    assert auto_trigger_skip("", after_deletion=True, settings=settings) == "after_deletion"
    assert auto_trigger_skip("", after_deletion=False, settings=settings) is None
    # closing brackets, quotes and punctuation are what a completion fits before
    assert auto_trigger_skip('")]);  ', False, settings) is None
    assert auto_trigger_skip("x + 1)", False, settings) is None  # five characters
    assert auto_trigger_skip("other_value)", False, settings) == "mid_line"
    relaxed = CompletionSettings(auto_skip_after_deletion=False, auto_max_chars_right=100)
    assert auto_trigger_skip("other_value)", True, relaxed) is None


def test_line_suffix_is_the_rest_of_the_cursor_line() -> None:
    assert line_suffix_at("ab\ncd\nef", 4) == "d"
    assert line_suffix_at("ab\ncd", 5) == ""
    assert line_suffix_at("abc", 1) == "bc"


def test_only_ranged_empty_changes_count_as_deletions() -> None:
    def at(line: int, character: int) -> types.Position:
        return types.Position(line=line, character=character)

    backspace = types.TextDocumentContentChangePartial(
        range=types.Range(at(0, 3), at(0, 4)), text=""
    )
    typed = types.TextDocumentContentChangePartial(range=types.Range(at(0, 3), at(0, 3)), text="a")
    noop = types.TextDocumentContentChangePartial(range=types.Range(at(0, 3), at(0, 3)), text="")
    assert edit_only_deletes([backspace])
    assert not edit_only_deletes([backspace, typed])
    assert not edit_only_deletes([noop]) and not edit_only_deletes([])
    assert not edit_only_deletes([types.TextDocumentContentChangeWholeDocument(text="")])
