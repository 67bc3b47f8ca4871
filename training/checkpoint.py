"""A run's state on disk: its record (run.json) and its resumable checkpoint, written atomically
(a crash leaves the previous one), read back with a clear error when missing or damaged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from repotune.server.untrusted_files import read_regular_file
from repotune.training.base import TrainError

ADAPTER_DIR = "adapter"  # the best adapter (peft format) inside a run directory
CHECKPOINT_DIR = "checkpoint"  # the latest resumable state
STATE_FILE = "trainer_state.pt"
RUN_FILE = "run.json"  # what the run was trained on, written at its start
RUN_KEYS = ("base_reference", "base_sha256", "data_dir")  # what export and publish read
RUN_FILE_MAX_BYTES = 16 << 20


def atomic_dir(target: Path, write: Any) -> None:
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(run_dir: Path, model: Any, state: dict[str, Any]) -> None:
    import torch

    def write(folder: Path) -> None:
        model.save_pretrained(folder / ADAPTER_DIR)
        torch.save(state, folder / STATE_FILE)
        summary = {k: v for k, v in state.items() if isinstance(v, int | float | str)}
        (folder / "state.json").write_text(json.dumps(summary, indent=2))

    atomic_dir(run_dir / CHECKPOINT_DIR, write)


def load_checkpoint(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The saved trainer state and adapter weights; TrainError when missing or damaged."""
    import torch
    from safetensors.torch import load_file

    folder = run_dir / CHECKPOINT_DIR
    hint = f"delete {folder} (or the whole run folder) and start again without --resume"
    if not (folder / STATE_FILE).is_file():
        raise TrainError(f"nothing to resume: no checkpoint in {run_dir}")
    try:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
        weights = load_file(str(folder / ADAPTER_DIR / "adapter_model.safetensors"))
    except Exception as exc:  # torch/safetensors raise many types on damaged files
        raise TrainError(f"the checkpoint in {folder} is corrupt ({exc}); {hint}") from None
    if not isinstance(state, dict) or "step" not in state or "optimizer" not in state:
        raise TrainError(f"the checkpoint in {folder} is incomplete; {hint}")
    return state, weights


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run folder's run.json; TrainError when the folder holds no readable run."""
    info_path = Path(run_dir) / RUN_FILE
    if not info_path.is_file():
        raise TrainError(f"{run_dir} is not a training run (no {RUN_FILE})")
    try:  # a regular file of sane size: a run folder may come with a repository
        info = json.loads(read_regular_file(info_path, RUN_FILE_MAX_BYTES))
    except (OSError, ValueError) as exc:
        raise TrainError(f"{info_path} cannot be read: {exc}") from None
    missing = [key for key in RUN_KEYS if not isinstance(info, dict) or key not in info]
    if missing:
        raise TrainError(f"{info_path} is not a training run's record (no {', '.join(missing)})")
    return info
