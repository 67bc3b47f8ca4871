"""`repotune train` commands given what they cannot use: one clear line, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from repotune.training.cli import app
from typer.testing import CliRunner


@pytest.mark.parametrize(
    ("record", "error"),
    [
        (None, "is not a training run (no run.json)"),
        ("{not json", "run.json cannot be read"),
        ("[1]", "is not a training run's record (no base_reference, base_sha256, data_dir)"),
    ],
)
def test_cli_export_of_a_folder_that_is_not_a_run_is_one_line(
    tmp_path: Path, record: str | None, error: str
) -> None:
    """It was a FileNotFoundError / JSONDecodeError traceback."""
    if record is not None:
        (tmp_path / "run.json").write_text(record)
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "a.gguf")])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert error in result.output


@pytest.mark.parametrize(
    "limit",
    [
        ["--time-budget", "0"],
        ["--time-budget", "nan"],
        ["--time-budget", "-1"],
        ["--max-steps", "0"],
    ],
)
def test_a_limit_that_would_not_limit_is_refused_before_any_work(
    tmp_path: Path, limit: list[str]
) -> None:
    """`--time-budget 0` or nan meant no budget at all (the run trained to the end); these are
    refused before the dataset is read or a model loads."""
    result = CliRunner().invoke(app, ["finetune", str(tmp_path / "missing"), *limit])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--" in result.output


def test_an_output_that_cannot_be_written_is_one_line_before_any_work(tmp_path: Path) -> None:
    """A file named as the dataset or run folder (or a folder as the adapter file) was a
    FileExistsError traceback, for the dataset once the repository had been read."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "app.py").write_text("def double(x):\n    return x * 2\n")
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "folder.gguf").mkdir()
    for args, error in (
        (["dataset", str(repo), "--out", str(tmp_path / "file")], "is not a folder"),
        (["dataset", str(repo), "--out", str(tmp_path / "file" / "sub")], "is not a folder"),
        (["finetune", str(repo), "--out", str(tmp_path / "file")], "is not a folder"),
        (["export", str(repo), "--out", str(tmp_path / "folder.gguf")], "is a folder"),
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), args
        assert error in result.output, (args, result.output)
    assert (tmp_path / "file").read_text() == "not a folder"
