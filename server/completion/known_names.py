"""Prefer the names the repository knows: a greedy step's top tokens are re-ranked so that one
which begins or continues a name found nowhere in the file, the retrieved snippets or the
language's keywords and builtins loses `penalty` logits.

A small model often writes a plausible name that does not exist (`from inspect import
getpass`, `DPoTrainer`); when a known name is nearly as likely, it is usually the right one.
The penalty is finite, so a confident model still writes a new name, and it is skipped where
new names are normal: inside strings and comments, and for the name a `def` or `class` line
declares. Names the user typed are never judged, only those the model writes.
"""

from __future__ import annotations

import bisect
import builtins
import keyword
import re
import sys
from collections.abc import Iterable, Sequence

import numpy as np

# Re-ranking looks no further than the model's top few tokens.
TOP_TOKENS = 8
_NAME = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*")  # not the x of 0x1F
_TRAILING_WORD = re.compile(r"[A-Za-z0-9_]*$")

_PYTHON_NAMES = frozenset(
    [*keyword.kwlist, *keyword.softkwlist, *dir(builtins), *sys.stdlib_module_names]
)
_SCRIPT_NAMES = frozenset(
    [
        "abstract",
        "any",
        "as",
        "async",
        "await",
        "boolean",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "constructor",
        "continue",
        "debugger",
        "declare",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "from",
        "function",
        "get",
        "if",
        "implements",
        "import",
        "in",
        "infer",
        "instanceof",
        "interface",
        "is",
        "keyof",
        "let",
        "module",
        "namespace",
        "never",
        "new",
        "null",
        "number",
        "object",
        "of",
        "package",
        "private",
        "protected",
        "public",
        "readonly",
        "require",
        "return",
        "satisfies",
        "set",
        "static",
        "string",
        "super",
        "switch",
        "symbol",
        "this",
        "throw",
        "true",
        "try",
        "type",
        "typeof",
        "undefined",
        "unique",
        "unknown",
        "var",
        "void",
        "while",
        "with",
        "yield",
        "Array",
        "ArrayBuffer",
        "BigInt",
        "Boolean",
        "console",
        "Date",
        "Error",
        "globalThis",
        "Infinity",
        "JSON",
        "Map",
        "Math",
        "NaN",
        "Number",
        "Object",
        "Partial",
        "Pick",
        "Omit",
        "Promise",
        "Proxy",
        "Readonly",
        "Record",
        "Reflect",
        "RegExp",
        "Required",
        "ReturnType",
        "Set",
        "String",
        "Symbol",
        "TypeError",
        "Uint8Array",
        "WeakMap",
        "WeakSet",
        "window",
        "document",
        "process",
        "parseInt",
        "parseFloat",
        "isNaN",
        "setTimeout",
        "clearTimeout",
        "setInterval",
        "clearInterval",
        "queueMicrotask",
        "structuredClone",
        "length",
        "push",
        "pop",
        "map",
        "filter",
        "reduce",
        "forEach",
        "slice",
        "splice",
        "indexOf",
        "includes",
        "join",
        "split",
        "keys",
        "values",
        "entries",
        "then",
        "resolve",
        "reject",
        "toString",
        "prototype",
    ]
)
# The languages whose own names are listed; elsewhere the prior is off (a keyword would count
# as unknown).
LANGUAGE_NAMES: dict[str, frozenset[str]] = {
    "python": _PYTHON_NAMES,
    "javascript": _SCRIPT_NAMES,
    "typescript": _SCRIPT_NAMES,
    "tsx": _SCRIPT_NAMES,
    "typescriptreact": _SCRIPT_NAMES,
    "javascriptreact": _SCRIPT_NAMES,
}
_COMMENT = {"python": "#"}
_DECLARING = {
    "python": re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+[A-Za-z0-9_]*$"),
}
_DECLARING_SCRIPT = re.compile(
    r"\b(?:function\*?|class|interface|type|enum|namespace|const|let|var)\s+[A-Za-z0-9_$]*$"
)


