"""Questions about where code is used ("Where is `parse_pin` called?", "What uses Config?", "Is
this function used anywhere?", "Where is DropEvent caught?"), answered from the index itself:
every indexed line whose code uses it (ask/use_sites.py), listed with the function it is in. The
model is not asked: it cannot list what it was not shown, and a list the index can give exactly
is better given exactly.

Plain functions, shared by the language server and the CLI through ask/from_index.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from repotune.server.ask.use_sites import Site

# At most this many uses are listed (the rest are counted).
MAX_LISTED_USES = 20
MAX_LISTED_OTHERS = 5  # imports without a use, mentions in text files or strings

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
SUBJECT_PATTERN = (
    rf"(?:the\s+)?(?:(?:{_KINDS})\s+)?"
    r"(?P<name>`[^`\n]{1,120}`|this|these|[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*(?:\(\))?)"
    rf"(?:\s+(?:{_KINDS})(?:e?s)?)?"
)
_USAGE_QUESTIONS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # "Where is X used?", "Where are the Foo objects instantiated?" (not "What is X used
        # for?": what it is for)
        rf"\bwhere\s+(?:is|are|was|were)\s+{SUBJECT_PATTERN}\s+"
        rf"(?:(?:ever|still|actually|really|being|getting)\s+)*(?P<verb>{_VERBS})\b(?!\s+for\b)",
        # "Is X used anywhere?", "Is this function still called?", "X looks dead; is it used?"
        rf"(?:^|[.;:!?,]\s+)\W*(?:is|are)\s+{SUBJECT_PATTERN}\s+(?:(?:ever|still|actually|really|being)\s+)*"
        rf"(?P<verb>{_VERBS})\b(?!\s+for\b)",
        # "What calls X?", "Which functions use X?", "Who imports X?"
        rf"\b(?:what|who|which)\b(?:\s+[\w-]+){{0,3}}?\s+(?P<verb>{_ACTIVE_VERBS})\s+{SUBJECT_PATTERN}",
        # "Where do we call X?", "Where does the code use X?"
        rf"\bwhere\s+(?:do|does|did|can)\s+(?:\w+\s+){{0,2}}?"
        rf"(?P<verb>use|call|reference|import|invoke|instantiate|construct|raise|throw|catch|"
        rf"read)\s+{SUBJECT_PATTERN}",
        # "Find usages of X", "callers of X", "references to X"
        r"\b(?:usages?|uses|references|callers|call\s*sites|users|consumers|importers)\s+"
        rf"(?:of|to|for)\s+{SUBJECT_PATTERN}",
        # "List the subclasses of X", "implementations of X", "classes that inherit from X"
        r"\b(?P<verb>subclasses|sub-classes|derived\s+classes|child\s+classes|implementations|"
        rf"implementers|implementors)\s+(?:of|for)\s+{SUBJECT_PATTERN}",
        r"\b(?:classes|types|structs)\s+(?:that|which)\s+(?:\w+\s+)?"
        rf"(?P<verb>inherits?\s+from|extends?|subclass(?:es)?|implements?)\s+{SUBJECT_PATTERN}",
    )
)
# Words the subject pattern can catch that name nothing ("Where is it used?").
_NOT_NAMES_TEXT = """
it its they them that those what which who something anything everything one each all any some
a an the code function method class
"""
NOT_NAMES = frozenset(_NOT_NAMES_TEXT.split())
# "this function", "these": the code in view, resolved by the caller.
IN_VIEW = "this"
_CODE_SHAPED = re.compile(r"_|[a-z][A-Z]|\.|\(\)|^[A-Z][a-z]+[A-Z]")
# What a verb asks about a use: caught (an except/catch clause's type), raised (raise, throw),
# a base class (subclassed, extended, inherited from), imported; any other verb: every use.
_ROLES = (
    ("catch", re.compile(r"^(?:caught|catch)", re.I)),
    ("raise", re.compile(r"^(?:raise|thrown|throw)", re.I)),
    ("base", re.compile(r"^(?:sub-?class|extend|inherit|derived|child|implement(?!ed))", re.I)),
    ("import", re.compile(r"^import", re.I)),
)
ROLE_WORDS = {"catch": "caught", "raise": "raised", "base": "subclassed", "import": "imported"}


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
        if not quoted and name.lower() in ("it", "they", "them"):
            # "I renamed `parse_pin`: where is it used?" — the code named before the pronoun
            earlier = antecedent(question[: found.start("name")])
            if earlier is not None:
                return UsageQuestion(earlier, True, role)
        if not quoted and name.lower() in NOT_NAMES:
            continue
        if not re.fullmatch(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*", name):
            continue
        return UsageQuestion(name, quoted or bool(_CODE_SHAPED.search(raw)), role)
    return None


# A code name in running text: `quoted`, or an identifier with "_", an inner capital or a dot.
_CODE_NAME = re.compile(
    r"`([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)(?:\(\))?`|"
    r"\b([A-Za-z_$][\w$]*(?:_|[a-z][A-Z]|\.[A-Za-z_$])[\w$.]*)"
)


def antecedent(text: str) -> str | None:
    """The last code name in `text` (what "it" refers to), None when it names none."""
    names = [quoted or bare for quoted, bare in _CODE_NAME.findall(text)]
    return names[-1].rstrip(".") if names else None


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
