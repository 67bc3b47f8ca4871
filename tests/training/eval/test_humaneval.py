"""HumanEval infilling: the execution harness on hand-written programs (pass, fail, an endless
loop killed, file writes kept in the temporary folder), task sampling, and the whole command on
three real tasks with the real default model."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from repotune.server.completion.postprocess import wants_block
from repotune.training.eval.corpora import EvalError
from repotune.training.eval.humaneval import (
    HumanEvalConfig,
    InfillTask,
    load_tasks,
    middle,
    pairs,
    request_for,
    run,
    sample,
    set_kind,
)
from repotune.training.eval.humaneval_exec import Outcome, build_program, run_program

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "humaneval-infilling"
SINGLE = DATA / "HumanEval-SingleLineInfilling.jsonl.gz"
COMMAND = [sys.executable, "-m", "repotune", "eval", "humaneval"]

TASK = InfillTask(
    task_id="SingleLineInfilling/Toy/0/L0",
    entry_point="add",
    prompt="def add(a, b):\n",
    suffix="",
    canonical_solution="    return a + b\n",
    test="def check(candidate):\n    assert candidate(2, 3) == 5\n"
    "    assert candidate(-1, 1) == 0\n",
)


def _program(line: str, task: InfillTask = TASK) -> str:
    return build_program(task.prompt, line, task.suffix, task.test, task.entry_point)


def test_a_correct_completion_passes() -> None:
    assert run_program(_program("    return a + b\n")).status == "passed"


def test_a_wrong_completion_fails_with_its_error() -> None:
    outcome = run_program(_program("    return a - b\n"))
    assert outcome.status == "failed" and "AssertionError" in outcome.detail
    broken = run_program(_program("    return a +\n"))
    assert broken.status == "failed" and "SyntaxError" in broken.detail


def test_an_endless_loop_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child-alive"
    # The program starts a child that would write a file after 3 s, then loops for ever; it
    # reloads subprocess first (code written to escape the guard), so the group kill is tested.
    child = f"import time; time.sleep(3); open({str(marker)!r}, 'w').close()"
    line = (
        "    import importlib, subprocess, sys; importlib.reload(subprocess); "
        f"subprocess.Popen([sys.executable, '-c', {child!r}]); exec('while True: pass')\n"
    )
    started = time.monotonic()
    outcome = run_program(_program(line), timeout_s=1.0)
    assert outcome.status == "timeout"
    assert time.monotonic() - started < 10
    time.sleep(3.5)
    assert not marker.exists()  # the whole process group was killed


def test_a_program_that_floods_stderr_is_stopped_by_the_file_size_limit() -> None:
    """Its stderr was read through a pipe into the evaluator's memory until the time limit
    (1.7 GB in 3 s); now it is a file the program's size limit caps."""
    line = "    import sys\n    while True: sys.stderr.write('x' * 65536)\n"
    outcome = run_program(_program(line), timeout_s=5.0)
    assert outcome == Outcome("failed", "its stderr reached the 16 MiB file limit"), outcome


def test_writes_land_in_the_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = (
        "    import os; open('written.txt', 'w').write(os.getcwd()); "
        "open(os.path.expanduser('~/home.txt'), 'w').close(); return a + b\n"
    )
    assert run_program(_program(line)).status == "passed"
    assert list(tmp_path.iterdir()) == []  # nothing in the caller's folder
    assert not (Path.home() / "home.txt").exists()


@pytest.mark.parametrize(
    "call",
    [
        "shutil.rmtree(KEEP)",
        "os.remove(os.path.join(KEEP, 'file'))",
        "os.rename(KEEP, KEEP + '-moved')",
        "os.system('rm -rf ' + KEEP)",
        "subprocess.Popen(['rm', '-rf', KEEP]).wait()",
        "os.kill(os.getpid(), 9)",
    ],
)
def test_generated_code_cannot_delete_move_or_kill_by_mistake(tmp_path: Path, call: str) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "file").write_text("still here")
    line = f"    import os, shutil, subprocess; KEEP = {str(keep)!r}; {call}; return a + b\n"
    outcome = run_program(_program(line))
    assert outcome.status == "failed" and "NoneType" in outcome.detail, outcome
    assert (keep / "file").read_text() == "still here"


@pytest.mark.parametrize("call", ["exit(0)", "quit()", "sys.exit(0)", "raise SystemExit"])
def test_a_program_that_exits_before_its_tests_has_not_passed(call: str) -> None:
    outcome = run_program(_program(f"    import sys; {call}\n"))
    assert outcome.status == "failed", outcome
    assert call.startswith(("exit", "quit")) or "exited before its tests" in outcome.detail


def test_middle_per_set_kind() -> None:
    assert middle("single-line", "\n    return a + b\n    x = 1") == "    return a + b\n"
    assert middle("multi-line", "    x = 1\n    return x") == "    x = 1\n    return x\n"
    assert middle("random-span", "rn a + b") == "rn a + b"
    assert middle("single-line", "") == "\n"


