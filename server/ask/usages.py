"""Questions about where code is used ("Where is `parse_pin` called?", "What uses Config?", "Is
this function used anywhere?"), answered from the index itself: every indexed line whose code
names it, read with tree-sitter (a comment, a docstring, a definition or a parameter of the same
name is no use). The model is not asked: it cannot list what it was not shown, and a list the
index can give exactly is better given exactly.

Plain functions over indexed text (the store's redacted runs of each file), shared by the
language server and the CLI through Assistant.ask.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from repotune.server.ask.definitions import CLASS_NODES, DEFINITION_NODES
from repotune.server.index.chunking import new_parser
from repotune.server.languages import CODE_LANGUAGES, language_for

if TYPE_CHECKING:
    from repotune.server.index.workspace import FileRuns

# At most this many uses are listed (the rest are counted), and this many files scanned.
MAX_LISTED_USES = 20
MAX_SCANNED_FILES = 300
MAX_LISTED_OTHERS = 5  # imports without a use, mentions in text files or strings
MAX_LINE_CHARS = 100

_VERBS = (
    r"used|called|referenced|imported|invoked|instantiated|constructed|subclassed|"
    r"extended|raised|thrown|caught|read|overridden|implemented|inherited\s+from"
)
# "calls", "use", "subclasses", "relies on": what code does to the subject.
_ACTIVE_VERBS = (
    r"calls?|uses?|references?|imports?|invokes?|instantiates?|constructs?|subclass(?:es)?|"
    r"extends?|raises?|throws?|catch(?:es)?|reads?|overrides?|implements?|depends?\s+on|"
    r"rel(?:y|ies)\s+on|inherits?\s+from"
)
_KINDS = (
    r"function|method|class|type|interface|constant|variable|field|attribute|property|"
    r"decorator|exception|error|setting|option|hook|helper|module|struct|enum|trait|component|"
    r"object|instance"
)
# The thing asked about: `anything quoted`, a code name (dotted, with "()"), or "this function".
_SUBJECT = (
    rf"(?:the\s+)?(?:(?:{_KINDS})\s+)?"
    r"(?P<name>`[^`\n]{1,120}`|this|these|[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*(?:\(\))?)"
    rf"(?:\s+(?:{_KINDS})(?:e?s)?)?"
)
_USAGE_QUESTIONS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # "Where is X used?", "Where are the Foo objects instantiated?" (not "What is X used
        # for?": what it is for)
        rf"\bwhere\s+(?:is|are|was|were)\s+{_SUBJECT}\s+"
        rf"(?:(?:ever|still|actually|really|being|getting)\s+)*(?P<verb>{_VERBS})\b(?!\s+for\b)",
        # "Is X used anywhere?", "Is this function still called?"
        rf"^\W*(?:is|are)\s+{_SUBJECT}\s+(?:(?:ever|still|actually|really|being)\s+)*"
        rf"(?P<verb>{_VERBS})\b(?!\s+for\b)",
        # "What calls X?", "Which functions use X?", "Who imports X?"
        rf"\b(?:what|who|which)\b(?:\s+[\w-]+){{0,3}}?\s+(?P<verb>{_ACTIVE_VERBS})\s+{_SUBJECT}",
        # "Where do we call X?", "Where does the code use X?"
        rf"\bwhere\s+(?:do|does|did|can)\s+(?:\w+\s+){{0,2}}?"
        rf"(?P<verb>use|call|reference|import|invoke|instantiate|construct|raise|throw|catch|"
        rf"read)\s+{_SUBJECT}",
        # "Find usages of X", "callers of X", "references to X"
        r"\b(?:usages?|uses|references|callers|call\s*sites|users|consumers|importers)\s+"
        rf"(?:of|to|for)\s+{_SUBJECT}",
    )
)
# Words the subject pattern can catch that name nothing ("Where is it used?").
_NOT_NAMES_TEXT = """
it its they them that those what which who something anything everything one each all any some
a an the code function method class
"""
_NOT_NAMES = frozenset(_NOT_NAMES_TEXT.split())
# "this function", "these": the code in view, resolved by the caller.
IN_VIEW = "this"
_CODE_SHAPED = re.compile(r"_|[a-z][A-Z]|\.|\(\)|^[A-Z][a-z]+[A-Z]")
# What a verb asks about a use: caught (an except/catch clause's type), raised (raise, throw),
# a base class (subclassed, extended, inherited from), imported; any other verb: every use.
_ROLES = (
    ("catch", re.compile(r"^(?:caught|catch)", re.I)),
    ("raise", re.compile(r"^(?:raise|thrown|throw)", re.I)),
    ("base", re.compile(r"^(?:subclass|extend|inherit)", re.I)),
    ("import", re.compile(r"^import", re.I)),
)
ROLE_WORDS = {"catch": "caught", "raise": "raised", "base": "subclassed", "import": "imported"}

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
class UsageQuestion:
    """What a usage question asks about: `name` as the question wrote it (`Owner.member` kept),
    `IN_VIEW` for "this function"; `code_shaped` when it cannot be a plain English word."""

    name: str
    code_shaped: bool
    role: str = ""  # "catch", "raise", "base", "import": what the verb asks about; "" any use

    @property
    def searched(self) -> str:
        """The identifier looked for: a member's own name (`bind` for `BoundLogger.bind`)."""
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Site:
    path: str
    line: int  # 1-based
    text: str  # the line, stripped and shortened
    kind: str  # use | import | definition | string | mention
    within: str = ""  # the definition holding it ("Cart.total"), or a module-level assignment
    role: str = ""  # a use's: "catch", "raise", "base" (a class's superclass), or ""


