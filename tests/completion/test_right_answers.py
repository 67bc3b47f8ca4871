"""The stop rules and post-processing keep a right answer: where the model writes the evaluation
task's answer and then goes on as the file does, what is shown is that answer (a check that
found the docstring, suffix-depth and hanging-bracket defects in postprocess.py)."""

from __future__ import annotations

from functools import cache

import pytest
from conftest import FIXTURE_REPO
from repotune.server.completion.postprocess import (
    POSTPROCESS_WINDOW,
    decide_multiline,
    postprocess,
    truncate,
)
from repotune.training.data.splits import SourceFile
from repotune.training.eval.tasks import Task, extract_tasks

STOP = ("<|rt_",)


@cache
def _tasks() -> list[Task]:
    files = [
        SourceFile(path.name, "python", path.read_text(), path.read_bytes(), "test")
        for path in sorted(FIXTURE_REPO.glob("*.py"))
    ]
    return extract_tasks(files, {"line": 400, "midword": 100, "span": 120, "api": 60}, seed=3)


def _shown(task: Task) -> str:
    """What the user would see had the model written the answer and then the file's next text."""
    prefix = task.prefix[-POSTPROCESS_WINDOW:]
    suffix = task.suffix[:POSTPROCESS_WINDOW]
    multiline = decide_multiline(prefix, suffix, task.language)
    written = task.target + suffix[:400]
    cut = truncate(written, prefix=prefix, suffix=suffix, multiline=multiline, stop=STOP)
    shown = postprocess(
        cut.text,
        prefix=prefix,
        suffix=suffix,
        multiline=multiline,
        stop=STOP,
        language=task.language,
        stopped_by=cut.reason,
    )
    return shown or ""


@pytest.mark.parametrize("kind", ["line", "midword", "api", "span"])
def test_a_right_answer_followed_by_the_file_is_shown_as_written(kind: str) -> None:
    # An answer that writes the prompt's stop string (RepoTune's own markers, in prompts.py) is
    # cut there: the model's output cannot hold it.
    tasks = [task for task in _tasks() if task.kind == kind and STOP[0] not in task.target]
    assert len(tasks) >= 20  # the fixture gives each kind enough cursor positions
    changed = []
    for task in tasks:
        shown = _shown(task)
        # Line kinds are scored on their first line; spans whole.
        if kind == "span":
            right = shown.strip() == task.target.strip()
        else:
            right = shown.strip().split("\n")[0].strip() == task.target.strip()
        if not right:
            changed.append((task.id, task.target, shown))
    assert changed == []
