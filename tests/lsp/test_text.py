"""LSP line splitting for documents and incremental edits (over stdio: test_lsp_robustness)."""

from __future__ import annotations

from lsprotocol import types
from repotune.server.lsp.text import LspTextDocument, lsp_lines

ODD = "a\x0cb\vc\x1cd\x1de\x1ef\x85g\u2028h\u2029i"  # line breaks to splitlines, not to LSP


def test_only_lf_crlf_and_cr_end_lines() -> None:
    assert lsp_lines(f"{ODD}\nx\r\ny\rz") == [f"{ODD}\n", "x\r\n", "y\r", "z"]
    assert lsp_lines("") == [] and lsp_lines("a\n") == ["a\n"] and lsp_lines("\n\n") == ["\n", "\n"]


def test_positions_and_incremental_edits_below_odd_breaks() -> None:
    document = LspTextDocument("file:///tmp/x.py", source=f"{ODD}\nfirst\nsecond")
    position = types.Position(line=1, character=5)
    assert document.offset_at_position(position) == len(ODD) + 1 + 5
    edit = types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line=2, character=0), end=types.Position(2, 6)),
        text="2nd",
    )
    document.apply_change(edit)
    assert document.source == f"{ODD}\nfirst\n2nd"