def usage_question(question: str) -> UsageQuestion | None:
    """The subject of a question about where code is used, None for any other question."""
    for pattern in _USAGE_QUESTIONS:
        found = pattern.search(question)
        if found is None:
            continue
        raw = found.group("name")
        quoted = raw.startswith("`")
        name = raw.strip("`").strip().removesuffix("()")
        verb = found.groupdict().get("verb") or ""
        role = next((role for role, words in _ROLES if words.match(verb)), "")
        if name.lower() in ("this", "these"):
            return UsageQuestion(IN_VIEW, True, role)
        if not quoted and name.lower() in _NOT_NAMES:
            continue
        if not re.fullmatch(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*", name):
            continue
        return UsageQuestion(name, quoted or bool(_CODE_SHAPED.search(raw)), role)
    return None


class NamingFiles(Protocol):
    """What usages read from an index (WorkspaceIndex.files_naming)."""

    def files_naming(self, name: str, limit: int) -> tuple[list[tuple[str, FileRuns]], int]: ...


def sites_in_index(
    index: NamingFiles, name: str, max_files: int = MAX_SCANNED_FILES
) -> tuple[list[Site], int, int]:
    """Every site naming identifier `name` in the first `max_files` files of an index that hold
    it: (sites, files holding it, files read)."""
    naming, files = index.files_naming(name, max_files)
    sites = [site for path, runs in naming for site in sites_in_file(path, runs, name)]
    return sites, files, len(naming)


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


def _is_test(path: str) -> bool:
    parts = path.lower().split("/")
    return any(p in ("test", "tests", "testing", "__tests__", "spec") for p in parts[:-1]) or (
        parts[-1].startswith("test_") or re.search(r"[._-](test|spec)\.\w+$", parts[-1]) is not None
    )


def usage_answer(
    question: UsageQuestion,
    sites: Sequence[Site],
    files: int,
    scanned: int,
    index_complete: bool = True,
) -> tuple[str, list[Site]]:
    """The answer (Markdown) to a usage question from the sites found in the `scanned` files
    (of `files` holding the name), and the sites it cites; with `index_complete` False, it
    says that files not yet indexed are missing. A question about one kind of use ("Where is
    X caught?") lists those first and the other uses after."""
    uses = _ordered(s for s in sites if s.kind == "use")
    imports = _ordered(s for s in sites if s.kind == "import")
    role = question.role
    of_role = [s for s in uses if s.role == role] if role else uses
    asked = imports if role == "import" else of_role
    shown = asked or uses  # none of the kind asked about: every use, said so
    listed = shown[:MAX_LISTED_USES]
    lines = [_headline(question, sites, asked, uses)]
    lines += [
        f"- {s.path}:{s.line}{f' (in `{s.within}`)' if s.within else ''}: `{_code(s.text)}`"
        for s in listed
    ]
    if len(shown) > len(listed):
        lines.append(f"- … and {len(shown) - len(listed)} more")
    other_uses = [s for s in uses if s not in shown]
    if other_uses:
        lines.append(_also("Other uses", other_uses))
    used_files = {s.path for s in uses}
    lone_imports = [s for s in imports if s.path not in used_files and s not in shown]
    if lone_imports:
        lines.append(_also("Imported without a use in", lone_imports))
    strings = [s for s in sites if s.kind == "string"]
    if strings:  # getattr(obj, "name"), __all__, a registry: not followed
        lines.append(_also("Named in a string (a use by that name is not followed)", strings))
    mentions = [s for s in sites if s.kind == "mention"]
    if mentions:
        lines.append(_also("Mentioned in", mentions))
    if not uses:
        lines.append(
            "A use through a string (getattr, a registry, a configuration file), or from "
            "outside this workspace, is not seen."
        )
    notes = []
    if "." in question.name:
        notes.append(
            f"Matched by the name `{question.searched}`: the index does not know which class an "
            "object has, so a use of another class's member of that name is listed too."
        )
    if scanned < files:
        notes.append(f"The first {scanned} of the {files} files naming it were read.")
    if not index_complete:
        notes.append("The index is still being built: files not indexed yet are not included.")
    text = "\n".join(lines) + "".join(f"\n\n{note}" for note in notes)
    return text, [*listed, *lone_imports[:MAX_LISTED_OTHERS]]


def _ordered(sites: Iterable[Site]) -> list[Site]:
    """Code before tests, then by path and line."""
    return sorted(sites, key=lambda s: (_is_test(s.path), s.path, s.line))


def _headline(
    question: UsageQuestion, sites: Sequence[Site], asked: Sequence[Site], uses: Sequence[Site]
) -> str:
    """ "`x` is used in 3 places in 2 files (defined at a.py:4):" (caught, raised, subclassed,
    imported for a question about those), or that there is none of what was asked."""
    definitions = [s for s in sites if s.kind == "definition"]
    where = ", ".join(f"{s.path}:{s.line}" for s in definitions[:3])
    more = " and elsewhere" if len(definitions) > 3 else ""
    defined = f" (defined at {where}{more})" if where else ""
    name = f"`{question.name}`"
    verb = ROLE_WORDS.get(question.role, "used")
    if asked:
        return f"{name} is {verb} in {_places(asked)}{defined}:"
    if not uses:
        return f"No use of {name} was found in the indexed code{defined}."
    nowhere = f"{name} is not {verb} anywhere in the indexed code{defined}"
    return f"{nowhere}; it is used in {_places(uses)}:"


def _places(sites: Sequence[Site]) -> str:
    """ "3 places in 2 files"."""
    files = len({s.path for s in sites})
    places = "1 place" if len(sites) == 1 else f"{len(sites)} places"
    return f"{places} in {files} file{'' if files == 1 else 's'}"


def _also(lead: str, sites: Sequence[Site]) -> str:
    named = ", ".join(f"{s.path}:{s.line}" for s in sites[:MAX_LISTED_OTHERS])
    more = f" and {len(sites) - MAX_LISTED_OTHERS} more" if len(sites) > MAX_LISTED_OTHERS else ""
    return f"{lead}: {named}{more}."


def _code(text: str) -> str:
    return text.replace("`", "'")
