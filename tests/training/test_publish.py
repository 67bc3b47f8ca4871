"""Publishing: the folder and card it builds, and the Hub calls it makes (network mocked)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from repotune.server.models import parse_hf_reference, sha256_file
from repotune.training.base import TrainError
from repotune.training.publish import ADAPTER_FILE, build_folder, model_card, publish


def fake_run(tmp: Path) -> tuple[Path, Path]:
    data = tmp / "dataset"
    data.mkdir()
    (data / "stats.json").write_text(
        json.dumps(
            {
                "files": {"train": 4, "validation": 1, "test": 1},
                "examples": {"train": {"fim": 30, "total": 34}, "validation": {"total": 6}},
                "tokens": {"train": {"prompt": 9000, "completion": 800}},
                "context_hit_rate": {"train": 0.25, "validation": None},
                "spans": {"block": 3},
                "context_modes": {"retrieved": 30},
            }
        )
    )
    (data / "source.json").write_text(json.dumps({"name": "demo", "commit": "abc123"}))
    run = tmp / "run"
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps(
            {
                "base_reference": "default",
                "base_sha256": "f" * 64,
                "base_gguf": "/cache/gemma-3-270m-q4_k_m.gguf",
                "data_dir": str(data),
                "train": {"lora_r": 16},
            }
        )
    )
    (run / "metrics.json").write_text(
        json.dumps({"steps": 6, "initial_val_loss": 1.9, "best_val_loss": 1.4, "tokens_per_s": 88})
    )
    (run / "export.json").write_text(
        json.dumps(
            {
                "parity": [
                    {
                        "base": "/c/base-f32.gguf",
                        "top1_agreement": 0.999,
                        "max_abs_error": 0.06,
                        "delta_relative_error": 0.004,
                    }
                ]
            }
        )
    )
    adapter = tmp / "adapter.gguf"
    adapter.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    return adapter, run


def test_folder_and_card(tmp_path: Path) -> None:
    adapter, run = fake_run(tmp_path)
    folder = build_folder(adapter, "me/demo-adapter", tmp_path / "stage", run)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [
            ADAPTER_FILE,
            "README.md",
            "training_run.json",
            "metrics.json",
            "export.json",
            "dataset_stats.json",
        ]
    )
    assert [p.name for p in folder.glob("*.gguf")] == [ADAPTER_FILE]  # hf:ORG/REPO resolves it
    card = (folder / "README.md").read_text()
    assert "f" * 64 in card and "abc123" in card and sha256_file(adapter) in card
    assert "| train | 4 | 34 | 9000 | 800 | 0.2500 |" in card
    assert "| validation loss best | 1.4000 |" in card
    assert "base-f32.gguf | 0.9990" in card
    assert '"repotune.adapter": "hf:me/demo-adapter"' in card  # set by the user, not the repo
    assert "--set model.adapter=hf:me/demo-adapter" in card
    assert parse_hf_reference("hf:me/demo-adapter") == ("me/demo-adapter", None)


def test_card_without_run_information(tmp_path: Path) -> None:
    card = model_card("me/x", "0" * 64, None)
    assert "n/a" in card and "me/x" in card


def test_publish_makes_a_private_repo_and_uploads_the_folder(tmp_path: Path) -> None:
    adapter, run = fake_run(tmp_path)
    api = mock.Mock()
    reference = publish(adapter, "me/demo-adapter", tmp_path / "stage", run, api=api)
    assert reference == "hf:me/demo-adapter"
    api.create_repo.assert_called_once_with(
        repo_id="me/demo-adapter", repo_type="model", private=True, exist_ok=True
    )
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["repo_id"] == "me/demo-adapter"
    assert Path(kwargs["folder_path"]) == tmp_path / "stage"


def test_publish_errors(tmp_path: Path) -> None:
    adapter, run = fake_run(tmp_path)
    with pytest.raises(TrainError, match="ORG/NAME"):
        build_folder(adapter, "no-slash", tmp_path / "a", run)
    with pytest.raises(TrainError, match="adapter not found"):
        build_folder(tmp_path / "missing.gguf", "me/x", tmp_path / "b", run)
    (tmp_path / "not-a-run").mkdir()
    with pytest.raises(TrainError, match="not a training run"):  # its card said "unknown"
        build_folder(adapter, "me/x", tmp_path / "d", tmp_path / "not-a-run")
    assert not (tmp_path / "d").exists()
    api = mock.Mock()
    api.create_repo.side_effect = OSError("network unreachable")
    with pytest.raises(TrainError, match="network unreachable"):
        publish(adapter, "me/x", tmp_path / "c", run, api=api)


def test_cli_dry_run(tmp_path: Path) -> None:
    from repotune.training.cli import app
    from typer.testing import CliRunner

    adapter, run = fake_run(tmp_path)
    stage = tmp_path / "stage"
    result = CliRunner().invoke(
        app,
        [
            "publish",
            str(adapter),
            "--repo",
            "me/y",
            "--run",
            str(run),
            "--folder",
            str(stage),
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["uploaded"] is False
    assert (stage / ADAPTER_FILE).is_file()


def test_cli_set_option_reports_bad_settings(tmp_path: Path) -> None:
    from repotune.training.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["dataset", str(tmp_path), "--set", "train.learning_rate=-1"])
    assert result.exit_code == 1
    assert "learning_rate" in result.output
