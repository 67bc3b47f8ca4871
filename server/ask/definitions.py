"""What a file defines, read with tree-sitter: functions, methods, classes and documented settings.

Shared by the server's answers (which open with the definition a question is about, read from
its retrieved snippet), the code-derived training questions (whose reference answers are built
from a definition's name, signature, docstring and lines) and the teacher, so what the model is
trained to continue is what it is served. Nothing here guesses: a summary is the docstring's or
leading comment's first sentence, or None.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from repotune.server.completion.context import ContextSnippet
from repotune.server.index.chunking import new_parser as parser  # one tree-sitter setup
from repotune.server.languages import fence_language, language_for

DEFINITION_NODES = frozenset(
    {
        "function_definition",
        "function_declaration",
        "function_item",
        "method_definition",
        "method_declaration",
        "class_definition",
        "class_declaration",
        "impl_item",
    }
)

CLASS_NODES = frozenset({"class_definition", "class_declaration", "impl_item"})
# Module- or class-level assignments that may be settings (Python, JavaScript/TypeScript).
SETTING_NODES = frozenset({"expression_statement", "lexical_declaration", "variable_declaration"})
MIN_DEFINITION_LINES = 3
MAX_DEFINITION_LINES = 80
MAX_SUMMARY_CHARS = 200
MAX_SIGNATURE_CHARS = 200
MAX_VALUE_CHARS = 80
QUOTE_LINES = 4  # lines of a definition an answer quotes
MAX_QUOTE_LINE = 120
NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*$")
# Text a question prompt treats as structure (ask stops); never part of a summary.
UNSAFE = ("###", "Question:", "```", "<|")


@dataclass(frozen=True)
class Definition:
    path: str
    node: str
    start: int  # bytes
    end: int
    start_line: int
    end_line: int
    name: str = ""  # as a user names it: "parse_pin", "Builder.example"
    kind: str = ""  # function | method | class | setting
    signature: str = ""  # one line, without the body ("def f(a: int) -> str")
    summary: str | None = None  # first sentence of the docstring / leading comment
    params: tuple[tuple[str, bool], ...] = ()  # (name, required), self/cls left out
    value: str = ""  # settings: the assigned value, one line


def walk(node: Any) -> Iterator[Any]:
    """Every node under `node`, in source order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def doc_of(node: Any, data: bytes) -> Any | None:
    """The docstring (first body statement is a string) or the comment right above `node`."""
    body = node.child_by_field_name("body")
    if body is not None and body.named_children:
        first = body.named_children[0]
        if (
            first.type == "expression_statement"
            and first.named_children
            and first.named_children[0].type == "string"
        ):
            return first
    previous = node.prev_named_sibling
    if previous is not None and "comment" in previous.type:
        gap = data[previous.end_byte : node.start_byte]
        if gap.count(b"\n") <= 1 and not gap.strip():
            return previous
    return None


def _parse(source: Any) -> Any | None:
    try:
        return parser(source.language).parse(source.data)
    except Exception:  # a grammar that fails to load: nothing from this file
        return None


def _text(data: bytes, node: Any) -> str:
    return data[node.start_byte : node.end_byte].decode("utf-8", "replace")


def first_sentence(text: str) -> str | None:
    """The first sentence of a docstring or comment, markers and quotes removed."""
    lines: list[str] = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        line = re.sub(
            r'^(?:[rRbBuU]{0,2}"""|[rRbBuU]{0,2}\'\'\'|/\*\*?|\*/|\*|//+|#+|--)', "", line
        )
        line = re.sub(r'(?:"""|\'\'\'|\*/)$', "", line).strip()
        if not line:
            if lines:
                break  # the first paragraph only
            continue
        if line.startswith(("@", ":param", ":return", "Args:", "Returns:")):
            break
        lines.append(line)
    joined = " ".join(lines).strip()
    if len(joined) > 1 and joined[0] == joined[-1] and joined[0] in "\"'":
        joined = joined[1:-1].strip()  # a one-line string literal
    joined = joined.rstrip(",;:").rstrip()
    match = re.match(r"(.+?[.!?])(?:\s|$)", joined)
    sentence = match.group(1) if match else joined
    if len(sentence) < 8 or len(sentence) > MAX_SUMMARY_CHARS:
        return None
    if any(token in sentence for token in UNSAFE) or not re.search(r"[A-Za-z]{3}", sentence):
        return None
    return sentence if sentence[-1] in ".!?" else sentence + "."


