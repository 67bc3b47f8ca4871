"""Code names a plain-English question may mean: "how is the cache directory configured?" asks
about `cache_dir`, which the question never writes. Neighbouring words are joined the ways code
joins them (snake_case, camelCase, PascalCase), with the abbreviations code uses; retrieval keeps
the candidates that the index defines."""

from __future__ import annotations

import re

# Words that are never part of a name a question means (the question forms' own words too).
_STOP_WORDS_TEXT = """
a an the this that these those it its is are was were be been being do does did done how what when
where which who whom whose why can could should would will shall may might must i me my we our you
your he she they them their there here of in on at to for from by with without into onto about as
and or but if then than so not no yes any all some each every other such only also just very more
most much many code function functions method methods class classes defined define defines use used
uses using work works happen happens happened get gets set sets make makes find found call called
calls explain purpose mean means meaning repository repo project take takes signature control
controls thing things
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
# The abbreviations code writes for common words (a word may mean several).
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "directory": ("dir",),
    "directories": ("dirs",),
    "configuration": ("config", "cfg"),
    "config": ("cfg",),
    "parameter": ("param",),
    "parameters": ("params",),
    "argument": ("arg",),
    "arguments": ("args",),
    "message": ("msg",),
    "messages": ("msgs",),
    "number": ("num",),
    "temporary": ("tmp", "temp"),
    "initialize": ("init",),
    "initialise": ("init",),
    "initialization": ("init",),
    "maximum": ("max",),
    "minimum": ("min",),
    "length": ("len",),
    "string": ("str",),
    "database": ("db",),
    "environment": ("env",),
    "authentication": ("auth",),
    "authorization": ("auth",),
    "information": ("info",),
    "specification": ("spec",),
    "request": ("req",),
    "response": ("resp",),
    "reference": ("ref",),
    "previous": ("prev",),
    "current": ("cur", "curr"),
    "source": ("src",),
    "destination": ("dest", "dst"),
    "attribute": ("attr",),
    "attributes": ("attrs",),
    "object": ("obj",),
    "character": ("char",),
    "document": ("doc",),
    "documents": ("docs",),
    "package": ("pkg",),
    "library": ("lib",),
    "value": ("val",),
    "variable": ("var",),
    "context": ("ctx",),
    "connection": ("conn",),
    "identifier": ("id",),
    "description": ("desc",),
    "utility": ("util",),
    "utilities": ("utils",),
    "statistics": ("stats",),
    "implementation": ("impl",),
    "command": ("cmd",),
    "buffer": ("buf",),
    "address": ("addr",),
    "error": ("err",),
    "exception": ("exc",),
    "position": ("pos",),
    "index": ("idx",),
    "count": ("cnt",),
    "repository": ("repo",),
    "token": ("tok",),
    "tokens": ("toks",),
    "generator": ("gen",),
    "template": ("tmpl",),
    "sequence": ("seq",),
    "image": ("img",),
    "milliseconds": ("ms",),
    "seconds": ("s", "secs"),
}
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
# Runs of at most this many words are joined (`max_file_bytes`).
MAX_RUN = 3
MAX_CANDIDATES = 48


def spellings(word: str) -> tuple[str, ...]:
    """A lower-case word as code may write it: itself, then its abbreviations."""
    return (word, *ABBREVIATIONS.get(word, ()))


def joined(parts: tuple[str, ...]) -> list[str]:
    """snake_case, camelCase, PascalCase and UPPER_SNAKE of the parts."""
    camel = parts[0] + "".join(p.capitalize() for p in parts[1:])
    return ["_".join(parts), camel, camel[0].upper() + camel[1:], "_".join(parts).upper()]


def candidate_names(question: str) -> list[str]:
    """Names the question's runs of plain words may mean, longer runs first, in the order they
    come; at most MAX_CANDIDATES. A word alone is not one: "server" in "how does the server
    decide ..." found a test fixture named `server`, above the code the question was about."""
    plain = re.sub(r"`[^`]*`", " | ", question)  # what a question writes as code, it names
    runs: list[list[str]] = [[]]
    previous_end = 0
    for match in _WORD.finditer(plain):
        word = match.group(0).lower()
        gap = plain[previous_end : match.start()]
        previous_end = match.end()
        content = word not in STOP_WORDS and len(word) >= 2
        if not content or gap.strip(" -"):  # a stop word or punctuation ends a run
            runs.append([])
        if content:
            runs[-1].append(word)
    found: dict[str, None] = {}
    for size in range(MAX_RUN, 1, -1):
        for run in runs:
            for start in range(len(run) - size + 1):
                for parts in _spelled(tuple(run[start : start + size])):
                    found.update(dict.fromkeys(joined(parts)))
    return list(found)[:MAX_CANDIDATES]


def _spelled(words: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every spelling of a run of words (a word as written or abbreviated)."""
    combos: list[tuple[str, ...]] = [()]
    for word in words:
        combos = [(*combo, spelling) for combo in combos for spelling in spellings(word)]
    return combos
