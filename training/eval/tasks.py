"""Evaluation tasks cut from the held-out *test* files of the training split, and nothing else.

Three kinds, each a cursor with the file's text before (prefix) and after (suffix) the hole:
- ``line``: CrossCodeEval-style line completion: the cursor sits at a token boundary inside a
  code line (at least one token typed, never in a comment or a string), the answer is the rest
  of the line;
- ``midword``: the same, with the cursor inside a name as while typing it (`pool_kwa|rgs`):
  where a typing user asks most often, and where a prompt ends on an unusual token;
- ``span``: SAFIM-style syntax-aware spans, whole tree-sitter nodes: a function body, a block
  (if/for/while/with/try), or a one-line expression (the dataset's own span finder);
- ``api``: an API call whose callee is defined in the repository: the cursor is where the
  called name starts (after ``obj.`` for a method), the answer is the name and its arguments.

Every task also lists the cross-file definitions its answer uses (functions and classes defined
in another file of the repository, named unambiguously), for retrieval recall@k.
Files and their split come from `data.splits.collect_files` / `assign_splits` with the same
settings as training, so "test" means exactly the files the fine-tune never saw.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from repotune.training.data.spans import FUNCTION_NODES, parser, syntax_spans, walk
from repotune.training.data.splits import SourceFile

KINDS = ("line", "midword", "span", "api")
LINE_KINDS = ("line", "midword")  # the answer is the rest of one line
SPAN_TYPES = ("function_body", "block", "expression")
CLASS_NODES = {
    "class_definition",
    "class_declaration",
    "struct_item",
    "enum_item",
    "trait_item",
    "interface_declaration",
    "type_declaration",
}
CALL_NODES = {"call", "call_expression", "method_invocation"}
MIN_TARGET_CHARS = 4
MAX_API_CHARS = 160
# A name defined in more places than this is not a specific definition (e.g. `forward`).
MAX_DEFINITIONS_PER_NAME = 3
_CALLED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]{2,})\s*\(")
_CLASS_LIKE = re.compile(r"\b([A-Z][A-Za-z0-9_]*[a-z][A-Za-z0-9_]*)\b")


@dataclass(frozen=True)
class Definition:
    name: str
    path: str
    start_line: int  # 1-based, the line that names it
    end_line: int


@dataclass(frozen=True)
class Task:
    id: str
    kind: str  # line | span | api
    span: str  # line | function_body | block | expression | call
    path: str
    language: str
    start_byte: int
    end_byte: int
    prefix: str = field(repr=False)
    suffix: str = field(repr=False)
    target: str = ""
    definitions: tuple[Definition, ...] = ()

    @property
    def cursor_line(self) -> int:
        return self.prefix.count("\n") + 1

    @property
    def target_lines(self) -> tuple[int, int]:
        first = self.cursor_line
        return first, first + self.target.count("\n")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "span": self.span,
            "path": self.path,
            "start_byte": self.start_byte,
            "end_byte": self.end_byte,
            "line": self.cursor_line,
            "target": self.target,
            "definitions": [f"{d.name}@{d.path}:{d.start_line}" for d in self.definitions],
        }


def _parse(source: SourceFile) -> Any | None:
    try:
        return parser(source.language).parse(source.data)
    except Exception:  # a grammar that fails to load: no tasks from this file
        return None


# --------------------------------------------------------------------------- definitions


def definitions_index(files: Sequence[SourceFile]) -> dict[str, list[Definition]]:
    """Functions and classes defined anywhere in the repository, by name."""
    found: dict[str, list[Definition]] = {}
    for source in files:
        tree = _parse(source)
        if tree is None:
            continue
        for node in walk(tree.root_node):
            if node.type not in FUNCTION_NODES and node.type not in CLASS_NODES:
                continue
            name = node.child_by_field_name("name")
            if name is None:
                continue
            text = source.data[name.start_byte : name.end_byte].decode("utf-8", "replace")
            found.setdefault(text, []).append(
                Definition(text, source.path, name.start_point[0] + 1, node.end_point[0] + 1)
            )
    return found


def used_definitions(
    target: str, path: str, index: dict[str, list[Definition]]
) -> tuple[Definition, ...]:
    """Definitions in *other* files of what the answer calls or names as a class (unambiguous
    names only; a variable that happens to share a function's name does not count)."""
    used: list[Definition] = []
    names = [*_CALLED.findall(target), *_CLASS_LIKE.findall(target)]
    for name in dict.fromkeys(names):
        if name.startswith("__") and name.endswith("__"):
            continue
        places = index.get(name, [])
        if not places or len(places) > MAX_DEFINITIONS_PER_NAME:
            continue
        if any(place.path == path for place in places):
            continue  # defined in this file: not a cross-file dependency
        used.extend(places)
    return tuple(used)


# --------------------------------------------------------------------------- candidates


def _leaves(node: Any) -> list[Any]:
    return [n for n in walk(node) if n.child_count == 0 and n.end_byte > n.start_byte]


def _in_string_or_comment(node: Any) -> bool:
    current = node
    while current is not None:
        if "comment" in current.type or current.type in {"string", "string_content"}:
            return True
        current = current.parent
    return False


def _line_rows(source: SourceFile, tree: Any) -> list[tuple[list[Any], int]]:
    """Each eligible code line's leaves and end: one line of code, no syntax error, not
    starting inside a comment or a string."""
    data = source.data
    by_row: dict[int, list[Any]] = {}
    spanning: set[int] = set()
    for leaf in _leaves(tree.root_node):
        row, end_row = leaf.start_point[0], leaf.end_point[0]
        if end_row != row:
            spanning.update(range(row, end_row + 1))
            continue
        by_row.setdefault(row, []).append(leaf)
    rows = []
    for row in sorted(by_row):
        if row in spanning:
            continue
        leaves = sorted(by_row[row], key=lambda n: n.start_byte)
        if len(leaves) < 2 or any(_in_string_or_comment(leaf) for leaf in leaves[:1]):
            continue
        if any(leaf.type == "ERROR" or leaf.is_missing for leaf in leaves):
            continue
        line_end = data.find(b"\n", leaves[0].start_byte)
        rows.append((leaves, len(data) if line_end < 0 else line_end))
    return rows


def _answerable(data: bytes, cut: int, line_end: int) -> bool:
    """The rest of the line is long enough to score and holds a letter or digit."""
    rest = data[cut:line_end].decode("utf-8", "replace").strip()
    return len(rest) >= MIN_TARGET_CHARS and any(ch.isalnum() for ch in rest)


def line_candidates(source: SourceFile, tree: Any, rng: random.Random) -> list[tuple[int, int]]:
    """One (cursor, line end) per eligible code line: a token boundary with the rest of the
    line (at least MIN_TARGET_CHARS, with a letter or digit) as the answer."""
    candidates = []
    for leaves, line_end in _line_rows(source, tree):
        cuts: list[int] = []
        for leaf in leaves[1:]:
            if _in_string_or_comment(leaf) and leaf.type not in {'"', "'", "string_start"}:
                continue
            if _answerable(source.data, leaf.start_byte, line_end):
                cuts.append(leaf.start_byte)
        if cuts:
            candidates.append((rng.choice(cuts), line_end))
    return candidates


def midword_candidates(source: SourceFile, tree: Any, rng: random.Random) -> list[tuple[int, int]]:
    """One (cursor, line end) per eligible code line with the cursor inside a name, as while
    typing it: at least one character typed and one left, the rest of the line the answer."""
    candidates = []
    for leaves, line_end in _line_rows(source, tree):
        cuts: list[int] = []
        for leaf in leaves:
            if "identifier" not in leaf.type or _in_string_or_comment(leaf):
                continue
            inside = range(leaf.start_byte + 1, leaf.end_byte)
            cuts.extend(cut for cut in inside if _answerable(source.data, cut, line_end))
        if cuts:
            candidates.append((rng.choice(cuts), line_end))
    return candidates


def span_candidates(source: SourceFile) -> list[tuple[str, int, int]]:
    """Whole-node spans (the dataset's span finder): function bodies, blocks, expressions."""
    spans = []
    for span in syntax_spans(source):
        if span.kind == "fim" and span.span in SPAN_TYPES:
            middle = source.data[span.start : span.end].decode("utf-8", "replace")
            if len(middle.strip()) >= MIN_TARGET_CHARS:
                spans.append((span.span, span.start, span.end))
    return sorted(set(spans), key=lambda s: (s[1], s[2], s[0]))


_IMPORT = re.compile(r"^\s*import\s+([\w.]+)(?:\s+as\s+(\w+))?", re.MULTILINE)
_FROM = re.compile(r"^\s*from\s+([\w.]+)\s+import\s+\(?([\w\s,]+)", re.MULTILINE)


def external_names(text: str, own_packages: set[str]) -> set[str]:
    """Names a Python file binds from modules outside the repository (`import torch`,
    `from os import path`): calls on them are not the repository's API."""
    names: set[str] = set()
    for module, alias in _IMPORT.findall(text):
        if module.split(".")[0] not in own_packages:
            names.add(alias or module.split(".")[0])
    for module, imported in _FROM.findall(text):
        if module.split(".")[0] in own_packages:
            continue
        for part in imported.split(","):
            words = part.split()
            if words:
                names.add(words[-1])
    return names


def _root_name(node: Any, data: bytes) -> str | None:
    """The leftmost identifier of `a.b.c` (None for calls, subscripts...)."""
    current = node
    while current is not None and current.type in {"attribute", "member_expression"}:
        current = current.child_by_field_name("object")
    if current is not None and current.type == "identifier":
        return data[current.start_byte : current.end_byte].decode("utf-8", "replace")
    return None


def api_candidates(
    source: SourceFile,
    tree: Any,
    index: dict[str, list[Definition]],
    own_packages: set[str] | None = None,
) -> list[tuple[int, int]]:
    """One-line calls of the repository's API: (name start, call end). The callee's name is
    defined in the repository (at most MAX_DEFINITIONS_PER_NAME times, not a dunder) and the
    call is not made on a name imported from another package (`torch.autograd.backward`)."""
    data = source.data
    outside = external_names(source.text, own_packages or set())
    found = []
    for node in walk(tree.root_node):
        if node.type not in CALL_NODES or node.has_error:
            continue
        function = node.child_by_field_name("function") or node.child_by_field_name("name")
        if function is None:
            continue
        if function.type in {"attribute", "member_expression", "field_expression"}:
            name = function.child_by_field_name("attribute") or function.child_by_field_name(
                "property"
            )
            name = name or function.child_by_field_name("field")
        else:
            name = function
        if name is None or name.type not in {"identifier", "property_identifier"}:
            continue
        if node.start_point[0] != node.end_point[0]:
            continue
        text = data[name.start_byte : name.end_byte].decode("utf-8", "replace")
        places = index.get(text, [])
        if not places or len(places) > MAX_DEFINITIONS_PER_NAME or text.startswith("__"):
            continue
        if node.end_byte - name.start_byte > MAX_API_CHARS:
            continue
        if (_root_name(function, data) or text) in outside:
            continue
        found.append((name.start_byte, node.end_byte))
    return sorted(set(found))


# --------------------------------------------------------------------------- sampling


def _task_id(path: str, kind: str, start: int, end: int) -> str:
    return hashlib.sha256(f"{path}:{kind}:{start}:{end}".encode()).hexdigest()[:16]


def _make(
    source: SourceFile,
    kind: str,
    span: str,
    start: int,
    end: int,
    index: dict[str, list[Definition]],
) -> Task:
    data = source.data
    target = data[start:end].decode("utf-8", "replace")
    return Task(
        id=_task_id(source.path, kind, start, end),
        kind=kind,
        span=span,
        path=source.path,
        language=source.language,
        start_byte=start,
        end_byte=end,
        prefix=data[:start].decode("utf-8", "replace"),
        suffix=data[end:].decode("utf-8", "replace"),
        target=target,
        definitions=used_definitions(target, source.path, index),
    )


def _spread(per_file: dict[str, list[Any]], count: int, rng: random.Random) -> list[Any]:
    """Up to `count` items taken round-robin over files in a seeded order: no file dominates."""
    queues = {path: list(items) for path, items in per_file.items() if items}
    for items in queues.values():
        rng.shuffle(items)
    order = sorted(queues)
    rng.shuffle(order)
    chosen: list[Any] = []
    while len(chosen) < count and order:
        for path in list(order):
            if len(chosen) >= count:
                break
            if queues[path]:
                chosen.append(queues[path].pop())
            else:
                order.remove(path)
    return chosen


def extract_tasks(
    files: Sequence[SourceFile],
    counts: dict[str, int],
    seed: int,
    count_tokens: Callable[[str], int] | None = None,
    max_target_tokens: int | None = None,
) -> list[Task]:
    """Tasks of each kind from the files whose split is "test" (never train or validation).

    `counts` maps kind -> how many; the same files, counts and seed give the same tasks.
    Answers longer than `max_target_tokens` (the completion cap) are left out: no condition
    could produce them.
    """
    unknown = set(counts) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown task kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    index = definitions_index(files)
    test_files = [f for f in files if f.split == "test"]
    by_path = {f.path: f for f in test_files}
    own_packages = {f.path.split("/")[0].removesuffix(".py") for f in files}
    per_kind: dict[str, dict[str, list[tuple[str, str, int, int]]]] = {k: {} for k in KINDS}
    for source in sorted(test_files, key=lambda f: f.path):
        tree = _parse(source)
        if tree is None:
            continue
        rng = random.Random(f"{seed}:{source.path}")
        path = source.path
        lines = line_candidates(source, tree, rng)
        per_kind["line"][path] = [(path, "line", a, b) for a, b in lines]
        # Its own random stream: adding this kind leaves the other kinds' tasks as they were.
        midwords = midword_candidates(source, tree, random.Random(f"{seed}:{path}:midword"))
        per_kind["midword"][path] = [(path, "midword", a, b) for a, b in midwords]
        per_kind["span"][path] = [(path, s, a, b) for s, a, b in span_candidates(source)]
        calls = api_candidates(source, tree, index, own_packages)
        per_kind["api"][path] = [(path, "call", a, b) for a, b in calls]
    tasks: list[Task] = []
    for kind in KINDS:
        wanted = counts.get(kind, 0)
        if wanted <= 0:
            continue
        pool = per_kind[kind]
        if count_tokens is not None and max_target_tokens is not None:
            pool = {
                path: [
                    item
                    for item in items
                    if count_tokens(
                        by_path[path].data[item[2] : item[3]].decode("utf-8", "replace")
                    )
                    <= max_target_tokens
                ]
                for path, items in pool.items()
            }
        rng = random.Random(f"{seed}:{kind}")
        types = sorted({item[1] for items in pool.values() for item in items})
        if kind == "span" and len(types) > 1:
            # Each span type gets its share (expressions would otherwise crowd out bodies).
            chosen = []
            for i, name in enumerate(types):
                share = wanted // len(types) + (1 if i < wanted % len(types) else 0)
                typed = {p: [it for it in items if it[1] == name] for p, items in pool.items()}
                chosen.extend(_spread(typed, share, rng))
        else:
            chosen = _spread(pool, wanted, rng)
        for path, span, start, end in chosen:
            tasks.append(_make(by_path[path], kind, span, start, end, index))
    return tasks