def _one_line(text: str, limit: int) -> str:
    text = re.sub(r"\s*\n\s*", " ", text).strip()
    text = re.sub(r"\(\s+", "(", re.sub(r",\s*\)", ")", text))
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _signature(data: bytes, node: Any) -> str:
    body = node.child_by_field_name("body")
    end = body.start_byte if body is not None else node.end_byte
    head = data[node.start_byte : end].decode("utf-8", "replace")
    head = "\n".join(line for line in head.splitlines() if not line.strip().startswith(("#", "//")))
    return _one_line(head.rstrip().rstrip(":{").rstrip(), MAX_SIGNATURE_CHARS)


def _params(data: bytes, node: Any) -> tuple[tuple[str, bool], ...]:
    params = node.child_by_field_name("parameters")
    if params is None:
        return ()
    found = []
    for child in params.named_children:
        if "comment" in child.type or child.type in {"keyword_separator", "positional_separator"}:
            continue
        text = _text(data, child)
        splat = text.startswith("*") or text.startswith("...")
        name = re.split(r"[:=?]", text.lstrip("*.&"), maxsplit=1)[0].strip()
        if not NAME.match(name) or name in {"self", "cls", "this"}:
            continue
        optional = splat or "=" in text or child.type == "optional_parameter"
        stars = text[: len(text) - len(text.lstrip("*"))] if text.startswith("*") else ""
        found.append((stars + name, not optional))
    return tuple(found)


# Nodes that wrap a definition: a Python decorator, a JavaScript/TypeScript `export`.
_WRAPPERS = frozenset({"decorated_definition", "export_statement"})


def _doc_sentence(node: Any, data: bytes) -> str | None:
    wrapped = node.parent is not None and node.parent.type in _WRAPPERS
    target = node.parent if wrapped else node  # the comment stands above `@decorator`/`export`
    doc = doc_of(node, data)
    if doc is None and target is not node:
        doc = doc_of(target, data)
    return first_sentence(_text(data, doc)) if doc is not None else None


def _owner(node: Any, data: bytes) -> str | None:
    parent = node.parent
    while parent is not None:
        if parent.type in CLASS_NODES:
            name = parent.child_by_field_name("name") or parent.child_by_field_name("type")
            return _text(data, name) if name is not None else None
        if parent.type in DEFINITION_NODES:
            return None  # a function nested in a function: not addressable by name
        parent = parent.parent
    return None


def definitions(
    source: Any, with_settings: bool = False, min_lines: int = MIN_DEFINITION_LINES
) -> list[Definition]:
    """Functions, methods and classes of one file with a reasonable size (tree-sitter), and with
    `with_settings` the documented settings (assignments with a comment or a description)."""
    tree = _parse(source)
    if tree is None:
        return []

    data = source.data
    found = []
    for node in walk(tree.root_node):
        if node.has_error:
            continue
        if with_settings and node.type in SETTING_NODES:
            setting = _setting(source.path, node, data)
            if setting is not None:
                found.append(setting)
            continue
        if node.type not in DEFINITION_NODES:
            continue
        first, last = node.start_point[0] + 1, node.end_point[0] + 1
        if not min_lines <= last - first + 1 <= MAX_DEFINITION_LINES:
            continue
        name_node = node.child_by_field_name("name") or node.child_by_field_name("type")
        name = _text(data, name_node) if name_node is not None else ""
        owner = _owner(node, data)
        kind = "class" if node.type in CLASS_NODES else "method" if owner else "function"
        found.append(
            Definition(
                source.path,
                node.type,
                node.start_byte,
                node.end_byte,
                first,
                last,
                name=f"{owner}.{name}" if owner and name else name,
                kind=kind,
                signature=_signature(data, node),
                summary=_doc_sentence(node, data),
                params=_params(data, node) if kind != "class" else (),
            )
        )
    return found


