"""The model a fine-tune trains: the base with LoRA layers (warm-started from a GGUF adapter
when one is given), its optimizer and schedule, and the device and CPU threads accelerate gives
each process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from repotune.server.config import Settings, TrainSettings
from repotune.training.base import BaseWeights, TrainError, load_model


def lora_config(train: TrainSettings) -> Any:
    from peft import LoraConfig

    refused = {"embed_tokens", "lm_head"} & set(train.lora_target_modules)
    if refused:
        # llama.cpp adapters cannot touch the tied token embedding / output matrix.
        raise TrainError(f"LoRA on {sorted(refused)} is not supported (tied embeddings)")
    return LoraConfig(
        r=train.lora_r,
        lora_alpha=train.lora_alpha,
        lora_dropout=train.lora_dropout,
        target_modules=list(train.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def configure_threads(settings: Settings, processes: int = 1) -> int:
    """CPU threads per process: the cores are shared by `processes` local training processes."""
    import psutil
    import torch

    threads = settings.model.threads or psutil.cpu_count(logical=False) or 1
    threads = max(1, threads // max(1, processes))
    torch.set_num_threads(threads)
    return threads


def lora_model(
    base: BaseWeights, cfg: TrainSettings, init_adapter: Path | None, checkpointing: bool
) -> tuple[Any, dict[str, Any] | None]:
    """The base with fresh LoRA layers, warm-started from a GGUF adapter when one is given;
    `checkpointing` recomputes activations in the backward pass."""
    from peft import get_peft_model

    model = get_peft_model(load_model(base), lora_config(cfg))
    warm_start = None
    if init_adapter is not None:
        from repotune.training.export.warm_start import load_gguf_adapter

        if base.gguf_path is not None:  # the server's check: its reason beats a shape mismatch
            _check_fits(Path(init_adapter), base.gguf_path)
        warm_start = load_gguf_adapter(model, Path(init_adapter))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model, warm_start


def _check_fits(adapter: Path, base_gguf: Path) -> None:
    from repotune.server.adapter_fit import AdapterMismatch, check_adapter_fits

    try:
        check_adapter_fits(adapter, base_gguf)
    except AdapterMismatch as exc:
        raise TrainError(f"{adapter} cannot start this run: {exc}") from None


def optimizer_and_schedule(
    params: list[Any], cfg: TrainSettings, total_steps: int
) -> tuple[Any, Any]:
    """AdamW (no weight decay) with a linear warmup and decay over `total_steps`."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    warmup = max(1, int(total_steps * cfg.warmup_ratio)) if total_steps > 1 else 0
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def accelerator_and_threads(settings: Settings) -> tuple[Any, int]:
    """accelerate on the GPU (bf16 where it can) or the CPU, and the CPU threads per process."""
    import torch
    from accelerate import Accelerator

    on_gpu = torch.cuda.is_available()
    accelerator = Accelerator(
        mixed_precision="bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no",
        cpu=not on_gpu,
    )
    local = 1 if on_gpu else int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    return accelerator, configure_threads(settings, local)


def uses_gradient_checkpointing(train: TrainSettings, on_cpu: bool) -> bool:
    """`train.gradient_checkpointing`, with 'auto' resolved: off on the CPU, where recomputing
    every layer's activations costs about a third more compute per step and memory is ample;
    on for an accelerator, whose memory bounds the batch."""
    if train.gradient_checkpointing == "auto":
        return not on_cpu
    return bool(train.gradient_checkpointing)
