"""`repotune eval compare`: two evaluation output folders paired task by task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repotune.training.eval.cli import main
from repotune.training.eval.compare import compare
from repotune.training.eval.corpora import EvalError


def write_run(folder: Path, condition: str, rows: dict[str, tuple[str, str, float, float]]) -> Path:
    """An eval output folder: task id -> (kind, prediction, exact match, edit similarity)."""
    folder.mkdir(parents=True)
    tasks = [{"id": task, "kind": kind} for task, (kind, *_rest) in rows.items()]
    (folder / "eval.json").write_text(json.dumps({"repos": {"pkg": {"tasks": tasks}}}))
    lines = [
        json.dumps(
            {"condition": "base+ctx", "task": "t-other", "prediction": "", "exact_match": 1.0}
        )
    ]
    for task, (_kind, prediction, em, es) in rows.items():
        row = {"condition": condition, "task": task, "prediction": prediction}
        lines.append(json.dumps(row | {"exact_match": em, "edit_similarity": es}))
    lines.append(json.dumps({"condition": condition, "task": "q1", "answer": "prose"}))  # question
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_pairs_shared_tasks_per_kind(tmp_path: Path) -> None:
    test = write_run(
        tmp_path / "new",
        "repo+ctx",
        {
            "a": ("line", "x = 1", 1.0, 1.0),
            "b": ("line", "y", 1.0, 1.0),
            "c": ("line", "z", 0.0, 0.5),
            "m": ("midword", "name", 0.0, 0.4),
            "only-new": ("line", "w", 1.0, 1.0),  # the reference never answered it
        },
    )
    reference = write_run(
        tmp_path / "old",
        "default+ctx",
        {
            "a": ("line", "x = 1", 1.0, 1.0),
            "b": ("line", "q", 0.0, 0.2),
            "c": ("line", "z", 0.0, 0.5),
            "m": ("midword", "nom", 1.0, 0.8),
        },
    )
    result = compare(f"{test}@repo+ctx", [str(reference)], resamples=200)
    line = result["kinds"]["line"]
    assert line["tasks"] == 3 and line["changed_predictions"] == 1
    assert line["exact_match"]["test"] == pytest.approx(66.7)
    assert line["exact_match"]["reference"] == pytest.approx(33.3)
    assert line["exact_match"]["difference"][0] == pytest.approx(33.3)
    assert line["exact_match"]["mcnemar"] == {"a_only": 1, "b_only": 0, "p_value": 1.0}
    assert line["edit_similarity"]["difference"][0] == pytest.approx(26.7)
    midword = result["kinds"]["midword"]
    assert midword["tasks"] == 1 and midword["exact_match"]["mcnemar"]["b_only"] == 1
    assert result["reference"] == [f"{reference}@default+ctx"]


def test_the_whole_suggestion_is_compared_beside_its_first_line(tmp_path: Path) -> None:
    """A line task is scored on its first line; what the editor shows is all of it. Runs
    scored before `shown_exact` existed get it from their predictions."""
    test = write_run(
        tmp_path / "new",
        "default+ctx",
        {
            "a": ("line", "x = 1", 1.0, 1.0),
            "b": ("line", "y\n", 1.0, 1.0),  # a line's own line break is nothing more
            "s": ("span", "a\nb", 1.0, 1.0),
        },
    )
    reference = write_run(
        tmp_path / "old",
        "default+ctx",
        {
            "a": ("line", "x = 1\n    z = 2", 1.0, 1.0),  # right, then a line nobody asked for
            "b": ("line", "y", 1.0, 1.0),
            "s": ("span", "a\nb", 1.0, 1.0),
        },
    )
    result = compare(str(test), [str(reference)], resamples=200)
    line = result["kinds"]["line"]
    assert line["exact_match"]["difference"][0] == 0.0
    assert line["shown_exact"]["test"] == 100.0 and line["shown_exact"]["reference"] == 50.0
    assert line["shown_exact"]["mcnemar"]["a_only"] == 1
    assert result["kinds"]["span"]["shown_exact"]["reference"] == 100.0


def write_questions(folder: Path, rows: dict[str, tuple[str, float | None, float, float]]) -> str:
    """An eval output folder with question answers only: task id -> (answer, citation (None:
    unanswerable), ROUGE-L, abstained), as a questions-only `repotune eval` writes them."""
    folder.mkdir(parents=True)
    tasks = [{"id": task, "kind": "what"} for task in rows]
    repos = {"pkg": {"tasks": [], "questions": {"tasks": tasks}}}
    (folder / "eval.json").write_text(json.dumps({"repos": repos}))
    lines = []
    for task, (answer, citation, rouge, abstained) in rows.items():
        scores = {"citation": citation, "cosine": 0.9, "rouge_l": rouge, "abstained": abstained}
        row = {"condition": "default+ctx", "task": task, "kind": "question", "prediction": answer}
        lines.append(json.dumps(row | scores))
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder)


def test_questions_pair_citation_on_answerable_and_abstention_on_the_others(
    tmp_path: Path,
) -> None:
    """A questions-only run was "no completion predictions for default+ctx (it has:
    default+ctx)": questions could not be compared at all."""
    test = write_questions(
        tmp_path / "new",
        {
            "a": ("`f` (m.py:3)", 1.0, 0.8, 0.0),
            "b": ("`g` (m.py:9)", 1.0, 0.6, 0.0),
            "u": ("The indexed code does not define `h`.", None, 1.0, 1.0),
        },
    )
    reference = write_questions(
        tmp_path / "old",
        {
            "a": ("`f` (m.py:3)", 1.0, 0.8, 0.0),
            "b": ("`C` (m.py:1)", 0.0, 0.4, 0.0),
            "u": ("The indexed code does not define `h`.", None, 1.0, 1.0),
        },
    )
    question = compare(test, [reference], resamples=100)["kinds"]["question"]
    assert question["tasks"] == 3 and question["changed_predictions"] == 1
    assert question["citation"]["tasks"] == 2 and question["citation"]["test"] == 100.0
    assert question["citation"]["reference"] == 50.0
    assert question["citation"]["mcnemar"] == {"a_only": 1, "b_only": 0, "p_value": 1.0}
    assert question["rouge_l"]["difference"][0] == pytest.approx(10.0)
    assert question["abstained"]["tasks"] == 1 and question["abstained"]["test"] == 100.0