def _trailing_comment(node: Any, row: int) -> bool:
    return node is not None and node.type == "comment" and node.start_point[0] == row


def _comment_above(node: Any, row: int) -> bool:
    """A comment ending on `row` on a line of its own (not trailing the statement above)."""
    if node is None or node.type != "comment" or node.end_point[0] != row:
        return False
    before = node.prev_sibling
    return before is None or before.end_point[0] < node.start_point[0]


def _keyword_string(value: str, keyword: str) -> str | None:
    """The text of `keyword="..." "..."` in a call (adjacent literals joined)."""
    found = re.search(rf"\b{keyword}\s*=", value)
    if found is None:
        return None
    rest, pieces = value[found.end() :], []
    while True:
        literal = re.match(r"""\s*(["'])(.*?)(?<!\\)\1""", rest, re.S)
        if literal is None:
            break
        pieces.append(literal.group(2))
        rest = rest[literal.end() :]
    return "".join(pieces) or None


def _setting(path: str, node: Any, data: bytes) -> Definition | None:
    """A module- or class-level assignment to one name that a comment or description explains."""
    parent = node.parent
    if parent is None or parent.type not in {"module", "program", "block", "class_body"}:
        return None
    if parent.type == "block" and (parent.parent is None or parent.parent.type not in CLASS_NODES):
        return None
    if node.start_point[0] != node.end_point[0] and node.end_point[0] - node.start_point[0] > 6:
        return None
    target = node.named_children[0] if node.named_children else None
    if target is None:
        return None
    if target.type == "variable_declarator" or target.type == "assignment":
        name_node = target.child_by_field_name("name") or target.child_by_field_name("left")
        value_node = target.child_by_field_name("value") or target.child_by_field_name("right")
    else:
        return None
    if name_node is None or value_node is None or name_node.type != "identifier":
        return None
    name, value = _text(data, name_node), _text(data, value_node)
    summary = None
    described = _keyword_string(value, "description")
    if described:
        summary = first_sentence(described)
    following, previous = node.next_sibling, node.prev_sibling
    if summary is None and _trailing_comment(following, node.end_point[0]):
        summary = first_sentence(_text(data, following))  # trailing comment on the same line
    if summary is None and _comment_above(previous, node.start_point[0] - 1):
        summary = first_sentence(_text(data, previous))  # comment on the line above
    if summary is None:
        return None
    owner = _owner(node, data) if parent.type != "module" and parent.type != "program" else None
    line = node.start_point[0] + 1
    # The snippet shows the explanation too: the comment above, the comment trailing the line.
    start = (
        previous.start_byte
        if _comment_above(previous, node.start_point[0] - 1)
        else node.start_byte
    )
    end = following.end_byte if _trailing_comment(following, node.end_point[0]) else node.end_byte
    return Definition(
        path,
        node.type,
        start,
        end,
        line,
        node.end_point[0] + 1,
        name=f"{owner}.{name}" if owner else name,
        kind="setting",
        signature=_one_line(_text(data, node), MAX_SIGNATURE_CHARS),
        summary=summary,
        value=_one_line(value, MAX_VALUE_CHARS),
    )


@dataclass(frozen=True)
class _SnippetSource:
    path: str
    language: str
    data: bytes


def definition_in_snippet(snippet: object, name: str, line: int) -> Definition | None:
    """The definition of `name` that starts on file line `line` inside a retrieved snippet, read
    with tree-sitter like a training file (summary, signature, parameters), with the file's line
    numbers and `name` as the question wrote it; None when the snippet does not hold all of it."""
    path = str(getattr(snippet, "path", ""))
    language = str(getattr(snippet, "language", "") or language_for(path))
    offset = int(getattr(snippet, "start_line", 1) or 1) - 1
    source = _SnippetSource(path, language, str(getattr(snippet, "text", "")).encode("utf-8"))
    short = name.rsplit(".", 1)[-1]
    for found in definitions(source, with_settings=True, min_lines=1):
        if found.start_line + offset != line or found.name.rsplit(".", 1)[-1] != short:
            continue
        kind = "method" if found.kind == "function" and "." in name else found.kind
        return replace(
            found, name=name, kind=kind, start_line=line, end_line=found.end_line + offset
        )
    return None


