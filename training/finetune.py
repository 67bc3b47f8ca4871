"""LoRA fine-tuning (transformers + peft) on the base weights the server runs.

Why these choices:
- Loss on the completion tokens only: the prompt (retrieved context, prefix, suffix) is given at
  serving time, so learning to reproduce it would only waste capacity.
- Length bucketing: micro-batches hold examples of similar length, so little compute goes to
  padding, without packing's cross-example attention.
- Validation loss at intervals, early stopping and best-adapter keeping, because a small
  repository is over-fitted within an epoch or two.
- Resumable: the latest checkpoint (adapter, optimizer, scheduler, data position, RNG) is written
  atomically at every evaluation, so an interrupted run loses at most `eval_every` steps.
- `accelerate` drives devices: the same code runs on a CPU, one GPU, or many GPUs under
  `accelerate launch` (DDP; FSDP/DeepSpeed through an accelerate config file). With N processes
  each optimizer step draws the next accumulation x N micro-batches of the one seeded order and
  rank r trains on every N-th of them (so `batch_size` stays the global batch and the data order
  does not depend on N); validation is sharded the same way and its loss summed over ranks, so
  every rank sees the same loss and takes the same early-stopping decision; only the main
  process writes run.json, checkpoints, the adapter, metrics and the progress bar.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from repotune.server.config import Settings, TrainSettings
from repotune.training.base import BaseWeights, TrainError, load_tokenizer, prepare_base
from repotune.training.batches import (
    IGNORE_INDEX,
    Encoded,
    bucketed_batches,
    collate,
    encode_all,
    healing_vocabulary,
    read_examples,
)
from repotune.training.checkpoint import (
    ADAPTER_DIR,
    CHECKPOINT_DIR,
    RUN_FILE,
    atomic_dir,
    load_checkpoint,
    read_run,
    save_checkpoint,
)
from repotune.training.data.build import stale_redaction
from repotune.training.lora import (
    accelerator_and_threads,
    lora_model,
    optimizer_and_schedule,
    uses_gradient_checkpointing,
)
from repotune.training.loss import completion_loss_sums, evaluate_loss

METRICS_FILE = "metrics.json"


@dataclass
class FinetuneResult:
    run_dir: Path
    adapter_dir: Path
    steps: int
    train_tokens: int
    tokens_per_s: float
    initial_val_loss: float | None
    best_val_loss: float | None
    best_step: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    out_of_time: bool = False  # stopped by the time budget

    @property
    def kept_start(self) -> bool:
        """Training ran, but no validation pass beat step 0's: the adapter kept is the one
        training started from (the initial adapter, or none), not a fine-tuned one."""
        return self.steps > 0 and self.best_step == 0 and self.best_val_loss is not None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["adapter_dir"] = str(self.adapter_dir)
        data["kept_start"] = self.kept_start
        return data


def kept_start_warning(result: FinetuneResult) -> str | None:
    """What to tell the user when the run kept its starting adapter (None otherwise)."""
    if not result.kept_start:
        return None
    last = result.history[-1]["val_loss"] if result.history else None
    after = f", {last:.4f} at step {result.steps}" if last is not None else ""
    return (
        f"validation loss never fell below step 0's ({result.best_val_loss:.4f}{after}): "
        "the adapter kept is the one training started from, not a fine-tuned one; train "
        "longer, or with more data or another learning rate"
    )


# --------------------------------------------------------------------------- training


def _total_steps(n_batches: int, accumulation: int, epochs: float) -> int:
    per_epoch = max(1, math.ceil(n_batches / accumulation))
    return max(1, math.ceil(per_epoch * epochs))


def _stream(batches_for_epoch: Any, start_epoch: int, start_index: int) -> Iterator[Any]:
    epoch, index = start_epoch, start_index
    while True:
        batches = batches_for_epoch(epoch)
        for position in range(index, len(batches)):
            yield epoch, position, batches[position]
        epoch, index = epoch + 1, 0


@dataclass
class Run:
    """What `setup` prepares and `fit` and `validate` share: one fine-tune in progress."""

    run_dir: Path
    train: TrainSettings
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    params: list[Any]
    train_data: list[Encoded]
    val_data: list[Encoded]
    pad_id: int
    accumulation: int  # micro-batches per rank per optimizer step
    total_steps: int
    threads: int
    state: dict[str, Any]  # what a checkpoint restores: step, data position, losses, timing


def finetune(
    data_dir: Path,
    run_dir: Path,
    settings: Settings,
    base_reference: str | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    time_budget_s: float | None = None,
    init_adapter: Path | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter on `data_dir/train.jsonl`, validating on `validation.jsonl`.

    `init_adapter` (a GGUF LoRA adapter, e.g. the shipped default) is where the weights start;
    `time_budget_s` stops the run (after a last validation, best adapter kept) once this
    invocation has trained that long.
    """
    if max_steps is not None and max_steps < 1:
        raise TrainError(f"max_steps must be at least 1, not {max_steps}")
    # 0 validates and saves without a step (warm-start checks); nan would never run out
    if time_budget_s is not None and not (math.isfinite(time_budget_s) and time_budget_s >= 0):
        raise TrainError(f"the time budget must be a number of seconds, not {time_budget_s}")
    run = setup(data_dir, Path(run_dir), settings, base_reference, resume, max_steps, init_adapter)
    if run.state["step"] == 0 and not run.state["history"]:
        validate(run)  # the base model's validation loss: the bar the adapter must clear
        checkpoint(run)
    stopped_early, out_of_time = fit(run, progress, time_budget_s)
    return finish(run, stopped_early, out_of_time)