def test_several_reference_folders_read_as_one(tmp_path: Path) -> None:
    test = write_run(
        tmp_path / "new",
        "default+ctx",
        {"a": ("line", "1", 1.0, 1.0), "b": ("line", "2", 0.0, 0.0)},
    )
    first = write_run(tmp_path / "r1", "default+ctx", {"a": ("line", "1", 1.0, 1.0)})
    second = write_run(tmp_path / "r2", "default+ctx", {"b": ("line", "3", 1.0, 1.0)})
    result = compare(str(test), [str(first), str(second)], resamples=50)
    assert result["kinds"]["line"]["tasks"] == 2
    assert result["kinds"]["line"]["exact_match"]["reference"] == 100.0


def test_mismatched_runs_are_clear_errors(tmp_path: Path) -> None:
    test = write_run(tmp_path / "new", "default+ctx", {"a": ("line", "1", 1.0, 1.0)})
    other = write_run(tmp_path / "other", "default+ctx", {"zz": ("line", "1", 1.0, 1.0)})
    with pytest.raises(EvalError, match="share no task"):
        compare(str(test), [str(other)])
    with pytest.raises(EvalError, match=r"no scored predictions for repo\+ctx .*default\+ctx"):
        compare(f"{test}@repo+ctx", [str(other)])
    with pytest.raises(EvalError, match=r"no predictions\.jsonl"):
        compare(str(tmp_path / "missing"), [str(other)])
    with pytest.raises(EvalError, match="needs a reference"):
        compare(str(test), [])
    with pytest.raises(EvalError, match="--bootstrap must be at least 1"):  # was an IndexError
        compare(str(test), [str(test)], resamples=0)


def test_command_prints_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    test = write_run(tmp_path / "new", "default+ctx", {"a": ("line", "1", 1.0, 1.0)})
    reference = write_run(tmp_path / "old", "default+ctx", {"a": ("line", "2", 0.0, 0.5)})
    out = tmp_path / "cmp" / "comparison.json"
    main(["compare", str(test), str(reference), "--bootstrap", "100", "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["kinds"]["line"]["exact_match"]["difference"][0] == 100.0
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(test), str(tmp_path / "nowhere")])
    assert exit_info.value.code == 1
    assert "no predictions.jsonl" in capsys.readouterr().err