class KnownNames:
    """A set of names, asked "is this a known name" and "does a known name start with this"."""

    def __init__(self, names: Iterable[str]) -> None:
        self._names = frozenset(names)
        self._sorted = sorted(self._names)

    @classmethod
    def of(cls, texts: Iterable[str], language: str) -> KnownNames:
        """The names written in `texts` and the language's own (keywords, builtins)."""
        found: set[str] = set(LANGUAGE_NAMES.get(language, ()))
        for text in texts:
            found.update(_NAME.findall(text))
        return cls(found)

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def begins(self, partial: str) -> bool:
        """Whether some known name starts with `partial` (or is it)."""
        index = bisect.bisect_left(self._sorted, partial)
        return index < len(self._sorted) and self._sorted[index].startswith(partial)


def supports(language: str | None) -> bool:
    return language in LANGUAGE_NAMES


def _odd_triple_quotes(text: str) -> bool:
    return (text.count('"""') + text.count("'''")) % 2 == 1


def _in_string_or_comment(line: str, comment: str) -> bool:
    """Whether the end of `line` is inside a quoted string or after a line comment."""
    quote = ""
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
        elif line.startswith(comment, index):
            return True
        index += 1
    return bool(quote)


class NamePrior:
    """Re-ranks each greedy step's top tokens by whether they write known names (module
    docstring). `line`: the cursor's line as the prompt ends it (what healing re-spells left
    out); `typed_chars`: how much of the line the user typed (healed text included);
    `answer_start`: where the answer's tokens begin in the token history; `open_block`: the
    cursor is inside a multi-line string (a docstring), where nothing is judged."""

    def __init__(
        self,
        names: KnownNames,
        pieces: Sequence[bytes],
        *,
        line: str,
        typed_chars: int,
        language: str,
        penalty: float,
        answer_start: int,
        open_block: bool = False,
    ) -> None:
        self._names = names
        self._pieces = pieces
        self._line = line
        self._typed_chars = typed_chars
        self._comment = _COMMENT.get(language, "//")
        self._declaring = _DECLARING.get(language, _DECLARING_SCRIPT)
        self._penalty = penalty
        self._answer_start = answer_start
        self._open_block = open_block
        self.changed = 0  # steps where the prior chose another token than the model's first

    def choose(self, logits: np.ndarray, history: Sequence[int]) -> int:
        """The next token: the model's first choice unless it writes an unknown name and a
        token within `penalty` of it does not. `history`: every token so far, prompt first."""
        best = int(logits.argmax())
        text = self._answer_text(history)
        if self._open_block != _odd_triple_quotes(text):
            return best  # inside a docstring
        current = (self._line + text).rpartition("\n")[2]
        typed = self._typed_chars if "\n" not in text else 0
        if _in_string_or_comment(current, self._comment) or self._declaring.search(current):
            return best
        if self.writes_known(current, typed, self._pieces[best]):
            return best
        top = np.argpartition(logits, -TOP_TOKENS)[-TOP_TOKENS:]
        scores = {
            int(token): float(logits[token])
            - (0.0 if self.writes_known(current, typed, self._pieces[token]) else self._penalty)
            for token in top
        }
        chosen = max(scores, key=lambda token: scores[token])
        if chosen != best:
            self.changed += 1
        return chosen

    def _answer_text(self, history: Sequence[int]) -> str:
        raw = b"".join(self._pieces[token] for token in history[self._answer_start :])
        return raw.decode("utf-8", errors="ignore")

    def writes_known(self, current: str, typed: int, piece_bytes: bytes) -> bool:
        """Whether appending the piece to the line `current` writes only known names or their
        beginnings. A name the piece ends is judged whole, one it leaves open by its start;
        names wholly typed by the user (the line's first `typed` characters) are not judged."""
        piece = piece_bytes.decode("utf-8", errors="ignore")
        if not piece:
            return True
        word = _TRAILING_WORD.search(current).group()  # type: ignore[union-attr]
        start = len(current) - len(word)
        written = word + piece.split("\n", 1)[0]
        for match in _NAME.finditer(written):
            end = start + match.end()
            if end <= typed:
                continue  # the user's own name
            if match.end() < len(written) or "\n" in piece:
                if match.group() not in self._names:
                    return False
            elif not self._names.begins(match.group()):
                return False
        return True
