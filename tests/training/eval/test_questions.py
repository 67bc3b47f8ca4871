"""Question tasks of `repotune eval`: made from held-out files only, with references that cite the
defining line; the metrics (citation, ROUGE-L, abstention) on known answers; and the runner end
to end with the real default model and a real index on the small shop fixture (a few tasks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from repotune.server.completion.context import ContextSnippet
from repotune.server.config import load_settings
from repotune.training.data.questions import ABSTAIN
from repotune.training.eval.in_view import in_view_context, in_view_twins
from repotune.training.eval.questions import (
    QuestionTask,
    abstains,
    ask_context,
    cites,
    compare_questions,
    question_tasks,
    rouge_l,
    subject_retrieved,
)

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "qa_repo"
# seed 41 puts shop/accounts.py and shop/inventory.py in the test split
OVERRIDES: dict[str, Any] = {"train": {"seed": 41, "test_share": 0.2, "validation_share": 0.15}}


def test_rouge_l_is_the_lcs_f1_over_words() -> None:
    assert rouge_l("the cat sat", "the cat sat") == 1.0
    assert rouge_l("", "anything") == 0.0
    # LCS "the sat" = 2 of 3 words on each side: P = R = 2/3
    assert rouge_l("the dog sat", "the cat sat") == pytest.approx(2 / 3)
    assert rouge_l("a b c d", "d c b a") == pytest.approx(0.25)


def test_citation_needs_the_file_and_a_line_of_the_definition() -> None:
    subject = {"name": "reserve", "path": "shop/inventory.py", "start_line": 21, "end_line": 27}
    assert cites("`reserve` (shop/inventory.py:21): Take units.", subject) == (True, True)
    assert cites("see inventory.py:18-22", subject) == (True, True)  # overlaps the span
    assert cites("see shop/inventory.py:5", subject) == (False, True)  # the file, not the lines
    assert cites("see shop/cart.py:21", subject) == (False, False)
    assert cites("no citation at all", subject) == (False, False)
    made_up = {"name": "reserves", "path": None, "start_line": None, "end_line": None}
    assert cites("shop/inventory.py:21", made_up) == (False, False)
    # the answer is about the definition it opens with; the note of other ones does not count
    other = "`reserve` (shop/old.py:3): Old.\n\n`reserve` is also defined at shop/inventory.py:21."
    assert cites(other, subject) == (False, False)


def test_abstention_is_recognised() -> None:
    assert abstains(ABSTAIN.format(name="get_reserve"))
    assert abstains("`get_reserve` is not defined in the snippets.")
    assert not abstains("`reserve` (shop/inventory.py:21): Take units from the nearest warehouse.")


def test_comparisons_use_the_tasks_each_metric_applies_to() -> None:
    def task(answerable: bool) -> QuestionTask:
        return QuestionTask("t", "what", "a.py", "Q?", "A", answerable, {"path": "a.py"})

    tasks = [task(True), task(True), task(False)]
    a = [
        {"citation": 1.0, "cosine": 0.9, "rouge_l": 0.5, "abstained": 0.0},
        {"citation": 1.0, "cosine": 0.8, "rouge_l": 0.5, "abstained": 0.0},
        {"citation": None, "cosine": 0.7, "rouge_l": 1.0, "abstained": 1.0},
    ]
    b = [
        {"citation": 0.0, "cosine": 0.5, "rouge_l": 0.1, "abstained": 1.0},
        {"citation": 1.0, "cosine": 0.5, "rouge_l": 0.1, "abstained": 0.0},
        {"citation": None, "cosine": 0.2, "rouge_l": 0.0, "abstained": 0.0},
    ]
    (found,) = compare_questions(tasks, {"x": a, "y": b}, [("x", "y")], 200, 0)
    assert found["intervals"]["citation"]["n"] == 2
    assert found["intervals"]["citation"]["difference"] == pytest.approx(0.5)
    assert found["intervals"]["abstention"]["n"] == 1
    assert found["intervals"]["abstention"]["difference"] == pytest.approx(1.0)
    assert found["intervals"]["false_abstention"]["difference"] == pytest.approx(-0.5)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("eval-questions")
    repo = tmp / "shop-repo"
    shutil.copytree(FIXTURE, repo)
    overrides = {**OVERRIDES, "index": {"index_dir": str(tmp / "index")}}
    return {"tmp": tmp, "repo": repo, "overrides": overrides}


def test_tasks_come_from_held_out_files_with_cited_references(shop: dict[str, Any]) -> None:
    from repotune.training.data.splits import assign_splits, collect_files
    from repotune.training.eval.adapters import open_index

    settings = load_settings(None, shop["overrides"])
    files, _ = collect_files(shop["repo"], settings)
    assign_splits(files, settings)
    test_paths = {f.path for f in files if f.split == "test"}
    assert test_paths == {"shop/accounts.py", "shop/inventory.py"}
    index = open_index(shop["repo"], settings)
    try:
        tasks = question_tasks(files, 12, 5, index, settings)
        again = question_tasks(files, 12, 5, index, settings)
        contexts = [ask_context(index, t.question, settings) for t in tasks]
        twins = in_view_twins(tasks, files)
        twin_contexts = [in_view_context(index, twin, view, settings) for _, twin, view in twins]
    finally:
        index.close()
    # every answerable "what" question again from the cursor on its subject's first line: the
    # subject's definition comes first, in view, and is not retrieved a second time
    whats = [i for i, t in enumerate(tasks) if t.kind == "what" and t.answerable]
    assert [i for i, _, _ in twins] == whats and whats
    for (i, twin, view), shown in zip(twins, twin_contexts, strict=True):
        subject = tasks[i].subject
        assert twin.question.startswith("What does this ") and twin.reference == tasks[i].reference
        assert view.first_line == subject["start_line"] and view.last_line is None
        focus = shown[0]
        assert focus.in_view and focus.path == subject["path"]
        assert focus.start_line <= subject["start_line"] <= subject["end_line"] <= focus.end_line
        again_shown = [
            s for s in shown[1:] if (s.path, s.start_line) == (focus.path, focus.start_line)
        ]
        assert not again_shown
    retrieved = subject_retrieved(tasks, contexts)
    assert retrieved["all"] is not None and retrieved["all"] >= 0.5  # a tiny, named repository
    assert sum(v["n"] for v in retrieved["by_kind"].values()) == sum(t.answerable for t in tasks)
    assert [t.to_json() for t in tasks] == [t.to_json() for t in again]  # same seed, same tasks
    assert len(tasks) == 12
    assert {t.path for t in tasks} <= test_paths
    assert any(not t.answerable for t in tasks) and sum(t.answerable for t in tasks) >= 6
    texts = "\n".join(f.text for f in files)
    for task in tasks:
        if task.answerable:
            assert task.subject["path"] in test_paths
            assert cites(task.reference, task.subject)[0], task.reference  # the reference cites
            assert not abstains(task.reference)
        else:
            assert task.reference == ABSTAIN.format(name=task.subject["name"])
            assert task.subject["name"].rsplit(".", 1)[-1] not in texts


@pytest.mark.slow
@pytest.mark.timeout(1800)  # indexing, two model loads and three answers on two busy cores
def test_runner_asks_questions_with_the_real_model(shop: dict[str, Any]) -> None:
    from repotune.training.eval.config import EvalConfig
    from repotune.training.eval.runner import run

    overrides = {**shop["overrides"], "ask": {"max_tokens": 48}, "model": {"context_length": 2048}}
    out = shop["tmp"] / "out"
    config = EvalConfig(
        repos=[str(shop["repo"])],
        conditions=["base", "base+ctx", "default+ctx"],
        counts={"line": 0, "span": 0, "api": 0, "question": 3},
        seed=7,  # its three questions: one unanswerable, a "where" and a "what"
        bootstrap=100,
        overrides=overrides,
        out=out,
        progress=False,
        command="test",
    )
    result = run(config)
    section = result["repos"]["shop-repo"]["questions"]
    assert len(section["tasks"]) == 3
    # a question always retrieves context; each condition answers with its own adapter
    assert list(section["conditions"]) == ["base+ctx", "default+ctx"]
    assert section["conditions"]["base+ctx"]["adapter"] is None
    assert str(section["conditions"]["default+ctx"]["adapter"]).endswith("default-adapter.gguf")
    scores = section["conditions"]["base+ctx"]
    assert scores["n"] == 3 and scores["latency_ms"]["p50"] > 0
    for key in ("citation", "cosine", "rouge_l", "abstention", "false_abstention"):
        value = scores[key]
        assert value is None or 0.0 <= value <= 1.0 + 1e-6, (key, value)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    asked = [r for r in rows if r.get("kind") == "question"]
    assert len(asked) == 6 and all(isinstance(r["prediction"], str) for r in asked)
    report = (out / "eval.md").read_text()
    assert "### Questions" in report
    assert "line EM" not in report and "recall@" not in report  # no empty completion tables
    summary = json.loads((out / "eval-summary.json").read_text())
    assert "tasks" not in summary["repos"]["shop-repo"]["questions"]  # no third-party text
    # the "what" questions among them were asked again from the cursor, beside the named ones
    in_view = section["in_view"]
    whats = sum(t["kind"] == "what" and t["answerable"] for t in section["tasks"])
    assert in_view["n"] == whats == 1
    assert list(in_view["conditions"]) == ["base+ctx", "default+ctx"]
    assert in_view["conditions"]["default+ctx"]["citation"]["named"] is not None
    assert "Asked from the cursor" in report


def test_subject_retrieved_counts_snippets_holding_a_line_of_the_definition() -> None:
    subject = {"name": "reserve", "path": "shop/inventory.py", "start_line": 21, "end_line": 27}
    ask = QuestionTask(
        "a", "what", "shop/inventory.py", "What does `reserve` do?", "", True, subject
    )
    where = QuestionTask(
        "b", "where", "shop/inventory.py", "Where is `reserve`?", "", True, subject
    )
    fake = {**subject, "name": "reserves", "path": None, "start_line": None, "end_line": None}
    unanswerable = QuestionTask(
        "c", "what", "shop/inventory.py", "What is `reserves`?", "", False, fake
    )
    holding = ContextSnippet("shop/inventory.py", "x\n" * 5, 25)  # lines 25-29: inside
    before = ContextSnippet("shop/inventory.py", "x\n" * 11, 10)  # lines 10-20: just before
    elsewhere = ContextSnippet("shop/accounts.py", "x\n" * 30, 1)
    result = subject_retrieved(
        [ask, where, unanswerable], [[before, holding], [before, elsewhere], [holding]]
    )
    assert result == {
        "all": 0.5,
        "by_kind": {"what": {"n": 1, "share": 1.0}, "where": {"n": 1, "share": 0.0}},
    }


def test_summary_and_table_from_known_answers() -> None:
    from repotune.training.eval.questions import Answered, score_answers, summarize_questions
    from repotune.training.eval.report import question_lines

    subject = {"name": "reserve", "path": "shop/inventory.py", "start_line": 21, "end_line": 27}
    made_up = {"name": "reserves", "path": None, "start_line": None, "end_line": None}
    reference = "`reserve` (shop/inventory.py:21): Take units from the nearest warehouse."
    tasks = [
        QuestionTask(
            "a", "what", "shop/inventory.py", "What does `reserve` do?", reference, True, subject
        ),
        QuestionTask(
            "b", "where", "shop/inventory.py", "Where is `reserve`?", reference, True, subject
        ),
        QuestionTask(
            "c",
            "what",
            "shop/inventory.py",
            "What does `reserves` do?",
            ABSTAIN.format(name="reserves"),
            False,
            made_up,
        ),
    ]
    answers = [
        Answered(reference, 120.0, 3),  # right, cited
        Answered(ABSTAIN.format(name="reserve"), 80.0, 3),  # a false abstention
        Answered(ABSTAIN.format(name="reserves"), 100.0, 3),  # a right abstention
    ]
    scores = score_answers(tasks, answers, embedder=None)
    summary = summarize_questions(tasks, scores, answers)
    assert summary["citation"] == 0.5 and summary["citation_file"] == 0.5
    assert summary["abstention"] == 1.0 and summary["false_abstention"] == 0.5
    assert summary["rouge_l"] is not None and 0.5 < summary["rouge_l"] < 1.0
    assert summary["cosine"] is None  # no embedder given
    assert summary["latency_ms"]["p50"] == 100.0
    section = {
        "task_counts": {"answerable": 2, "unanswerable": 1},
        "conditions": {"base+ctx": summary},
        "comparisons": compare_questions(tasks, {"x": scores, "y": scores}, [("x", "y")], 100, 0),
        "subject_retrieved": {"all": 0.5, "by_kind": {"what": {"n": 2, "share": 0.5}}},
    }
    table = "\n".join(question_lines(section))
    assert "subject's definition for 50.0 % of the answerable questions (what 50.0 of 2)" in table
    assert "| base+ctx | 50.0 | 50.0 | – |" in table
    assert "| x − y | +0.0 [+0.0, +0.0]" in table


def test_a_questions_only_run_charts_its_answers(tmp_path: Path) -> None:
    """Its chart was six empty completion panels; now one row of question bars."""
    import matplotlib.image
    from repotune.training.eval.report import chart

    scores = {"citation": 0.9, "cosine": 0.92, "rouge_l": 0.7}
    questions = {"task_counts": {"answerable": 20}, "conditions": {"default+ctx": scores}}
    repo = {"repo": {"spec": "pkg==1.0"}, "task_counts": {"line": 0}, "questions": questions}
    image = matplotlib.image.imread(chart({"repos": {"pkg": repo}}, tmp_path / "eval.png"))
    height, width = image.shape[:2]
    assert width > height * 1.3  # one row of panels (the completion chart has two)
