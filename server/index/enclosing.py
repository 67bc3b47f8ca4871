"""The function the cursor is in, read from the indentation of the code above it: its other
definitions (a sibling class's method of the same name) are retrieved as parallel code."""

from __future__ import annotations

import re

# Protocol methods every class writes its own way (`__init__`, `__call__`, a constructor): their
# namesakes are not parallel code (structlog: 3 of 200 line tasks lost, none gained, with them).
_PROTOCOL_METHOD = re.compile(r"__\w+__|constructor|new|init")
# How far above the cursor the function it is in is looked for.
ENCLOSING_SCAN_LINES = 400

# What may stand before a definition's keyword: `export default`, Rust's `pub(crate)`, `async`.
DEFINITION_MODIFIERS = r"(?:export\s+)?(?:default\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?"
# A line that opens a function: `def f`, `function f`, `fn f`, `func (r T) F`, with modifiers.
_FUNCTION_START = re.compile(
    rf"{DEFINITION_MODIFIERS}"
    r"(?:def|function\*?|fn|func(?:\s*\([^)]*\))?)\s+([A-Za-z_$][\w$]*)"
)
# A method in a class body (JavaScript, TypeScript, Java, C#): `name(args) {`, with modifiers.
_METHOD_START = re.compile(
    r"(?:(?:public|private|protected|static|async|override|get|set|final|virtual)\s+)*"
    r"(?:[\w<>\[\],.?]+\s+)??([A-Za-z_$][\w$]*)\s*\([^;]*\)\s*(?::\s*[^={;]+)?\{\s*$"
)
# A longer line is not taken for a function's first line: the method pattern backtracks over a
# line's brackets, and a crafted or minified line must not stall a completion.
MAX_SIGNATURE_CHARS = 300
_NOT_METHODS = frozenset({"if", "for", "while", "switch", "catch", "with", "return", "function"})
_CLASS_START = re.compile(r"(?:export\s+)?(?:default\s+)?(?:abstract\s+)?(?:class|interface)\b")


def function_name(line: str) -> str | None:
    """The name a line defines as a function or method, if it opens one."""
    text = line.strip()
    if len(text) > MAX_SIGNATURE_CHARS:
        return None
    found = _FUNCTION_START.match(text)
    if found:
        return found.group(1)
    method = _METHOD_START.match(text)
    if method and method.group(1) not in _NOT_METHODS:
        return method.group(1)
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def enclosing_function(prefix: str, scan_lines: int = ENCLOSING_SCAN_LINES) -> str | None:
    """The name of the function or method the cursor is in, read from indentation: the nearest
    function start above it that is indented less than the cursor's line (a class or a line at
    the left margin in between means the cursor is in no function)."""
    lines = prefix[-scan_lines * 200 :].split("\n")[-scan_lines:]
    cursor_line = lines[-1]
    above = lines[:-1]
    depth = _indent(cursor_line)
    if not cursor_line.strip() and depth == 0:  # an empty line: as deep as the code above it
        last = next((line for line in reversed(above) if line.strip()), "")
        depth = _indent(last) + last.rstrip().endswith((":", "{"))
    for line in reversed(above):
        text = line.strip()
        if not text or text[0] in ")]}":  # a signature's closing line, an earlier block's end
            continue
        indent = _indent(line)
        if indent >= depth:
            continue
        name = function_name(text)
        if name is not None:
            return name
        if indent == 0 or _CLASS_START.match(text):
            return None
        depth = indent
    return None


def parallel_function(prefix: str) -> str | None:
    """The function the cursor is in, when its namesakes elsewhere may be written the same way
    (another backend's `generate_stream`, a sibling trainer's `tokenize_row`): not a protocol
    method."""
    name = enclosing_function(prefix)
    return None if name is None or _PROTOCOL_METHOD.fullmatch(name) else name
