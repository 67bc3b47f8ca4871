"""Check an answer's footing against the code it was given.

A small model does not write `path:line` citations, says "The indexed code does not define `X`."
too readily, even when a snippet in its prompt defines the very thing asked about, and describes
names that no snippet mentions. All three are facts RepoTune can read from the code: an answer
about a definition a snippet holds opens with it, cited, with what its docstring or signature
says (so does an abstention the snippets contradict), and an answer about a name that no
snippet contains becomes the abstention (see ask/answer.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from repotune.server.ask.definitions import definition_in_snippet, file_summary, lead, quote_code
from repotune.server.ask.focus import asks_about_file, only_lead_in, points_at_code_in_view
from repotune.server.index.fields import field_line
from repotune.server.index.retrieval import question_names, quoted_phrases

# The trained abstentions (training builds its question examples with these).
ABSTAIN = "The indexed code does not define `{name}`."
ABSTAIN_TASK = "The indexed code does not answer this."
ABSTENTION_MARK = "the indexed code does not"  # what every abstaining answer says (lower case)

# Definition sites in the languages RepoTune indexes: a keyword, then the name.
_DEFINITION = re.compile(
    r"^[ \t]*(?:export\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:static\s+)?"
    r"(?:def|class|function|fn|func|interface|struct|enum|trait|type|module|const|let|var)\s+"
    r"\*?([A-Za-z_][A-Za-z0-9_]*)",
    re.MULTILINE,
)
# A module-level assignment (Python settings and constants): NAME = ... at the line start.
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::[^=\n]+)?=(?!=)", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# Words of a question that say nothing about which code is meant.
_FILLER = frozenset(
    {
        "a",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "code",
        "compute",
        "computes",
        "computed",
        "do",
        "does",
        "define",
        "defined",
        "defines",
        "definition",
        "for",
        "from",
        "function",
        "functions",
        "get",
        "gets",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "method",
        "of",
        "on",
        "or",
        "return",
        "returns",
        "set",
        "sets",
        "the",
        "this",
        "to",
        "use",
        "used",
        "uses",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "class",
        "classes",
        "value",
        "values",
        "variable",
        "setting",
        "settings",
        "module",
        "file",
    }
)


@dataclass(frozen=True)
class NameSite:
    """A name defined in a snippet, with the file and 1-based line of its definition."""

    name: str
    path: str
    line: int


def is_abstention(answer: str) -> bool:
    return answer.strip().lower().startswith(ABSTENTION_MARK)


def all_sites(snippets: Iterable[object]) -> list[NameSite]:
    """Every definition site in the snippets, in snippet (relevance) order, then line order."""
    sites: list[NameSite] = []
    for snippet in snippets:
        text = str(getattr(snippet, "text", ""))
        path = str(getattr(snippet, "path", ""))
        start = int(getattr(snippet, "start_line", 1) or 1)
        matches = [*_DEFINITION.finditer(text), *_ASSIGNMENT.finditer(text)]
        for match in sorted(matches, key=lambda m: m.start(1)):
            line = start + text.count("\n", 0, match.start(1))
            sites.append(NameSite(match.group(1), path, line))
    return sites


def name_sites(snippets: Iterable[object]) -> list[NameSite]:
    """The names the snippets define, in snippet (relevance) order, each at its first site."""
    found: dict[str, NameSite] = {}
    for site in all_sites(snippets):
        found.setdefault(site.name, site)
    return list(found.values())


def name_words(name: str) -> set[str]:
    """The words of an identifier: snake_case and camelCase split, lower case, filler out."""
    words: set[str] = set()
    for part in name.split("_"):
        words.update(piece.lower() for piece in _CAMEL_PARTS.findall(part))
    return {_stem(word) for word in words if word not in _FILLER}


def _stem(word: str) -> str:
    # plural and third-person -s only: "areas" finds area_of_square, "circles" finds Circle
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _question_words(text: str) -> set[str]:
    words: set[str] = set()
    for identifier in _IDENTIFIER.findall(text):
        words |= name_words(identifier)
    words |= {_stem(w.lower()) for w in _WORD.findall(text) if w.lower() not in _FILLER}
    return words


def contradicting_definition(
    question: str, answer: str, snippets: Sequence[object]
) -> NameSite | None:
    """The definition in `snippets` that an abstaining `answer` wrongly denies, if any.

    A name written in the question or in the abstention that a snippet defines contradicts it;
    so does a defined name whose every word the question uses ("area of a circle" and
    area_of_circle). Non-abstaining answers are never contradicted.
    """
    if not is_abstention(answer):
        return None
    return _asked_definition(question, answer, snippets)


def named_definition(answer: str, snippets: Sequence[object]) -> NameSite | None:
    """The definition that a (non-abstaining) answer names first in backticks, when a snippet
    defines it: the model chose it, and its citation and lines are then read from the code."""
    if is_abstention(answer):
        return None
    defined = {site.name: site for site in name_sites(snippets)}
    for match in re.finditer(r"`([A-Za-z_][A-Za-z0-9_.]*)(?:\(\))?`", answer):
        site = defined.get(match.group(1).rsplit(".", 1)[-1])
        if site is not None and len(site.name) > 2:
            return site
    return None


def subject_definition(question: str, snippets: Sequence[object]) -> NameSite | None:
    """The definition in `snippets` that `question` asks about: the one in view when the
    question points at it ("this function"), else a name it writes that a snippet defines, or a
    defined name whose every word it uses. The answer cites this site itself."""
    return _in_view_definition(question, snippets) or _asked_definition(question, "", snippets)


def _in_view_definition(question: str, snippets: Sequence[object]) -> NameSite | None:
    """The definition in view (ask/focus.py), when the question points at it: the one the code
    in view starts with, or for lines selected inside a definition (a local `const x` among
    them) that definition, from the snippet showing it whole."""
    focus = _in_view(snippets)
    if focus is None or not points_at_code_in_view(question):
        return None
    start = int(getattr(focus, "start_line", 1) or 1)
    path = str(getattr(focus, "path", ""))
    symbol = str(getattr(focus, "symbol", "") or "")
    short = symbol.rsplit(".", 1)[-1]
    site = next(iter(all_sites([focus])), None)
    above = str(getattr(focus, "text", "")).split("\n")[: site.line - start] if site else []
    if site is not None and only_lead_in(above) and site.name == (short or site.name):
        return NameSite(symbol or site.name, site.path, site.line)  # a method as Owner.method
    enclosing = [s.line for s in all_sites(snippets) if (s.path, s.name) == (path, short)]
    before = [line for line in enclosing if line < start]
    return NameSite(symbol, path, max(before)) if symbol and before else None


def _in_view(snippets: Sequence[object]) -> object | None:
    """The snippet of the code in view (ask/focus.py), if one was given."""
    return next((s for s in snippets if getattr(s, "in_view", False)), None)


def _asked_definition(question: str, answer: str, snippets: Sequence[object]) -> NameSite | None:
    every = all_sites(snippets)
    member = _member_site(question, every, snippets)
    if member is not None:
        return member
    quoted = _quoted_site(question, every, snippets)
    if quoted is not None:
        return quoted
    defined = name_sites(snippets)
    mentioned = set(_IDENTIFIER.findall(question)) | set(_IDENTIFIER.findall(answer))
    for site in defined:
        if site.name in mentioned and len(site.name) > 2:
            return site
    asked = _question_words(question)
    best: tuple[int, NameSite] | None = None
    for site in defined:
        words = name_words(site.name)
        if len(words) >= 2 and words <= asked and (best is None or len(words) > best[0]):
            best = (len(words), site)
    return best[1] if best else None


def _holding(site: NameSite, snippets: Sequence[object]) -> list[object]:
    """The snippets whose lines hold `site`."""
    held = []
    for snippet in snippets:
        start = int(getattr(snippet, "start_line", 1) or 1)
        lines = str(getattr(snippet, "text", "")).count("\n") + 1
        if str(getattr(snippet, "path", "")) == site.path and start <= site.line < start + lines:
            held.append(snippet)
    return held


def _member_site(
    question: str, defined: Sequence[NameSite], snippets: Sequence[object]
) -> NameSite | None:
    """For `Owner.member` in the question: the site of `member` in Owner's code (the chunk's
    symbol, a chunk of Owner's methods, or a snippet that also defines Owner)."""
    symbols, _names = question_names(question)  # what retrieval looked up for the question
    for owner, _, member in (symbol.rpartition(".") for symbol in symbols):
        owned = _owned_sites(owner, member, defined, snippets)
        if owned:
            return owned[0]
        field = _owner_field(owner, member, snippets)
        if field is not None:
            return field
    return None  # another owner's member is not what was asked about


