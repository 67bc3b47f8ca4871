"""Lines as the Language Server Protocol counts them: only ``\\n``, ``\\r\\n`` and ``\\r`` end one.

Python's `str.splitlines` (which pygls's TextDocument uses) also breaks at form feed, vertical
tab, U+001C-U+001E, U+0085, U+2028 and U+2029; a form feed (common in older C and Python
sources) shifted every cursor and every incremental edit below it by a line. RepoTune's
documents and every position-to-offset mapping use `lsp_lines` instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pygls.workspace import TextDocument, Workspace

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def lsp_lines(text: str) -> list[str]:
    """`text` split after each LSP line break, the breaks kept (like splitlines(True))."""
    return _LINE.findall(text)


class LspTextDocument(TextDocument):
    """pygls's document with LSP line splitting (for positions and for incremental edits)."""

    @property
    def lines(self) -> Sequence[str]:
        return tuple(lsp_lines(self.source))


class LspWorkspace(Workspace):
    """Creates `LspTextDocument`s."""

    def _create_text_document(
        self,
        doc_uri: str,
        source: str | None = None,
        version: int | None = None,
        language_id: str | None = None,
    ) -> Any:
        return LspTextDocument(
            doc_uri,
            source=source,
            version=version,
            language_id=language_id,
            sync_kind=self._sync_kind,
            position_codec=self._position_codec,
        )
