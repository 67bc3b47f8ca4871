"""Questions about where code is used: what is asked about (pure), which lines use it (tree-sitter
over indexed text), and the answer from a real index with no model."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git_repo
from repotune.server.ask.focus import CodeInView
from repotune.server.ask.usages import (
    IN_VIEW,
    MAX_LISTED_USES,
    UsageQuestion,
    usage_answer,
    usage_question,
)
from repotune.server.ask.use_sites import Site, sites_in_file

ASKED = {
    "Where is merge_contextvars used?": "merge_contextvars",
    "What calls make_filtering_bound_logger?": "make_filtering_bound_logger",
    "Which functions use get_logger?": "get_logger",
    "Who imports Config?": "Config",
    "Where is `BoundLogger.bind` called?": "BoundLogger.bind",
    "Is parse_pin still used?": "parse_pin",
    "find usages of foo_bar()": "foo_bar",
    "Show me the callers of the parse function": "parse",
    "Where do we call configure?": "configure",
    "What raises DropEvent?": "DropEvent",
    "Where are BoundLogger objects instantiated?": "BoundLogger",
    "I renamed `parse_pin`. Where is it used?": "parse_pin",  # "it": the code named before
    "parse_pin looks dead; is it still called?": "parse_pin",
    "Is this function used anywhere?": IN_VIEW,
    "Where is this method called?": IN_VIEW,
}
NOT_ASKED = (
    "What is merge_contextvars used for?",  # what it is for: the model answers
    "Where is area_of_square defined?",
    "How do I add a custom processor?",
    "What does this function call?",  # what it uses, not what uses it
    "What is this function called?",
    "Where is it used?",  # names nothing
    "In my app the cache is slow. Where is it used?",  # nor does a plain word before "it"
    "Which processors render exceptions?",
    "Where is the logger configured?",
)


def test_which_questions_ask_where_code_is_used() -> None:
    for question, name in ASKED.items():
        asked = usage_question(question)
        assert asked is not None and asked.name == name, (question, asked)
    for question in NOT_ASKED:
        assert usage_question(question) is None, question
    # a plain word may be English ("the parse function"); a code-shaped name cannot
    assert usage_question("callers of the parse function") == UsageQuestion("parse", False)
    assert usage_question("What calls `parse`?") == UsageQuestion("parse", True)
    assert usage_question("Who calls parseConfig?") == UsageQuestion("parseConfig", True)
    assert UsageQuestion("BoundLogger.bind", True).searched == "bind"


PYTHON = '''"""Helpers: parse_pin reads a pin."""
from pins.core import parse_pin, other

__all__ = ["parse_pin"]
DEFAULT_PIN = parse_pin("x==1")


def parse_pin(text, parse_pin=None):
    """parse_pin: split a requirement."""
    return text.split("==")  # not parse_pin itself


class Resolver:
    def resolve(self, text):
        parse_pin = None  # a local of the same name
        return self.helper.parse_pin(text)

    def again(self, text):
        return call(parse_pin=text) or parse_pin(text)
'''


def test_a_file_s_uses_imports_definitions_and_strings() -> None:
    sites = {site.line: site for site in sites_in_file("pins/util.py", [(1, PYTHON)], "parse_pin")}
    kinds = {line: site.kind for line, site in sites.items()}
    # the docstrings (1, 9), the comment (10), the parameter (8), the local (15) and the keyword
    # argument's name are no use; a definition's own name is a definition
    assert kinds == {
        2: "import",
        4: "string",
        5: "use",
        8: "definition",
        16: "use",
        19: "use",
    }, kinds
    assert sites[5].within == "DEFAULT_PIN"  # a module-level assignment holds it
    assert sites[16].within == "Resolver.resolve" and sites[19].within == "Resolver.again"
    assert sites[16].text == "return self.helper.parse_pin(text)"
    # a run starting further down the file keeps the file's line numbers
    later = sites_in_file("pins/util.py", [(101, PYTHON)], "parse_pin")
    assert [s.line for s in later if s.kind == "use"] == [105, 116, 119]


TYPESCRIPT = """import { startServer } from "./server";
export { startServer as start } from "./server";

