"""Where the middles are: tree-sitter nodes (function bodies, blocks, statements, expressions,
line remainders), docstring-led bodies, and random line spans.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from repotune.server.ask.definitions import doc_of, walk
from repotune.server.index.chunking import new_parser as parser  # one tree-sitter setup
from repotune.training.data.splits import SourceFile

MAX_MIDDLE_LINES = 24


# tree-sitter node kinds per span type, by language (others fall back to generic names).
FUNCTION_NODES = {
    "function_definition",
    "function_declaration",
    "function_item",
    "method_definition",
    "method_declaration",
    "constructor_declaration",
    "arrow_function",
    "function_expression",
    "method",
}


BLOCK_NODES = {
    "if_statement",
    "for_statement",
    "for_in_statement",
    "while_statement",
    "with_statement",
    "try_statement",
    "if_expression",
    "for_expression",
    "match_expression",
    "switch_statement",
    "expression_switch_statement",
}


STATEMENT_NODES = {
    "expression_statement",
    "return_statement",
    "assignment",
    "lexical_declaration",
    "variable_declaration",
    "let_declaration",
    "short_var_declaration",
    "local_variable_declaration",
    "raise_statement",
    "assert_statement",
}


EXPRESSION_NODES = {
    "call",
    "call_expression",
    "method_invocation",
    "binary_operator",
    "binary_expression",
    "comparison_operator",
    "boolean_operator",
    "list_comprehension",
    "subscript",
    "attribute",
    "member_expression",
    "field_expression",
    "argument_list",
    "arguments",
}


@dataclass(frozen=True)
class Span:
    """A middle: bytes [start, end) of a file, and what kind of span it is."""

    kind: str  # example kind: fim, fim_random, describe
    span: str  # node kind or line_remainder / random
    start: int
    end: int


def _line_count(data: bytes, start: int, end: int) -> int:
    return data[start:end].count(b"\n") + 1


def syntax_spans(source: SourceFile) -> list[Span]:
    """All candidate middles of one file that are whole tree-sitter nodes (or line remainders)."""
    try:
        tree = parser(source.language).parse(source.data)
    except Exception:  # a grammar that fails to load: no syntax spans for this file
        return []
    data = source.data
    spans: list[Span] = []
    for node in walk(tree.root_node):
        if node.has_error or node.start_byte == node.end_byte:
            continue
        lines = _line_count(data, node.start_byte, node.end_byte)
        if node.type in FUNCTION_NODES:
            body = node.child_by_field_name("body")
            doc = doc_of(node, data)
            if body is not None and body.named_children and lines <= MAX_MIDDLE_LINES + 2:
                inner = body.named_children
                spans.append(Span("fim", "function_body", inner[0].start_byte, inner[-1].end_byte))
                if doc is not None:
                    rest = [child for child in inner if child.start_byte >= doc.end_byte]
                    if rest and doc.parent == body:
                        spans.append(
                            Span("describe", "docstring", rest[0].start_byte, rest[-1].end_byte)
                        )
                    elif doc.parent != body:
                        spans.append(
                            Span("describe", "comment", inner[0].start_byte, inner[-1].end_byte)
                        )
        elif lines > MAX_MIDDLE_LINES:
            continue
        elif node.type in BLOCK_NODES:
            spans.append(Span("fim", "block", node.start_byte, node.end_byte))
        elif node.type in STATEMENT_NODES:
            spans.append(Span("fim", "statement", node.start_byte, node.end_byte))
            line_end = data.find(b"\n", node.start_byte)
            line_end = len(data) if line_end < 0 else line_end
            if lines == 1 and node.end_byte == line_end and node.end_byte - node.start_byte > 8:
                for child in node.children[1:]:
                    if child.start_byte > node.start_byte and child.end_byte == node.end_byte:
                        spans.append(Span("fim", "line_remainder", child.start_byte, line_end))
                        break
        elif node.type in EXPRESSION_NODES and lines == 1 and node.end_byte - node.start_byte > 3:
            spans.append(Span("fim", "expression", node.start_byte, node.end_byte))
    return spans


def random_spans(source: SourceFile, rng: random.Random, count: int) -> list[Span]:
    """Cursor anywhere: a middle from a random point in a line to the end of 1–3 lines."""
    data = source.data
    starts = [0] + [i + 1 for i, byte in enumerate(data) if byte == 10 and i + 1 < len(data)]
    spans = []
    for _ in range(count):
        index = rng.randrange(len(starts))
        line_start = starts[index]
        line_end = data.find(b"\n", line_start)
        line_end = len(data) if line_end < 0 else line_end
        if line_end - line_start < 4:
            continue
        start = line_start + rng.randrange(0, line_end - line_start)
        while start > line_start and (data[start] & 0xC0) == 0x80:  # not inside a UTF-8 char
            start -= 1
        last = min(len(starts) - 1, index + rng.randrange(0, 3))
        end = data.find(b"\n", starts[last])
        end = len(data) if end < 0 else end
        if data[start:end].strip():
            spans.append(Span("fim_random", "random", start, end))
    return spans


def choose_spans(source: SourceFile, rng: random.Random, per_kind: int) -> list[Span]:
    """A few spans of each kind per file, so one long file does not dominate."""
    candidates = syntax_spans(source)
    by_type: dict[str, list[Span]] = {}
    for span in candidates:
        by_type.setdefault(span.span, []).append(span)
    chosen: list[Span] = []
    for name in sorted(by_type):
        group = by_type[name]
        chosen.extend(rng.sample(group, min(per_kind, len(group))))
    chosen.extend(random_spans(source, rng, max(1, per_kind // 2)))
    return chosen


def example_id(path: str, span: Span) -> str:
    key = f"{path}:{span.start}:{span.end}:{span.kind}:{span.span}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]
