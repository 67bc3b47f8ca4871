"""An answer's last step: a sentence the model said twice is kept once, and an answer cut short
by the token or time cap ends cleanly (pure logic, then the real default model)."""

from __future__ import annotations

import re

import pytest
from repotune.server.ask.tidy import CUT_MARK, ended, tidy_answer, without_repeats
from repotune.server.completion.context import ContextSnippet
from repotune.server.completion.engine import CompletionEngine
from repotune.server.config import load_settings

LOOPED = (
    "Files matching the patterns are never read. The patterns are matched on the link and its "
    "target, so a link to `.env` is skipped. A JSON key file is recognised by its content. The "
    "patterns are matched on the link and its target, so a link to `.env` is skipped."
)


def test_a_sentence_said_twice_is_kept_once() -> None:
    assert without_repeats(LOOPED) == (
        "Files matching the patterns are never read. The patterns are matched on the link and "
        "its target, so a link to `.env` is skipped. A JSON key file is recognised by its content."
    )


def test_short_sentences_and_code_may_repeat() -> None:
    text = (
        "Yes. Yes.\n```python\nx = 1\nx = 1\n```\nIt sets `x` to one here.\n- It sets `x` to one."
    )
    assert without_repeats(text) == text
    line_start = "It is read once at start.\nIt is read once at start. Then it is kept."
    assert without_repeats(line_start) == "It is read once at start.\nThen it is kept."


def test_an_answer_that_ended_on_its_own_is_left_as_it_is() -> None:
    assert tidy_answer("It returns the default adapter", cut_short=False) == (
        "It returns the default adapter"
    )


def test_a_short_unfinished_sentence_is_dropped() -> None:
    text = "It is read once. It is cached in `~/.cache` e.g. on Linux. In every file that is"
    assert ended(text) == "It is read once. It is cached in `~/.cache` e.g. on Linux."


def test_a_long_unfinished_sentence_is_kept_and_marked() -> None:
    text = (
        "It is read once. Every line that holds a secret keeps its place but loses its value, "
        "which covers private keys, tokens and `*_SECRET"
    )
    assert ended(text) == f"{text}`{CUT_MARK}"  # the open inline code closed, then the mark
    assert ended("The default adapter is") == f"The default adapter is{CUT_MARK}"


def test_an_open_code_block_is_closed_after_its_last_whole_line() -> None:
    text = "`f` (a.py:3) adds:\n```python\ndef f(a, b):\n    return a + b\n    # and th"
    assert ended(text) == "`f` (a.py:3) adds:\n```python\ndef f(a, b):\n    return a + b\n```"
    assert ended("It is `f` (a.py:3). It adds:\n```python\n") == "It is `f` (a.py:3)."
    after_block = "Here:\n```python\nx = 1\n```\nThen it"
    assert ended(after_block) == "Here:\n```python\nx = 1\n```"


LONG_PROSE = ContextSnippet(
    "docs/secrets.md",
    "\n".join(
        [
            "# How secrets are kept out",
            "",
            "Files matching `index.secret_patterns` are never read; the defaults cover `.env`,",
            "`.env.*`, `*.env`, `.envrc`, private keys (`*.pem`, `*.key`, `*.p12`, `id_rsa*`),",
            "`.netrc`, `.npmrc`, `.pypirc`, `.pgpass`, `.git-credentials`, Docker and kube",
            "configs and `.aws/credentials` (at any depth). The patterns are matched on the link",
            "and on its target, so `env_notes.txt -> .env` is skipped like `.env`. A JSON",
            "credentials file (with `private_key` and `client_email`) is recognised by its",
            "content whatever its name. In every file that is indexed, lines holding a",
            "high-confidence secret shape keep their place but lose the value: private-key",
            "blocks, AWS access key ids, GitHub, GitLab, Slack, Stripe and npm tokens, JWTs, and",
            "assignments of long literal values to names like `*_SECRET` and `*_TOKEN`.",
        ]
    ),
    1,
)
ENDS_CLEANLY = re.compile(rf"([.!?][`)\"'*]*|```|{CUT_MARK})$")


@pytest.mark.slow
def test_the_real_model_cut_by_its_token_cap_ends_cleanly() -> None:
    engine = CompletionEngine(load_settings(None, {}))
    assert engine.wait_ready(120), engine.load_error
    raw_endings_cut = 0
    try:
        for cap in (24, 48, 96, 160):
            seen: list[str] = []
            answer = engine.ask(
                "How are secrets kept out of the index?", [LONG_PROSE], cap, on_text=seen.append
            )
            assert ENDS_CLEANLY.search(answer), (cap, answer[-120:])
            raw_endings_cut += not ENDS_CLEANLY.search(seen[-1])
    finally:
        engine.close()
    assert raw_endings_cut  # the model was cut mid-sentence at least once: the case is tested
