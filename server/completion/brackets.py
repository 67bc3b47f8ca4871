"""Brackets in code, read outside strings and line comments: which are left open, whether a
text closes them. Not any language's grammar, but enough for the stop rules and the bracket
balance in postprocess.py."""

from __future__ import annotations

import re
from collections.abc import Iterator

from repotune.server.languages import HASH_COMMENT_LANGUAGES

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSER_TO_OPENER = {v: k for k, v in OPENERS.items()}


def code_chars(text: str, hash_comments: bool) -> Iterator[tuple[int, str]]:
    """(index, char) of the characters outside strings and line comments: not any language's
    grammar, but enough to count brackets. An unterminated one-line string ends with its line."""
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 2
                continue
            if text.startswith(quote, index):
                index += len(quote)
                quote = ""
                continue
            if char != "\n" or len(quote) != 1:
                index += 1
                continue
            quote = ""
        elif char in "\"'`":
            triple = text[index : index + 3]
            quote = triple if triple in ('"""', "'''") else char
            index += len(quote)
            continue
        elif (char == "#") if hash_comments else text.startswith("//", index):
            newline = text.find("\n", index)
            index = len(text) if newline < 0 else newline
            continue
        yield index, char
        index += 1


# Where a string or comment starts: a triple quote, a one-line string, a line comment (`#` where
# the language has it, `//` elsewhere, as code_chars reads them).
_STRING = r'"""|\'\'\'|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\''
_SLASH_STRING_OR_COMMENT = re.compile(_STRING + r"|//[^\n]*")
_HASH_STRING_OR_COMMENT = re.compile(_STRING + r"|#[^\n]*")


# A definition's first line: code, not inside a string (where a scan for open strings can start;
# `text` itself may begin inside one, cut from a longer file).
_DEFINITION_LINE = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+\w", re.MULTILINE)


def code_start(text: str, start: int, hash_comments: bool) -> int:
    """`start`, or, where a triple-quoted string (a docstring) is open there, the end of that
    string: a scan from `start` would otherwise read the docstring as code and the code after
    it as a string. A regex pass from the last definition line before `start` (top-level where
    there is one) finds it."""
    pattern = _HASH_STRING_OR_COMMENT if hash_comments else _SLASH_STRING_OR_COMMENT
    # The last top-level definition: an indented `class Example:` may be quoted in a docstring.
    position = top_level = -1
    for definition in _DEFINITION_LINE.finditer(text, 0, start):
        position = definition.start()
        if not text[position].isspace():
            top_level = position
    position = top_level if top_level >= 0 else max(position, 0)
    while True:
        found = pattern.search(text, position, start)
        if found is None:
            return start
        delimiter = found.group()
        if delimiter not in ('"""', "'''"):
            position = found.end()
            continue
        close = text.find(delimiter, found.end())
        if close < 0:
            return len(text)
        if close + 3 > start:
            return close + 3
        position = close + 3


def hash_comments_in(language: str | None) -> bool:
    """Whether `#` starts a comment in `language` (Python when it is not known)."""
    return (language or "python").lower() in HASH_COMMENT_LANGUAGES


def open_brackets(text: str, hash_comments: bool) -> list[str]:
    """Open brackets left by `text`."""
    stack: list[str] = []
    for _, char in code_chars(text, hash_comments):
        if char in OPENERS:
            stack.append(char)
        elif char in CLOSER_TO_OPENER and stack and stack[-1] == CLOSER_TO_OPENER[char]:
            stack.pop()
    return stack


def closed_by(open_brackets: list[str], text: str, hash_comments: bool) -> bool:
    """True when `text` closes `open_brackets` (innermost last), brackets it opens itself aside."""
    waiting = list(open_brackets)
    own: list[str] = []
    for _, char in code_chars(text, hash_comments):
        if char in OPENERS:
            own.append(char)
        elif char in CLOSER_TO_OPENER:
            opener = CLOSER_TO_OPENER[char]
            if own:
                if own.pop() != opener:
                    return False
            elif waiting.pop() != opener:
                return False
            elif not waiting:
                return True
    return False
