"""`repotune eval` end to end on a tiny fixture with the real default model and a real index:
the same seed gives the same figures, outputs are written, and bad input is one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_fixture_repo
from repotune.server.bench.record import SOURCE_ROOT
from repotune.training.eval.config import EvalConfig, validate
from repotune.training.eval.runner import quality, run

FILES = ["retrieval.py", "postprocess.py", "prompts.py", "models.py", "embeddings.py", "files.py"]


@pytest.fixture(scope="module")
def fixture_repo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("eval-runner")
    repo = copy_fixture_repo(FILES, tmp / "fixture")
    overrides = {
        "train": {"test_share": 0.4},
        "index": {"index_dir": str(tmp / "index")},
        # A small prompt keeps the test quick on two CPU cores; every condition uses the same.
        "completion": {"context_tokens": 96, "prefix_tokens": 96, "suffix_tokens": 32},
        "model": {"context_length": 1024},
    }
    return {"tmp": tmp, "repo": repo, "overrides": overrides}


def _config(fixture: dict, out: Path, **changes: object) -> EvalConfig:
    config = EvalConfig(
        repos=[str(fixture["repo"])],
        conditions=["base", "base+ctx"],
        counts={"line": 2, "midword": 1, "span": 1, "api": 1},
        seed=3,
        bootstrap=200,
        overrides=fixture["overrides"],
        out=out,
        progress=False,
        command="test",
    )
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def test_same_seed_same_figures(fixture_repo: dict) -> None:
    first = run(_config(fixture_repo, fixture_repo["tmp"] / "out1"))
    second = run(_config(fixture_repo, fixture_repo["tmp"] / "out2"))
    assert quality(first) == quality(second)
    repo = first["repos"]["fixture"]
    assert repo["task_counts"] == {"line": 2, "midword": 1, "span": 1, "api": 1}
    assert set(repo["conditions"]) == {"base", "base+ctx"}
    assert {t["path"] for t in repo["tasks"]} <= set(repo["test_files"])
    for scores in repo["conditions"].values():
        overall = scores["all"]
        assert overall["n"] == 5
        for metric in ("exact_match", "edit_similarity", "identifier_em", "identifier_f1", "hit"):
            assert 0.0 <= overall[metric] <= 1.0
        assert overall["latency_ms"]["p50"] > 0
    assert [c["a"] + "/" + c["b"] for c in repo["comparisons"]] == ["base+ctx/base"]
    assert 0.0 < repo["comparisons"][0]["mcnemar_em"]["line"]["p_value"] <= 1.0
    assert repo["retrieval"]["snippets_per_task"] > 0
    assert first["config"]["settings"]["completion"]["cache_size"] == 0  # no leaks between tasks
    assert all("hit" in row for row in _rows(fixture_repo["tmp"] / "out1"))

    out = fixture_repo["tmp"] / "out1"
    saved = json.loads((out / "eval.json").read_text())
    assert saved["repos"]["fixture"]["conditions"] == json.loads(json.dumps(repo["conditions"]))
    assert (out / "eval.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "eval.md").read_text()
    assert "| base+ctx |" in table and "base+ctx − base" in table and "McNemar" in table
    assert "mid-word EM" in table
    # the report names the RepoTune commit that ran (results are stored by commit)
    head = subprocess.run(
        ["git", "-C", str(SOURCE_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert first["config"]["commit"] == head and f"Commit: {head}" in table
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 10
    by_condition: dict[str, list[int]] = {}
    for row in rows:
        by_condition.setdefault(row["condition"], []).append(row["prompt_tokens"] or 0)
    # the retrieved context really goes into the prompt
    assert sum(by_condition["base+ctx"]) > sum(by_condition["base"])
    second_rows = (fixture_repo["tmp"] / "out2" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(r)["prediction"] for r in second_rows] == [r["prediction"] for r in rows]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_old_condition_names_still_work(fixture_repo: dict) -> None:
    config = _config(
        fixture_repo, fixture_repo["tmp"] / "unused", conditions=["ft+ctx", "other+ctx"]
    )
    validate(config)
    assert config.conditions == ["repo+ctx", "other-repo+ctx"]


def _one_line_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run `repotune eval` as a user would, in its own process (llama.cpp's loader threads and
    log callback make in-process stderr capture order-dependent), and return its error line."""
    del capsys  # the subprocess has its own stderr
    result = subprocess.run(
        [sys.executable, "-m", "repotune", "eval", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    err = result.stderr.strip()
    assert "Traceback" not in err
    # llama.cpp logs its own lines around ours; the error itself is exactly one line of ours.
    ours = [line for line in err.splitlines() if line.startswith("repotune eval")]
    assert len(ours) == 1, err
    assert ours[0].startswith("repotune eval: ")
    return ours[0]


def test_missing_adapter_is_a_clear_error(
    fixture_repo: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = fixture_repo["tmp"] / "nope" / "adapter.gguf"
    args = ["--repo", str(fixture_repo["repo"]), "--adapter", f"fixture={missing}", "--quiet"]
    err = _one_line_error(capsys, args)
    assert "adapter for 'fixture' not found" in err and str(missing) in err


def test_broken_adapter_is_a_clear_error(
    fixture_repo: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = fixture_repo["tmp"] / "broken.gguf"
    broken.write_bytes(b"GGUF but not really")
    args = ["--repo", str(fixture_repo["repo"]), "--adapter", f"fixture={broken}"]
    args += ["--conditions", "ft", "--line-tasks", "1", "--span-tasks", "0", "--api-tasks", "0"]
    args += ["--quiet", "--out", str(fixture_repo["tmp"] / "out-broken")]
    for key, value in (
        ("train.test_share", "0.4"),
        ("index.index_dir", fixture_repo["overrides"]["index"]["index_dir"]),
    ):
        args += ["--set", f"{key}={value}"]
    err = _one_line_error(capsys, args)
    assert "broken.gguf" in err


def test_unavailable_package_is_a_clear_error(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PIP_RETRIES", "0")  # offline: fail at once instead of retrying
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "10")
    err = _one_line_error(capsys, ["--repo", "repotune-no-such-package-zz==0.0.1", "--quiet"])
    assert "repotune-no-such-package-zz==0.0.1 is not available" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repo", "no-such-folder-or-pin"], "neither a folder nor a pinned package"),
        (["--repo", "name=="], "pinned package NAME==VERSION"),
        (["--repo", ".", "--conditions", "base,best"], "unknown condition"),
        (
            [
                *("--repo", ".", "--question-tasks", "0"),
                *(
                    "--line-tasks",
                    "0",
                    "--midword-tasks",
                    "0",
                    "--span-tasks",
                    "0",
                    "--api-tasks",
                    "0",
                ),
            ],
            "no tasks",
        ),
        (["--repo", ".", "--adapter", "no-equals-sign"], "LABEL=PATH"),
        (["--repo", ".", "--time-budget", "0"], "--time-budget"),
        (["--repo", ".", "--time-budget", "nan"], "--time-budget"),  # it meant no budget
        (["--repo", ".", "--train-steps", "0"], "--train-steps"),
        (["--repo", ".", "--bootstrap", "0"], "--bootstrap"),  # a traceback after all the work
        (["--repo", ".", "--set", "completion.context_tokens=-5"], "context_tokens"),
    ],
)
def test_bad_arguments_are_clear_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in _one_line_error(capsys, [*args, "--quiet"])


def test_fine_tunes_start_from_the_init_adapter_and_it_keys_the_cache(tmp_path: Path) -> None:
    """ensure_adapter warm-starts from train.init_adapter (as `repotune train finetune` does);
    a different start adapter or time budget is a different cached adapter."""
    from repotune.training.eval.adapters import Prepared, adapter_key
    from repotune.training.eval.config import eval_settings
    from repotune.training.eval.corpora import Repo
    from repotune.training.export.warm_start import init_adapter_path

    start = tmp_path / "start.gguf"
    start.write_bytes(b"not really an adapter, only its checksum matters here")
    fresh = eval_settings({"train": {"init_adapter": "none"}})
    warm = eval_settings({"train": {"init_adapter": str(start)}})
    other_base = eval_settings({"model": {"generator": str(start)}})
    assert init_adapter_path(fresh) is None
    assert init_adapter_path(warm) == start
    assert init_adapter_path(other_base) is None  # the default adapter fits the default base only
    prepared = Prepared(Repo("r", "r", tmp_path, False), [], "digest")
    config = EvalConfig(repos=["r"])
    keys = {adapter_key(prepared, s, config) for s in (fresh, warm)}
    config.time_budget_min = 30
    keys.add(adapter_key(prepared, warm, config))
    assert len(keys) == 3


def test_a_missing_default_adapter_fails_before_any_work(
    fixture_repo: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import repotune.server.models as models
    from repotune.server.models import ModelError

    missing = fixture_repo["tmp"] / "missing-default.gguf"
    monkeypatch.setattr(models, "default_adapter_path", lambda: missing)
    out = fixture_repo["tmp"] / "out-default"
    with pytest.raises(ModelError, match="default adapter is missing"):
        run(_config(fixture_repo, out, conditions=["base", "default+ctx"]))
    assert not out.exists()


def test_previous_context_is_the_task_befores_when_it_holds_the_tasks_top_snippet() -> None:
    from repotune.server.completion.context import ContextSnippet
    from repotune.server.config import Settings
    from repotune.training.eval.contexts import Retrieved, previous_contexts
    from repotune.training.eval.tasks import Task

    def task(path: str, line: int) -> Task:
        return Task("t", "line", "line", path, "python", 0, 1, "x\n" * (line - 1), "", "y")

    near = ContextSnippet("a.py", "def f():\n    pass\n", start_line=40)  # a.py:40-41
    far = ContextSnippet("a.py", "def g():\n    pass\n", start_line=1)
    other = ContextSnippet("b.py", "def h():\n    pass\n", start_line=40)
    elsewhere = ContextSnippet("c.py", "z = 1\n")
    unrelated = ContextSnippet("d.py", "w = 2\n")
    tasks = [task("b.py", 41), task("a.py", 90), task("a.py", 42), task("b.py", 80)]
    contexts = [
        Retrieved([unrelated], 1.0, None),
        Retrieved([near, other], 1.0, None),
        Retrieved([other, near], 1.0, None),
        Retrieved([far, elsewhere], 1.0, None),
    ]
    got, kept = previous_contexts(tasks, contexts, Settings())
    # The first task's "previous" is the last's ([far, elsewhere]): it lacks the task's top
    # snippet, so the task has its own.
    assert got[0] is contexts[0]
    assert got[1] is contexts[1]  # [unrelated] lacks a.py:40-41
    # [near, other] holds task 3's top snippet (other); near shows its hole (a.py:42) and goes.
    assert got[2].snippets == [other]
    # Task 4's top is far; task 3's retrieved snippets (its own block, adopted) lack it.
    assert got[3] is contexts[3]
    assert kept == 1


def test_the_evaluation_scores_the_full_prompt_unless_told_to_use_quick_start() -> None:
    """Quick start's "auto" default must not turn a slow or busy machine's evaluation into one
    of the short prompt's answers."""
    from repotune.server.config import load_settings
    from repotune.training.eval.config import eval_settings

    assert load_settings(None).completion.quick_start == "auto"
    assert eval_settings({}).completion.quick_start is False
    asked = eval_settings({"completion": {"quick_start": True}})
    assert asked.completion.quick_start is True