export function launch(options: Options): void {
  const config = { startServer: true, retries: 2 };
  startServer(options);
}

class Client {
  startServer(): void {}
  run(): void { this.startServer(); }
}
// startServer is called above
"""


def test_typescript_uses_and_a_text_file_s_mentions() -> None:
    sites = sites_in_file("src/launch.ts", [(1, TYPESCRIPT)], "startServer")
    assert [(s.line, s.kind) for s in sites] == [
        (1, "import"),
        (2, "import"),
        (6, "use"),
        (10, "definition"),
        (11, "use"),
    ], sites
    assert sites[2].within == "launch" and sites[4].within == "Client.run"
    readme_text = "# Start\n\nCall `startServer()` first.\n"
    readme = sites_in_file("README.md", [(1, readme_text)], "startServer")
    assert [(s.line, s.kind) for s in readme] == [(3, "mention")]


def _site(path: str, line: int, kind: str, within: str = "") -> Site:
    return Site(path, line, f"code at {line}", kind, within)


def test_the_answer_lists_uses_and_says_what_it_could_not_see() -> None:
    question = UsageQuestion("parse_pin", True)
    sites = [
        _site("pins/util.py", 8, "definition"),
        _site("tests/test_util.py", 3, "use"),
        _site("pins/cli.py", 12, "use", "main"),
        _site("pins/cli.py", 1, "import"),
        _site("pins/__init__.py", 2, "import"),
        _site("pins/util.py", 4, "string"),
        _site("docs/index.md", 7, "mention"),
    ]
    text, cited = usage_answer(question, sites, files=4, scanned=4)
    assert text.splitlines()[:3] == [
        "`parse_pin` is used in 2 places in 2 files (defined at pins/util.py:8):",
        "- pins/cli.py:12 (in `main`): `code at 12`",  # code before tests
        "- tests/test_util.py:3: `code at 3`",
    ], text
    assert "Imported without a use in: pins/__init__.py:2." in text  # cli.py's import is no news
    assert "Named in a string (a use by that name is not followed): pins/util.py:4." in text
    assert "Mentioned in: docs/index.md:7." in text
    assert [(s.path, s.line) for s in cited] == [
        ("pins/cli.py", 12),
        ("tests/test_util.py", 3),
        ("pins/__init__.py", 2),
    ]
    many = [_site("a.py", line, "use") for line in range(1, MAX_LISTED_USES + 6)]
    text, cited = usage_answer(question, many, files=400, scanned=300, index_complete=False)
    assert "- … and 5 more" in text and len(cited) == MAX_LISTED_USES
    assert "The first 300 of the 400 files naming it were read." in text
    assert "The index is still being built" in text
    text, _ = usage_answer(UsageQuestion("Resolver.resolve", True), [], files=0, scanned=0)
    assert text.startswith("No use of `Resolver.resolve` was found in the indexed code.")
    assert "getattr" in text and "Matched by the name `resolve`" in text


def _git_repo(root: Path) -> Path:
    cli = "from pins.util import parse_pin\n\n\ndef main(argv):\n    return parse_pin(argv[1])\n"
    # .env is never indexed, never listed
    secret = "parse_pin_TOKEN=tok-19af0c\n"
    return git_repo(root, {"pins/util.py": PYTHON, "pins/cli.py": cli, ".env": secret})


@pytest.mark.slow
def test_answered_from_a_real_index_without_the_model(tmp_path: Path) -> None:
    """The index alone answers: the model is never loaded (Assistant.start is not called)."""
    from repotune.server.assistant import Assistant

    root = _git_repo(tmp_path / "repo")
    assistant = Assistant({"index": {"dense": False, "index_dir": str(tmp_path / "index")}})
    try:
        assistant.add_folder(root, watch=False)
        index = assistant.folders.index_for(root.resolve())
        assert index.wait_lexical(60)
        answer = assistant.ask("What calls parse_pin?")
        assert answer.answer.startswith(
            "`parse_pin` is used in 4 places in 2 files (defined at pins/util.py:8):\n"
            "- pins/cli.py:5 (in `main`): `return parse_pin(argv[1])`\n"
            '- pins/util.py:5 (in `DEFAULT_PIN`): `DEFAULT_PIN = parse_pin("x==1")`'
        ), answer.answer
        assert ".env" not in answer.text
        first = answer.citations[0]
        assert (first.path, first.start_line, first.end_line) == ("pins/cli.py", 5, 5)
        assert first.uri == (root / "pins" / "cli.py").as_uri()
        # "Is this function used?" from the cursor: the function there is the subject
        text = (root / "pins" / "cli.py").read_text()
        view = CodeInView(root / "pins" / "cli.py", text, 5)
        answer = assistant.ask("Is this function used anywhere?", view=view)
        assert answer.answer.startswith("No use of `main` was found in the indexed code"), answer
        # ... and what the question asks about it still counts: imports only
        util = root / "pins" / "util.py"
        at_definition = CodeInView(util, util.read_text(), 8)
        answer = assistant.ask("Where is this function imported?", view=at_definition)
        assert answer.answer.startswith(
            "`parse_pin` is imported in 2 places in 2 files (defined at pins/util.py:8):\n"
            "- pins/cli.py:1: `from pins.util import parse_pin`"
        ), answer.answer
        # a plain word that nothing defines is the model's to answer (which is not loaded here)
        with pytest.raises(RuntimeError, match="not ready"):
            assistant.ask("What uses memory?")
    finally:
        assistant.close()


ROLES = """class Retry(TransientError, metaclass=Meta):
    def run(self):
        try:
            raise TransientError("busy")
        except (TransientError, OSError) as error:
            TransientError.log(error)
