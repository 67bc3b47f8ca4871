"""Evaluation tasks: only from held-out test files, whole and repeatable, with the cross-file
definitions their answers use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import copy_fixture_repo
from repotune.server.config import load_settings
from repotune.training.data.splits import SourceFile, assign_splits, collect_files, split_for
from repotune.training.eval.corpora import EvalError
from repotune.training.eval.tasks import extract_tasks

FILES = [
    "retrieval.py",
    "postprocess.py",
    "prompts.py",
    "models.py",
    "embeddings.py",
    "files.py",
    "chunking.py",
    "store.py",
    "indexer.py",
    "config.py",
]
COUNTS = {"line": 40, "midword": 20, "span": 12, "api": 12}


@pytest.fixture(scope="module")
def repo_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[SourceFile], object]:
    repo = copy_fixture_repo(FILES, tmp_path_factory.mktemp("eval-tasks") / "repo")
    settings = load_settings(None, {"train": {"test_share": 0.3, "validation_share": 0.2}})
    files, _ = collect_files(repo, settings)
    assign_splits(files, settings)
    return files, settings


def test_tasks_come_only_from_test_files(repo_files: tuple[list[SourceFile], object]) -> None:
    files, settings = repo_files
    splits = {f.path: f.split for f in files}
    assert {"train", "test"} <= set(splits.values())  # the fixture exercises a real split
    for f in files:  # the split is the dataset's own, from the training settings
        train = settings.train  # type: ignore[attr-defined]
        expected = split_for(f.path, train.seed, train.test_share, train.validation_share)
        assert f.split == expected or f.split == "validation"  # assign_splits may move one
    tasks = extract_tasks(files, COUNTS, seed=5)
    assert tasks
    assert {splits[t.path] for t in tasks} == {"test"}
    assert {t.kind for t in tasks} == {"line", "midword", "span", "api"}


def test_no_test_files_means_no_tasks(repo_files: tuple[list[SourceFile], object]) -> None:
    files, _ = repo_files
    trained_only = [SourceFile(f.path, f.language, f.text, f.data, "train") for f in files]
    assert extract_tasks(trained_only, COUNTS, seed=5) == []


def test_tasks_are_whole_and_repeatable(repo_files: tuple[list[SourceFile], object]) -> None:
    files, _ = repo_files
    by_path = {f.path: f for f in files}
    first = extract_tasks(files, COUNTS, seed=11)
    assert [t.to_json() for t in first] == [t.to_json() for t in extract_tasks(files, COUNTS, 11)]
    other = extract_tasks(files, COUNTS, seed=12)
    assert [t.id for t in first] != [t.id for t in other]
    for task in first:
        source = by_path[task.path]
        assert task.prefix + task.target + task.suffix == source.text
        assert task.target.strip()
        if task.kind == "line":
            assert "\n" not in task.target
            assert task.suffix.startswith("\n") or task.suffix == ""
            assert task.prefix.split("\n")[-1].strip()  # something typed on the line
            assert not task.prefix.split("\n")[-1].lstrip().startswith("#")
        elif task.kind == "midword":
            assert "\n" not in task.target
            assert task.suffix.startswith("\n") or task.suffix == ""
            # the cursor sits inside a name: a word character on each side of it
            assert task.prefix[-1:].isidentifier() or task.prefix[-1:].isdigit()
            assert (task.prefix[-1] + task.target[0]).isidentifier()
            assert not task.prefix.split("\n")[-1].lstrip().startswith("#")
        elif task.kind == "api":
            assert "\n" not in task.target
            assert task.target.endswith(")") and "(" in task.target
            assert task.target.split("(")[0].isidentifier()
        else:
            assert task.span in {"function_body", "block", "expression"}
    spans = {t.span for t in first if t.kind == "span"}
    assert spans == {"function_body", "block", "expression"}  # each type gets its share


def test_midword_tasks_leave_the_other_kinds_as_they_were(
    repo_files: tuple[list[SourceFile], object],
) -> None:
    """Mid-word tasks draw from their own random stream: results stored before they existed
    pair task by task with new runs."""
    files, _ = repo_files
    without = extract_tasks(files, {"line": 40, "span": 12, "api": 12}, seed=5)
    with_midword = extract_tasks(files, COUNTS, seed=5)
    assert [t.id for t in without] == [t.id for t in with_midword if t.kind != "midword"]
    midword = [t for t in with_midword if t.kind == "midword"]
    assert len(midword) == 20
    assert not {t.start_byte for t in midword} & {t.start_byte for t in without}


def test_token_cap_leaves_out_long_answers(repo_files: tuple[list[SourceFile], object]) -> None:
    files, _ = repo_files
    tasks = extract_tasks(files, COUNTS, seed=5, count_tokens=len, max_target_tokens=20)
    assert tasks and all(len(t.target) <= 20 for t in tasks)


def _source(path: str, text: str, split: str) -> SourceFile:
    return SourceFile(path, "python", text, text.encode(), split)


def test_cross_file_definitions_and_repository_api() -> None:
    lib = (
        "import os\n\n\nclass ConfigThing:\n    pass\n\n\n"
        "def helper_function(value, scale=2):\n    return value * scale\n"
    )
    user = (
        "import torch\nfrom pkg.lib import helper_function, ConfigThing\n\n\n"
        "def run(items):\n"
        "    total = helper_function(len(items), scale=3)\n"
        "    grads = torch.autograd.backward(total)\n"
        "    return ConfigThing()\n"
    )
    other = "def backward(x):\n    return x\n"
    files = [
        _source("pkg/lib.py", lib, "train"),
        _source("pkg/user.py", user, "test"),
        _source("pkg/other.py", other, "train"),
    ]
    tasks = extract_tasks(files, {"api": 10, "line": 10}, seed=1)
    api = {t.target for t in tasks if t.kind == "api"}
    # torch.autograd.backward is not the repository's API even though `backward` is defined here
    assert api == {"helper_function(len(items), scale=3)", "ConfigThing()"}
    for task in tasks:
        if task.kind == "api" and task.target.startswith("helper_function"):
            assert [(d.name, d.path, d.start_line) for d in task.definitions] == [
                ("helper_function", "pkg/lib.py", 8)
            ]
        assert all(d.path != "pkg/user.py" for d in task.definitions)


def test_adapter_split_must_match(tmp_path: Path) -> None:
    from repotune.training.eval.adapters import check_split

    (tmp_path / "split.json").write_text(
        json.dumps({"train": ["a.py"], "validation": [], "test": ["b.py"]})
    )
    check_split(tmp_path, ["b.py"])  # the same held-out files: fine
    with pytest.raises(EvalError, match="other test files"):
        check_split(tmp_path, ["a.py"])


def test_an_unpinned_npm_repository_is_a_clear_error() -> None:
    from repotune.training.eval.corpora import resolve_repo

    with pytest.raises(EvalError, match=r"npm:rxjs@7\.8\.1"):
        resolve_repo("npm:rxjs")
