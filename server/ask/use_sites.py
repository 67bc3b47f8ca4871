"""Where an identifier stands in the indexed code, and what the code does with it there: used
(called, read, a base class, an exception raised or caught), imported, defined, named in a string,
or mentioned in a file no grammar reads. Read with tree-sitter over the store's redacted runs of
each file, so a comment, a docstring, a parameter or a local variable of the same name is no use.
What "Where is X used?" answers from (ask/usages.py) and `repotune bench usages` measures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from repotune.server.ask.definitions import CLASS_NODES, DEFINITION_NODES
from repotune.server.index.chunking import new_parser
from repotune.server.languages import CODE_LANGUAGES, language_for

# At most this many files are read for one name; a line is shown up to this many characters.
MAX_SCANNED_FILES = 300
MAX_LINE_CHARS = 100

# Identifier-like leaves of the tree-sitter grammars (Python, JS/TS, Go, Rust, Java, C, Ruby ...).
_NAME_NODES = ("identifier", "constant")
_STRING_NODES = frozenset({"string", "string_content", "string_fragment", "template_string"})
# A definition's own name; an assignment's or declaration's outside every function.
_NAMED_DEFINITIONS = DEFINITION_NODES | {
    "interface_declaration",
    "type_alias_declaration",
    "enum_declaration",
    "abstract_class_declaration",
    "struct_item",
    "enum_item",
    "trait_item",
    "type_spec",
}
_BINDINGS = frozenset(
    {"assignment", "augmented_assignment", "variable_declarator", "const_spec", "var_spec"}
)
# Where a name is declared, not used: `f(name=...)`, `{name: ...}`.
_DECLARING = frozenset({"keyword_argument", "pair"})
# What holds several targets: `a, b = ...`, `for (a, b) in ...`.
_PATTERNS = frozenset({"pattern_list", "tuple_pattern", "list_pattern", "parenthesized_expression"})
_LOOP_TARGETS = frozenset({"for_statement", "for_in_clause", "for_in_statement"})
# A block of statements: a use inside one is not part of the clause or class header around it.
_BODIES = frozenset({"block", "statement_block", "class_body", "body_statement"})
_FUNCTIONS = frozenset(
    {
        "function_definition",
        "function_declaration",
        "function_item",
        "method_definition",
        "method_declaration",
        "arrow_function",
        "function_expression",
        "function",
        "lambda",
    }
)


@dataclass(frozen=True)
class Site:
    path: str
    line: int  # 1-based
    text: str  # the line, stripped and shortened
    kind: str  # use | import | definition | string | mention
    within: str = ""  # the definition holding it ("Cart.total"), or a module-level assignment
    role: str = ""  # a use's: "catch", "raise", "base" (a class's superclass), or ""


class IndexedText(Protocol):
    """What usages read from an index's store (Store)."""

    def paths_naming(self, name: str, n: int) -> tuple[list[str], int]: ...

    def file_runs(self, path: str) -> list[tuple[int, str]]: ...


def sites_in_index(
    store: IndexedText, name: str, max_files: int = MAX_SCANNED_FILES
) -> tuple[list[Site], int, int]:
    """Every site naming identifier `name` in the first `max_files` files of an index that hold
    it, read from their indexed (redacted) runs: (sites, files holding it, files read)."""
    paths, files = store.paths_naming(name, max_files)
    sites = [site for path in paths for site in sites_in_file(path, store.file_runs(path), name)]
    return sites, files, len(paths)


def sites_in_file(path: str, runs: Iterable[tuple[int, str]], name: str) -> list[Site]:
    """Every line of a file's indexed runs ((first line, text)) that names identifier `name`:
    a use, an import, a definition, a string naming it; in a file no grammar reads, a
    mention. Comments, parameters and local variables of the same name are left out."""
    word = re.compile(rf"(?<![\w$]){re.escape(name)}(?![\w$])")
    language = language_for(path)
    code = language in CODE_LANGUAGES.values()
    sites: dict[int, Site] = {}
    for first_line, text in runs:
        if not word.search(text):
            continue
        data = text.encode("utf-8", "surrogatepass")
        tree = _parse(language, data) if code else None
        lines = text.split("\n")
        for match in word.finditer(text):
            row = text.count("\n", 0, match.start())
            kind: str | None = "mention"
            within = role = ""
            if tree is not None:
                start = len(text[: match.start()].encode("utf-8", "surrogatepass"))
                node = tree.root_node.descendant_for_byte_range(start, start + len(name))
                kind = _kind(node)
                within = _within(node, data) if kind == "use" else ""
                role = _role(node) if kind == "use" else ""
            line = first_line + row
            if kind is None or _rank(sites.get(line)) >= _rank_of(kind):
                continue
            sites[line] = Site(path, line, _shortened(lines[row]), kind, within, role)
    return sorted(sites.values(), key=lambda site: site.line)


def _parse(language: str, data: bytes) -> Any | None:
    try:
        return new_parser(language).parse(data)
    except Exception:  # a grammar that fails to load: the file is read as text
        return None