def test_a_multi_line_hole_is_asked_on_an_empty_line() -> None:
    """With the suffix's first line right of the cursor the engine completes one line; lines are
    inserted on an empty line, so that is where a multi-line hole is asked."""
    task = InfillTask(
        "MultiLineInfilling/Toy/0/L0_L1", "add", "def add(a, b):\n", "    return c\n", "", ""
    )
    multi = request_for(task, "multi-line")
    assert multi.prefix == task.prompt and multi.suffix == "\n" + task.suffix
    assert wants_block(multi)
    single = request_for(task, "single-line")
    assert single.suffix == task.suffix and not wants_block(single)
    assert request_for(task, "random-span").suffix == task.suffix


def test_sample_spreads_tasks_evenly() -> None:
    tasks = [TASK] * 10
    assert len(sample(tasks, None, 1)) == 10
    assert len(sample(tasks, None, 3)) == 4  # 0, 3, 6, 9
    numbered = [InfillTask(str(i), "f", "", "", "", "") for i in range(10)]
    assert [t.task_id for t in sample(numbered, 3, 1)] == ["0", "3", "6"]
    assert [t.task_id for t in sample(numbered, 2, 2)] == ["0", "4"]


def test_pairs_compare_adapters_with_base_and_default() -> None:
    assert pairs(["base", "default", "mine"]) == [
        ("default", "base"),
        ("mine", "base"),
        ("mine", "default"),
    ]


def test_bad_data_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as handle:
        handle.write(json.dumps({"task_id": "x"}) + "\n")
    with pytest.raises(EvalError, match="not a HumanEval infilling task"):
        load_tasks(bad)
    with pytest.raises(EvalError, match="cannot read"):
        load_tasks(tmp_path / "missing.jsonl.gz")


@pytest.mark.skipif(not SINGLE.is_file(), reason="HumanEval infilling data not available")
def test_the_real_tasks_load_and_their_solutions_pass() -> None:
    tasks = load_tasks(SINGLE)
    assert len(tasks) == 1033 and set_kind(SINGLE, tasks) == "single-line"
    for task in sample(tasks, 5, 1):
        source = build_program(
            task.prompt, task.canonical_solution, task.suffix, task.test, task.entry_point
        )
        assert run_program(source).passed, task.task_id


@pytest.mark.slow
@pytest.mark.skipif(not SINGLE.is_file(), reason="HumanEval infilling data not available")
def test_three_tasks_end_to_end_with_the_real_model(tmp_path: Path) -> None:
    config = HumanEvalConfig(
        data=[SINGLE],
        conditions={"base": "none"},
        limit=3,
        bootstrap=100,
        out=tmp_path / "out",
        progress=False,
        command="test",
    )
    result = run(config)
    single = result["sets"]["single-line"]
    assert single["tasks"] == 3 and single["tasks_in_file"] == 1033
    base = single["conditions"]["base"]
    assert base["tasks"] == 3 and 0 <= base["passed"] <= 3
    assert base["pass_at_1"] == base["passed"] / 3
    assert result["config"]["conditions"]["base"]["path"] is None  # the bare base, no adapter
    rows = [
        json.loads(line)
        for line in (tmp_path / "out" / "humaneval-predictions.jsonl").read_text().splitlines()
    ]
    assert [r["task_id"] for r in rows] == single["task_ids"]
    assert all(r["status"] in {"passed", "failed", "timeout"} for r in rows)
    assert any(r["completion"].strip() for r in rows)  # the model really answered
    assert "| base |" in (tmp_path / "out" / "humaneval.md").read_text()


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ({"limit": 0}, "--limit must be at least 1"),
        ({"every": 0}, "--every must be at least 1"),  # it took every task, saying 0
        ({"timeout_s": 0.0}, "--timeout must be a positive"),  # every program timed out
        ({"timeout_s": float("nan")}, "--timeout must be a positive"),  # a traceback at once
        ({"bootstrap": 0}, "--bootstrap must be at least 1"),  # a traceback after every task
    ],
)
def test_limits_that_cannot_work_are_refused_before_any_work(
    tmp_path: Path, setting: dict, error: str
) -> None:
    config = HumanEvalConfig(data=[tmp_path / "unread.jsonl.gz"], out=tmp_path / "out", **setting)
    with pytest.raises(EvalError, match=error):
        run(config)
    assert not (tmp_path / "out").exists()


def test_the_command_line_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*COMMAND, "--conditions", "base", "--data", str(tmp_path / "no.jsonl.gz")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 1
    ours = [line for line in result.stderr.splitlines() if line.startswith("repotune eval")]
    assert len(ours) == 1 and "cannot read HumanEval tasks" in ours[0], result.stderr


def test_a_missing_default_adapter_fails_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import repotune.server.models as models
    from repotune.server.models import ModelError

    monkeypatch.setattr(models, "default_adapter_path", lambda: tmp_path / "missing.gguf")
    data = tmp_path / "HumanEval-SingleLineInfilling.jsonl"
    data.write_text(json.dumps(vars(TASK)) + "\n")
    config = HumanEvalConfig(data=[data], progress=False)  # base and default
    with pytest.raises(ModelError, match="default adapter is missing"):
        run(config)