def _owned_sites(
    owner: str, member: str, defined: Sequence[NameSite], snippets: Sequence[object]
) -> list[NameSite]:
    """The sites of `member` in Owner's code, as `Owner.member`, in `defined`'s order."""
    return [
        NameSite(f"{owner}.{member}", site.path, site.line)
        for site in defined
        if site.name == member
        and any(_owns(owner, member, snippet) for snippet in _holding(site, snippets))
    ]


def _owns(owner: str, member: str, snippet: object) -> bool:
    """Whether the snippet holding `member` is Owner's code: the member's own chunk, a chunk of
    Owner's methods, or one that also declares Owner."""
    symbol = str(getattr(snippet, "symbol", "") or "")
    chunk_owner = symbol.rpartition(".")[0]  # a chunk of the owner's methods
    return (
        symbol.endswith(f"{owner}.{member}")
        or chunk_owner == owner
        or chunk_owner.endswith(f".{owner}")
        or _declares(owner, str(getattr(snippet, "text", "")))
    )


def _owner_field(owner: str, member: str, snippets: Sequence[object]) -> NameSite | None:
    """`Owner.member` as a field assigned in a snippet of Owner's own code (a chunk named for
    Owner, or one showing its class line): a dataclass's or pydantic model's setting."""
    field = field_line(member)
    for snippet in snippets:
        symbol = str(getattr(snippet, "symbol", "") or "")
        text = str(getattr(snippet, "text", ""))
        owned = symbol == owner or symbol.endswith(f".{owner}") or _declares(owner, text)
        found = field.search(text) if owned else None
        if found is not None:
            line = int(getattr(snippet, "start_line", 1) or 1) + text.count("\n", 0, found.start())
            return NameSite(f"{owner}.{member}", str(getattr(snippet, "path", "")), line)
    return None


