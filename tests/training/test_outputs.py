"""A repository cannot make `repotune train` write through a symlink it committed (the default
output places below `.repotune/` are refused when a link lies on the way, beside or below them)
nor run a command it configured for git. Real files, links and git repositories in a temp dir;
the real `repotune train` commands (CliRunner, in process)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import unblock, within
from repotune.training.base import TrainError
from repotune.training.cli import app
from repotune.training.outputs import default_output, repository_output, symlink_on_the_way
from typer.testing import CliRunner

MODULE = (
    "def scale(x):\n    y = x * {n}\n    return y + {n}\n\n\ndef shift(a, b):\n    return a - b\n"
)


def make_repo(root: Path) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for n in range(6):
        (root / f"mod{n}.py").write_text(MODULE.format(n=n))
    return root


def test_a_link_on_the_way_or_below_is_found(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert symlink_on_the_way(repo, repo / ".repotune" / "dataset") is None  # nothing there yet
    (repo / ".repotune" / "dataset" / "deep").mkdir(parents=True)
    (repo / ".repotune" / "dataset" / "deep" / "train.jsonl").write_text("{}\n")
    assert repository_output(repo, "dataset") == repo / ".repotune" / "dataset"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo / ".repotune" / "dataset" / "deep" / "linked").symlink_to(elsewhere)  # not entered
    assert symlink_on_the_way(repo, repo / ".repotune" / "dataset") == (
        repo / ".repotune" / "dataset" / "deep" / "linked"
    )
    assert symlink_on_the_way(repo, repo / ".repotune" / "run") is None  # another output is fine
    # beside an output, where temporary files get predictable names (a repository can commit a
    # link for every process id)
    (repo / ".repotune" / "adapter.gguf.tmp4242").symlink_to(elsewhere / "x")
    assert symlink_on_the_way(repo, repo / ".repotune" / "adapter.gguf") == (
        repo / ".repotune" / "adapter.gguf.tmp4242"
    )
    (repo / ".repotune" / "adapter.gguf.tmp4242").unlink()
    (repo / ".repotune" / "run").symlink_to(elsewhere)
    with pytest.raises(TrainError, match=r"\.repotune/run is a symlink \(to .*elsewhere\)"):
        default_output(repo, ".repotune", "run")


def test_train_never_writes_through_a_link_the_repository_committed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    outputs = repo / ".repotune" / "dataset"
    outputs.mkdir(parents=True)
    (outputs / "stats.json").symlink_to(victim)
    runner = CliRunner()
    refused = runner.invoke(app, ["dataset", str(repo), "--set", "index.dense=false"])
    assert refused.exit_code == 1
    assert "stats.json is a symlink" in refused.output and "--out" in refused.output
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in outputs.iterdir()) == ["stats.json"]  # nothing written
    # A linked run folder stops `train all` before its first step writes anything.
    (outputs / "stats.json").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo / ".repotune" / "run").symlink_to(elsewhere)
    refused = runner.invoke(app, ["all", str(repo), "--max-steps", "1"])
    assert refused.exit_code == 1 and ".repotune/run is a symlink" in refused.output
    assert not any(outputs.iterdir()) and not any(elsewhere.iterdir())
    # Without links the same command writes its dataset where it always did.
    (repo / ".repotune" / "run").unlink()
    built = runner.invoke(app, ["dataset", str(repo), "--set", "index.dense=false"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout.strip().splitlines()[-1])["dataset"] == str(outputs)
    assert (outputs / "stats.json").is_file() and victim.read_text() == "precious\n"


def test_the_dataset_source_runs_nothing_the_repository_configures(tmp_path: Path) -> None:
    """`git status` would run the repository's core.fsmonitor command (a repository unpacked with
    its .git folder chooses it); the commit and whether tracked files changed are read without."""
    from repotune.training.data.build import repository_source

    repo = make_repo(tmp_path / "repo")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    ran = tmp_path / "fsmonitor-ran"
    subprocess.run([*git, "config", "core.fsmonitor", f"touch {ran}; echo"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    source = repository_source(repo)
    assert source["commit"] == head.strip() and source["dirty"] is False
    (repo / "mod1.py").write_text("changed = True\n")
    assert repository_source(repo)["dirty"] is True
    (repo / "mod1.py").write_text(MODULE.format(n=1))
    (repo / "mod2.py").unlink()
    assert repository_source(repo)["dirty"] is True
    os.mkfifo(repo / "mod2.py")  # compared without waiting on it, as a changed file
    try:
        assert within(20, lambda: repository_source(repo))["dirty"] is True
    finally:
        unblock(repo / "mod2.py")
    (repo / "mod2.py").unlink()
    (repo / "mod2.py").symlink_to("/dev/zero")  # never read through a link
    assert within(20, lambda: repository_source(repo))["dirty"] is True
    assert not ran.exists()