def setup(
    data_dir: Path,
    run_dir: Path,
    settings: Settings,
    base_reference: str | None,
    resume: bool,
    max_steps: int | None,
    init_adapter: Path | None,
) -> Run:
    """Data, base with LoRA, optimizer and schedule; on resume, restored from the checkpoint."""
    import torch

    cfg = settings.train
    if (stale := stale_redaction(Path(data_dir))) is not None:
        raise TrainError(stale)
    reference = _run_reference(run_dir, settings, base_reference, resume)
    train_examples = read_examples(Path(data_dir) / "train.jsonl")
    val_examples = read_examples(Path(data_dir) / "validation.jsonl")
    if not train_examples:
        raise TrainError(f"{data_dir}/train.jsonl has no examples")
    accelerator, threads = accelerator_and_threads(settings)
    world = accelerator.num_processes
    torch.manual_seed(cfg.seed)
    base = prepare_base(reference)
    tokenizer = load_tokenizer(base)
    vocabulary = healing_vocabulary(base, settings)  # prompts as the engine will serve them
    train_data = encode_all(tokenizer, train_examples, cfg.max_seq_tokens, vocabulary)
    val_pool = encode_all(tokenizer, val_examples, cfg.max_seq_tokens, vocabulary)
    val_data = random.Random(cfg.seed).sample(val_pool, min(len(val_pool), cfg.eval_max_examples))
    if not train_data:
        raise TrainError("no training example has a non-empty completion")
    checkpointing = uses_gradient_checkpointing(cfg, accelerator.device.type == "cpu")
    model, warm_start = lora_model(base, cfg, None if resume else init_adapter, checkpointing)
    # batch_size is the global batch: per rank, accumulation micro-batches of micro_batch_size.
    accumulation = max(1, cfg.batch_size // (cfg.micro_batch_size * world))
    lengths = [item.length for item in train_data]
    n_batches = len(bucketed_batches(lengths, cfg.micro_batch_size, cfg.seed, 0))
    total_steps = _total_steps(n_batches, accumulation * world, cfg.epochs)
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = optimizer_and_schedule(params, cfg, total_steps)
    state = _fresh_state()
    if resume:
        _restore(run_dir, model, optimizer, scheduler, state)
    elif accelerator.is_main_process:
        run_info = {
            "base_reference": reference,
            "base_sha256": base.sha256,
            "base_gguf": str(base.gguf_path) if base.gguf_path else None,
            "data_dir": str(Path(data_dir).resolve()),
            "train": cfg.model_dump(),
            "train_examples": len(train_data),
            "validation_examples": len(val_data),
            "init_adapter": warm_start,
            "processes": world,
            "gradient_checkpointing": checkpointing,
            "token_healing": vocabulary is not None,
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_FILE).write_text(json.dumps(run_info, indent=2))
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    return Run(
        run_dir=run_dir,
        train=cfg,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        params=params,
        train_data=train_data,
        val_data=val_data,
        pad_id=int(tokenizer.pad_token_id),
        accumulation=accumulation,
        total_steps=total_steps,
        threads=threads,
        state=state,
    )


def _run_reference(
    run_dir: Path, settings: Settings, base_reference: str | None, resume: bool
) -> str:
    """The base to train: as asked, else (resuming) the run's own, else the served generator."""
    if not resume and (run_dir / CHECKPOINT_DIR).exists():
        raise TrainError(f"{run_dir} holds a previous run: pass --resume, or choose a new --out")
    reference = base_reference or settings.model.generator
    if resume and base_reference is None and (run_dir / RUN_FILE).is_file():
        reference = read_run(run_dir)["base_reference"]
    return reference


def _fresh_state() -> dict[str, Any]:
    return {
        "step": 0,
        "epoch": 0,
        "batch_index": 0,
        "best_val_loss": None,
        "best_step": 0,
        "initial_val_loss": None,
        "bad_evals": 0,
        "train_tokens": 0,
        "train_seconds": 0.0,
        "history": [],
    }


def _restore(
    run_dir: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]
) -> None:
    """Continue exactly where the checkpoint left off: weights, optimizer, schedule, RNGs, data."""
    import torch
    from peft import set_peft_model_state_dict

    saved, weights = load_checkpoint(run_dir)
    set_peft_model_state_dict(model, weights)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    random.setstate(saved["python_rng"])
    torch.set_rng_state(saved["torch_rng"])
    state.update({k: v for k, v in saved.items() if k in state})