def _declares(owner: str, text: str) -> bool:
    return bool(
        re.search(rf"\b(?:class|struct|impl|interface|module)\s+{re.escape(owner)}\b", text)
    )


def _quoted_site(
    question: str, defined: Sequence[NameSite], snippets: Sequence[object]
) -> NameSite | None:
    """For a quoted sentence of three words or more (a docstring the user pasted): the
    definition that the sentence follows in the snippet holding it."""
    for quoted in quoted_phrases(question):
        words = quoted.split()
        pattern = re.compile(r"\s+".join(re.escape(w) for w in words))
        for snippet in snippets:
            text = str(getattr(snippet, "text", ""))
            found = pattern.search(text)
            if found is None:
                continue
            path = str(getattr(snippet, "path", ""))
            line = int(getattr(snippet, "start_line", 1) or 1) + text.count("\n", 0, found.start())
            before = [d for d in defined if d.path == path and d.line <= line]
            if before:
                return max(before, key=lambda d: d.line)
    return None


def grounded_opening(site: NameSite, snippets: Sequence[object] = ()) -> str:
    """How an answer about a definition starts: its name, cited where the index found it, what
    its code says (the docstring's first sentence, or its signature) and its first lines — the
    reference answers that training composes for the same definition."""
    cited = f"`{site.name}` ({site.path}:{site.line})"
    quoted = ""
    for snippet in _holding(site, snippets):
        start = int(getattr(snippet, "start_line", 1) or 1)
        code = "\n".join(str(getattr(snippet, "text", "")).splitlines()[site.line - start :])
        definition = definition_in_snippet(snippet, site.name, site.line)
        if definition is None:
            # A class window cut mid-statement (a dataclass field) does not parse: its lines are
            # still what the answer quotes after the citation.
            quoted = quoted or quote_code(code, site.path)
            continue
        return "\n".join(part for part in (lead(definition), quote_code(code, site.path)) if part)
    return "\n".join(part for part in (cited, quoted) if part)


# The most other definitions of an answer's subject that its note lists.
MAX_OTHER_SITES = 3
ALSO_DEFINED = " is also defined at "


def also_defined(site: NameSite, snippets: Sequence[object]) -> str:
    """ "Also defined at path:line." for a name that other snippets define too (a helper
    repeated across modules, `Owner.member` of a class of that name in another file): the
    answer is about one of them, and says which others exist."""
    owner, _, member = site.name.rpartition(".")
    every = all_sites(snippets)
    sites = _owned_sites(owner, member, every, snippets) if owner else every
    others: dict[tuple[str, int], None] = {}
    for other in sites:
        if other.name == site.name and (other.path, other.line) != (site.path, site.line):
            others.setdefault((other.path, other.line), None)
    if not others:
        return ""
    places = [f"{path}:{line}" for path, line in list(others)[:MAX_OTHER_SITES]]
    more = len(others) - len(places)
    listed = ", ".join(places) + (f" and {more} more" if more else "")
    return f"`{site.name}`{ALSO_DEFINED}{listed}."


def without_also_defined(answer: str) -> str:
    """The answer without its also_defined note: what it says about its own subject."""
    return "\n\n".join(part for part in answer.split("\n\n") if ALSO_DEFINED not in part)


def file_opening(question: str, snippets: Sequence[object]) -> str:
    """How an answer about the file in view ("What is this file for?") starts: its path and its
    docstring's or leading comment's first sentence; "" without one, or for another question."""
    focus = _in_view(snippets)
    if focus is None or int(getattr(focus, "start_line", 1) or 1) != 1:
        return ""
    if getattr(focus, "symbol", None) or not asks_about_file(question):
        return ""
    path = str(getattr(focus, "path", ""))
    summary = file_summary(path, str(getattr(focus, "text", "")))
    return f"`{path}`: {summary}" if summary else ""


# A name written as code: in backticks, or with an underscore or an inner capital.
_CODE_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_.]*)`|\b([A-Za-z]\w*_\w+|[a-z]+[A-Z]\w*)\b")


def unsupported_name(question: str, answer: str, snippets: Sequence[object]) -> str | None:
    """A code name the question asks about that no snippet contains, when the answer does not
    abstain: whatever the answer says about it is not from the indexed code."""
    if is_abstention(answer):
        return None
    texts = [str(getattr(snippet, "text", "")) for snippet in snippets]
    for match in _CODE_NAME.finditer(question):
        name = (match.group(1) or match.group(2)).rsplit(".", 1)[-1]
        if name and not any(re.search(rf"\b{re.escape(name)}\b", text) for text in texts):
            return name
    return None