def file_source(path: str, text: str) -> _SnippetSource:
    """A whole file's text, parsed in the language its path names."""
    return _SnippetSource(path, language_for(path), text.encode("utf-8", "surrogatepass"))


def definition_at(path: str, text: str, line: int) -> Definition | None:
    """The innermost function, method or class of a file that holds 1-based `line` (one of at
    most MAX_DEFINITION_LINES lines); None outside every definition."""
    source = file_source(path, text)
    holding = [d for d in definitions(source, min_lines=1) if d.start_line <= line <= d.end_line]
    return min(holding, key=lambda d: d.end_line - d.start_line, default=None)


def definition_in_lines(path: str, text: str, first_line: int, last_line: int) -> Definition | None:
    """The definition lines `first_line`..`last_line` (1-based) are about: the outermost one
    starting among them (a selected function with its decorators), else the innermost one
    holding the first (a cursor)."""
    found = definitions(file_source(path, text), min_lines=1)
    starting = [d for d in found if first_line <= d.start_line <= last_line]
    if starting:
        return min(starting, key=lambda d: (d.start_line, -d.end_line))
    holding = [d for d in found if d.start_line <= first_line <= d.end_line]
    return min(holding, key=lambda d: d.end_line - d.start_line, default=None)


def file_summary(path: str, text: str) -> str | None:
    """The first sentence of a file's own docstring or leading comment (after a shebang or a
    licence-free first comment line), or None."""
    source = file_source(path, text)
    tree = _parse(source)
    if tree is None:
        return None
    for node in tree.root_node.named_children[:2]:
        if "comment" in node.type and _text(source.data, node).startswith("#!"):
            continue  # a shebang line
        docstring = node.type == "expression_statement" and bool(node.named_children)
        if (docstring and node.named_children[0].type == "string") or "comment" in node.type:
            return first_sentence(_text(source.data, node))
        return None
    return None


# --------------------------------------------------------------------------- answers


def cite(definition: Definition) -> str:
    return f"{definition.path}:{definition.start_line}"


def signature_sentence(definition: Definition) -> str:
    """What the signature alone says, for definitions without a docstring or comment."""
    what = {"method": "method", "class": "class", "setting": "setting"}.get(
        definition.kind, "function"
    )
    sentence = f"is a {what}"
    names = [f"`{p}`" for p, _required in definition.params]
    if names:
        sentence += " taking " + ", ".join(names)
    returns = re.search(r"->\s*(.+)$", definition.signature)
    if returns and definition.kind != "class":
        sentence += f" and returning `{returns.group(1).strip()}`"
    return sentence + "."


def lead(definition: Definition) -> str:
    """`name` (path:line): summary — or what the signature says."""
    if definition.summary:
        return f"`{definition.name}` ({cite(definition)}): {definition.summary}"
    return f"`{definition.name}` ({cite(definition)}) {signature_sentence(definition)}"


def quote_code(text: str, path: str, lines: int = QUOTE_LINES) -> str:
    """The first non-blank lines of a definition's code, dedented and fenced (never a prompt
    stop): the lines an answer quotes."""
    kept: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if any(token in line for token in UNSAFE):
            break
        kept.append(line[:MAX_QUOTE_LINE].rstrip())
        if len(kept) >= lines:
            break
    if not kept:
        return ""
    body = textwrap.dedent("\n".join(kept))
    return f"```{fence_language(path)}\n{body}\n```"


def snippet_of(source: Any, definition: Definition) -> ContextSnippet:
    """The definition's code as a context snippet (indentation of its first line kept)."""
    text = source.data[definition.start : definition.end].decode("utf-8", "replace")
    line_start = source.data.rfind(b"\n", 0, definition.start) + 1
    indent = source.data[line_start : definition.start].decode("utf-8", "replace")
    return ContextSnippet(
        path=definition.path,
        text=indent + text if not indent.strip() else text,
        start_line=source.data.count(b"\n", 0, definition.start) + 1,  # a comment above: its line
        end_line=definition.end_line,
    )