# When one line names it twice, what it says of the line: a use wins over an import ...
_KIND_ORDER = ("mention", "string", "import", "definition", "use")


def _rank_of(kind: str) -> int:
    return _KIND_ORDER.index(kind)


def _rank(site: Site | None) -> int:
    return -1 if site is None else _rank_of(site.kind)


def _kind(node: Any) -> str | None:
    """What the code at `node` does with the name; None for what is no use of it (a comment,
    a parameter, a keyword argument's or an object key's name, a local variable)."""
    if node is None:
        return None
    if node.type in _STRING_NODES or (node.parent is not None and node.parent.type == "string"):
        return None if _in_docstring(node) else "string"
    if "comment" in node.type or not node.type.endswith(_NAME_NODES):
        return None
    parent = node.parent
    if parent is None:
        return "use"
    ancestors = list(_ancestors(node))
    if any("import" in a.type or a.type == "export_specifier" for a in ancestors):
        return "import"
    field = _field_of(node, parent)
    if field == "name" and parent.type in _NAMED_DEFINITIONS:
        return "definition"
    if field in ("name", "left") and parent.type in _BINDINGS:
        inside_function = any(a.type in _FUNCTIONS for a in ancestors[1:])
        return None if inside_function else "definition"
    if "parameter" in parent.type and field not in ("value", "type"):
        return None  # a parameter's own name (its default and its type are uses)
    if field in ("name", "key") and parent.type in _DECLARING:
        return None
    if parent.type == "as_pattern_target":
        return None  # `with ... as name`, `except E as name`: a local
    return _unpacked(node, ancestors)


def _unpacked(node: Any, ancestors: list[Any]) -> str | None:
    """A name among the targets of `for a, name in`, `a, name = ...` (a local, or at module
    level a definition), or of `for name in`; "use" anywhere else."""
    target = node
    while target.parent is not None and target.parent.type in _PATTERNS:
        target = target.parent
    holder = target.parent
    if holder is None or _field_of(target, holder) != "left":
        return "use"
    if holder.type in _LOOP_TARGETS:
        return None
    if holder.type in _BINDINGS:
        return None if any(a.type in _FUNCTIONS for a in ancestors) else "definition"
    return "use"


def _role(node: Any) -> str:
    """What a use does: "catch" (the type an except/catch clause names), "raise" (in a raise or
    throw statement), "base" (a class's superclass), else ""."""
    child = node
    for ancestor in _ancestors(node):
        kind = ancestor.type
        if kind in ("except_clause", "catch_clause", "rescue"):
            return "catch"
        if kind in ("raise_statement", "throw_statement"):
            return "raise"
        if kind in ("class_heritage", "extends_clause", "superclass", "implements_clause") or (
            kind in CLASS_NODES and _field_of(child, ancestor) == "superclasses"
        ):
            return "base"
        if kind in _BODIES or kind in _FUNCTIONS:
            return ""  # the clause's or class's body, not its header
        child = ancestor
    return ""


def _in_docstring(node: Any) -> bool:
    """Whether a string node is (in) a string standing alone as a statement: a docstring."""
    string = node if node.type == "string" else node.parent
    while string is not None and string.type != "string":
        string = string.parent
    statement = string.parent if string is not None else None
    return (
        statement is not None
        and statement.type == "expression_statement"
        and (statement.named_child_count == 1)
    )


def _within(node: Any, data: bytes) -> str:
    """The name of the function, method or class holding `node` (a method as `Owner.name`), or
    of the module-level assignment it is part of; "" when neither."""
    ancestors = list(_ancestors(node))
    for index, ancestor in enumerate(ancestors):
        if ancestor.type in _NAMED_DEFINITIONS:
            name = _name_text(ancestor, "name", data)
            if ancestor.type in _FUNCTIONS:
                owner = next((a for a in ancestors[index + 1 :] if a.type in CLASS_NODES), None)
                if owner is not None and _name_text(owner, "name", data):
                    return f"{_name_text(owner, 'name', data)}.{name}"
            return name
        if ancestor.type in _BINDINGS and not any(a.type in _FUNCTIONS for a in ancestors):
            return _name_text(ancestor, "left", data) or _name_text(ancestor, "name", data)
    return ""


def _name_text(node: Any, field: str, data: bytes) -> str:
    child = node.child_by_field_name(field)
    if child is None or not child.type.endswith(_NAME_NODES):
        return ""
    return data[child.start_byte : child.end_byte].decode("utf-8", "replace")


def _ancestors(node: Any) -> Iterable[Any]:
    current = node.parent
    while current is not None:
        yield current
        current = current.parent


def _field_of(node: Any, parent: Any) -> str | None:
    for field in ("name", "left", "key", "pattern", "value", "type", "superclasses"):
        child = parent.child_by_field_name(field)
        if child is not None and child.id == node.id:
            return field
    return None


def _shortened(line: str) -> str:
    line = line.strip()
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"