"""
ROLES_TS = """class Busy extends TransientError {}
function run(): void {
  try { throw new TransientError("busy"); } catch (e) { if (e instanceof TransientError) {} }
}
"""


def test_a_question_about_one_kind_of_use_lists_those_first() -> None:
    """ "Where is X caught?" listed every use (the raise sites first): the verb says which."""
    assert usage_question("Where is the DropEvent exception caught?") == UsageQuestion(
        "DropEvent", True, "catch"
    )
    assert usage_question("What raises DropEvent?").role == "raise"  # type: ignore[union-attr]
    assert usage_question("Which classes inherit from BoundLoggerBase?").role == "base"  # type: ignore[union-attr]
    assert usage_question("Who imports merge_contextvars?").role == "import"  # type: ignore[union-attr]
    for asked in (  # the noun forms: they were no usage question
        "Find all subclasses of BoundLoggerBase",
        "List the implementations of `Processor`",
        "What are the derived classes of BoundLoggerBase?",
        "classes that inherit from BoundLoggerBase",
        "What implements Processor?",
    ):
        found = usage_question(asked)
        assert found is not None and found.role == "base", asked
    assert usage_question("Where is parse_pin implemented?").role == ""  # type: ignore[union-attr]
    assert usage_question("What calls merge_contextvars?").role == ""  # type: ignore[union-attr]
    python = sites_in_file("errors.py", [(1, ROLES)], "TransientError")
    assert [(s.line, s.role) for s in python] == [(1, "base"), (4, "raise"), (5, "catch"), (6, "")]
    typescript = sites_in_file("run.ts", [(1, ROLES_TS)], "TransientError")
    assert [(s.line, s.role) for s in typescript] == [(1, "base"), (3, "raise")]
    caught = UsageQuestion("TransientError", True, "catch")
    text, cited = usage_answer(caught, python, files=1, scanned=1)
    assert text.splitlines() == [
        "`TransientError` is caught in 1 place in 1 file:",
        "- errors.py:5 (in `Retry.run`): `except (TransientError, OSError) as error:`",
        "Other uses: errors.py:1, errors.py:4, errors.py:6.",
    ], text
    assert [s.line for s in cited] == [5]
    never = UsageQuestion("TransientError", True, "catch")
    text, _ = usage_answer(never, [s for s in python if s.role != "catch"], files=1, scanned=1)
    assert text.startswith(
        "`TransientError` is not caught anywhere in the indexed code; it is used in 3 places in "
        "1 file:\n- errors.py:1 (in `Retry`)"
    ), text