def fit(run: Run, progress: bool, time_budget_s: float | None) -> tuple[bool, bool]:
    """Steps until the last, early stopping or the time budget: (stopped early, out of time)."""
    from tqdm import tqdm

    cfg, state = run.train, run.state
    lengths = [item.length for item in run.train_data]

    def batches_for_epoch(epoch: int) -> list[list[int]]:
        return bucketed_batches(lengths, cfg.micro_batch_size, cfg.seed, epoch)

    stream = _stream(batches_for_epoch, state["epoch"], state["batch_index"])
    bar = tqdm(
        total=run.total_steps,
        initial=state["step"],
        desc="finetune",
        unit="step",
        disable=not progress or not run.accelerator.is_main_process,
    )
    budget_start = time.monotonic()
    try:
        while state["step"] < run.total_steps:
            if time_budget_s is not None and time.monotonic() - budget_start >= time_budget_s:
                if not state["history"] or state["history"][-1]["step"] != state["step"]:
                    validate(run)  # the budget ends the run as the last step would: validated
                    checkpoint(run)
                return False, True
            started = time.perf_counter()
            step_loss, step_tokens = train_step(run, stream)
            state["train_tokens"] += step_tokens
            state["train_seconds"] += time.perf_counter() - started
            rate = state["train_tokens"] / max(state["train_seconds"], 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{rate:.0f}")
            if state["step"] % cfg.eval_every == 0 or state["step"] == run.total_steps:
                stopped_early = validate(run)
                checkpoint(run)
                if stopped_early:
                    return True, False
        return False, False
    finally:
        bar.close()


def train_step(run: Run, stream: Iterator[Any]) -> tuple[float, int]:
    """One optimizer step over the next global batch: (mean completion loss, tokens seen)."""
    import torch

    accelerator, model = run.accelerator, run.model
    world, rank = accelerator.num_processes, accelerator.process_index
    run.optimizer.zero_grad(set_to_none=True)
    # Every rank draws the same global micro-batches and trains on its own share of them.
    micro = [next(stream) for _ in range(run.accumulation * world)]
    total_targets = sum(
        sum(1 for label in run.train_data[i].labels[1:] if label != IGNORE_INDEX)
        for _, _, indices in micro
        for i in indices
    )
    mine = micro[rank::world]
    step_loss, step_tokens = 0.0, 0
    for number, (_epoch, _position, indices) in enumerate(mine):
        batch = collate([run.train_data[i] for i in indices], run.pad_id)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        # Gradients are all-reduced (averaged) once, after the last micro-batch.
        sync = number == len(mine) - 1
        with contextlib.nullcontext() if sync else accelerator.no_sync(model):
            with accelerator.autocast():
                loss_sum, _ = completion_loss_sums(model, batch)
            # The mean over the whole global batch once DDP has averaged over the ranks.
            loss = loss_sum * world / max(total_targets, 1)
            accelerator.backward(loss)
        step_loss += float(loss.detach()) / world
        step_tokens += int(batch["attention_mask"].sum())
    if world > 1:
        local = torch.tensor([step_loss, float(step_tokens)], dtype=torch.float64)
        totals = accelerator.reduce(local.to(accelerator.device), "sum")
        step_loss, step_tokens = float(totals[0]), int(totals[1])
    accelerator.clip_grad_norm_(run.params, 1.0)
    run.optimizer.step()
    run.scheduler.step()
    last_epoch, last_position, _ = micro[-1]
    run.state.update(step=run.state["step"] + 1, epoch=last_epoch, batch_index=last_position + 1)
    return step_loss, step_tokens


def validate(run: Run) -> bool:
    """Validation loss; keep the best adapter; True when early-stopping patience is exhausted."""
    state, accelerator = run.state, run.accelerator
    if not run.val_data:
        if accelerator.is_main_process:
            save_best(run)
        return False
    loss = evaluate_loss(
        accelerator.unwrap_model(run.model),
        run.val_data,
        run.pad_id,
        accelerator.device,
        run.train.micro_batch_size,
        accelerator,
    )
    state["history"].append({"step": state["step"], "val_loss": loss})
    if state["initial_val_loss"] is None:
        state["initial_val_loss"] = loss
    best = state["best_val_loss"]
    if best is None or loss < best:
        state.update(best_val_loss=loss, best_step=state["step"], bad_evals=0)
        if accelerator.is_main_process:
            save_best(run)
    elif state["step"] > 0:
        state["bad_evals"] += 1
    return bool(state["bad_evals"] >= run.train.early_stopping_patience)


def save_best(run: Run) -> None:
    unwrapped = run.accelerator.unwrap_model(run.model)
    atomic_dir(run.run_dir / ADAPTER_DIR, lambda folder: unwrapped.save_pretrained(folder))


def checkpoint(run: Run) -> None:
    """The resumable state (main process only): adapter, optimizer, schedule, RNGs, position."""
    import torch

    if not run.accelerator.is_main_process:
        return
    snapshot = dict(run.state)
    snapshot.update(
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        python_rng=random.getstate(),
        torch_rng=torch.get_rng_state(),
    )
    save_checkpoint(run.run_dir, run.accelerator.unwrap_model(run.model), snapshot)


def finish(run: Run, stopped_early: bool, out_of_time: bool) -> FinetuneResult:
    """The result, and metrics.json beside the run; every rank waits until the files exist."""
    state, accelerator = run.state, run.accelerator
    if not (run.run_dir / ADAPTER_DIR).exists() and accelerator.is_main_process:
        save_best(run)
    result = FinetuneResult(
        run_dir=run.run_dir,
        adapter_dir=run.run_dir / ADAPTER_DIR,
        steps=state["step"],
        train_tokens=state["train_tokens"],
        tokens_per_s=state["train_tokens"] / max(state["train_seconds"], 1e-9),
        initial_val_loss=state["initial_val_loss"],
        best_val_loss=state["best_val_loss"],
        best_step=state["best_step"],
        stopped_early=stopped_early,
        history=list(state["history"]),
        out_of_time=out_of_time,
    )
    if accelerator.is_main_process:
        metrics = result.to_json() | {
            "threads": run.threads,
            "device": str(accelerator.device),
            "processes": accelerator.num_processes,
        }
        (run.run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    accelerator.wait_for_everyone()  # no rank exits (or reads the run) before the files exist
    return result


def base_for_run(run_dir: Path) -> BaseWeights:
    """The base weights a finished run was trained on (from its run.json)."""
    info = read_run(run_dir)
    base = prepare_base(info["base_reference"])
    if base.sha256 != info["base_sha256"]:
        raise TrainError(
            f"the base model '{info['base_reference']}' changed since {run_dir} was trained "
            f"(sha256 {base.sha256[:12]} != {info['base_sha256'][:12]})"
        )
    return base
