"""A per-repository fine-tune that never beat its starting adapter is reported as such: its
repo+ctx condition measures no per-repository training (pure logic, no model)."""

from __future__ import annotations

import json
from pathlib import Path

from repotune.training.eval.adapters import training_info, training_warning
from repotune.training.eval.report import adapter_lines
from repotune.training.finetune import FinetuneResult, kept_start_warning


def result(best_step: int, history: list[dict[str, float]]) -> FinetuneResult:
    return FinetuneResult(
        run_dir=Path("run"),
        adapter_dir=Path("run/adapter"),
        steps=14,
        train_tokens=112_261,
        tokens_per_s=73.1,
        initial_val_loss=history[0]["val_loss"],
        best_val_loss=min(h["val_loss"] for h in history),
        best_step=best_step,
        stopped_early=False,
        history=history,
        out_of_time=True,
    )


KEPT = result(0, [{"step": 0, "val_loss": 0.7164}, {"step": 14, "val_loss": 0.7179}])
TRAINED = result(14, [{"step": 0, "val_loss": 0.7164}, {"step": 14, "val_loss": 0.7001}])


def test_a_run_whose_best_is_step_0_kept_its_starting_adapter() -> None:
    assert KEPT.kept_start and KEPT.to_json()["kept_start"]
    assert not TRAINED.kept_start and not TRAINED.to_json()["kept_start"]
    warning = kept_start_warning(KEPT)
    assert warning is not None and "0.7164" in warning and "0.7179 at step 14" in warning
    assert kept_start_warning(TRAINED) is None


def test_the_eval_report_says_which_adapter_repo_ctx_ran() -> None:
    kept = adapter_lines({"finetune": KEPT.to_json()})
    assert "14 steps, 112,261 training tokens" in kept[-1]
    assert "best 0.7164 at step 0" in kept[-1] and "Warning" in kept[-1]
    trained = adapter_lines({"finetune": TRAINED.to_json()})
    assert "best 0.7001 at step 14" in trained[-1] and "Warning" not in trained[-1]
    assert adapter_lines({"path": "x.gguf", "trained_here": False}) == []
    assert adapter_lines(None) == []


def test_a_given_adapter_brings_what_its_cache_folder_recorded(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"GGUF")
    assert training_info(adapter) == {}
    (tmp_path / "done.json").write_text(json.dumps({"finetune": KEPT.to_json()}))
    info = training_info(adapter)
    assert training_warning(info) is not None
    (tmp_path / "done.json").write_text("{not json")
    assert training_info(adapter) == {}
