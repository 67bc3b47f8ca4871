"""Check an answer's footing against the code it was given.

A small model does not write `path:line` citations, says "The indexed code does not define `X`."
too readily, even when a snippet in its prompt defines the very thing asked about, and describes
names that no snippet mentions. All three are facts RepoTune can read from the code: an answer
about a definition a snippet holds opens with it, cited (so does an abstention the snippets
contradict), and an answer about a name that no snippet contains becomes the abstention (see
ask/answer.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
class Definition:
    """A name defined in a snippet, with the file and 1-based line of its definition."""

    name: str
    path: str
    line: int


def is_abstention(answer: str) -> bool:
    return answer.strip().lower().startswith(ABSTENTION_MARK)


def definitions(snippets: Iterable[object]) -> list[Definition]:
    """The names the snippets define, in snippet (relevance) order, each at its first site."""
    found: dict[str, Definition] = {}
    for snippet in snippets:
        text = str(getattr(snippet, "text", ""))
        path = str(getattr(snippet, "path", ""))
        start = int(getattr(snippet, "start_line", 1) or 1)
        matches = [*_DEFINITION.finditer(text), *_ASSIGNMENT.finditer(text)]
        for match in sorted(matches, key=lambda m: m.start(1)):
            line = start + text.count("\n", 0, match.start(1))
            found.setdefault(match.group(1), Definition(match.group(1), path, line))
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
) -> Definition | None:
    """The definition in `snippets` that an abstaining `answer` wrongly denies, if any.

    A name written in the question or in the abstention that a snippet defines contradicts it;
    so does a defined name whose every word the question uses ("area of a circle" and
    area_of_circle). Non-abstaining answers are never contradicted.
    """
    if not is_abstention(answer):
        return None
    return _asked_definition(question, answer, snippets)


def subject_definition(question: str, snippets: Sequence[object]) -> Definition | None:
    """The definition in `snippets` that `question` asks about: a name it writes that a snippet
    defines, or a defined name whose every word it uses. The answer cites this site itself."""
    return _asked_definition(question, "", snippets)


def _asked_definition(question: str, answer: str, snippets: Sequence[object]) -> Definition | None:
    defined = definitions(snippets)
    mentioned = set(_IDENTIFIER.findall(question)) | set(_IDENTIFIER.findall(answer))
    for definition in defined:
        if definition.name in mentioned and len(definition.name) > 2:
            return definition
    asked = _question_words(question)
    best: tuple[int, Definition] | None = None
    for definition in defined:
        words = name_words(definition.name)
        if len(words) >= 2 and words <= asked and (best is None or len(words) > best[0]):
            best = (len(words), definition)
    return best[1] if best else None


def grounded_opening(definition: Definition) -> str:
    """How an answer about a definition starts: its name, cited where the index found it."""
    return f"`{definition.name}` ({definition.path}:{definition.line})"


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
