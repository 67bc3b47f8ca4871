"""The training objective: next-token loss on completion tokens only (the prompt is given at
serving time), summed exactly over micro-batches and, with several processes, over ranks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from repotune.training.batches import IGNORE_INDEX, Encoded, collate


def completion_loss_sums(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed next-token loss over completion tokens, and their count (for exact averages)."""
    import torch
    import torch.nn.functional as F

    # Only positions that predict a completion token need logits: with a 262k vocabulary the
    # output layer dominates the cost, and prompts are most of each sequence.
    targets = batch["labels"][:, 1:]
    keep = torch.nonzero((targets != IGNORE_INDEX).any(dim=0)).flatten()
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        logits_to_keep=keep,
    ).logits
    shift_logits = logits.float()
    shift_labels = targets[:, keep]
    loss = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss, int((shift_labels != IGNORE_INDEX).sum())


def evaluate_loss(
    model: Any,
    data: Sequence[Encoded],
    pad_id: int,
    device: Any,
    mb: int,
    accelerator: Any = None,
) -> float:
    """Mean completion-token loss on `data` (eval mode, no gradients).

    With an `accelerator` of several processes each rank scores every N-th micro-batch and the
    sums are all-reduced, so all ranks return the same number. Pass the unwrapped model: the
    DDP wrapper must not run collectives for forwards that differ in count between ranks.
    """
    import torch

    rank, world = (
        (0, 1)
        if accelerator is None
        else (
            accelerator.process_index,
            accelerator.num_processes,
        )
    )
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        order = sorted(range(len(data)), key=lambda i: data[i].length)
        starts = list(range(0, len(order), mb))[rank::world]
        for start in starts:
            batch = collate([data[i] for i in order[start : start + mb]], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, n = completion_loss_sums(model, batch)
            total += float(loss)
            count += n
    if was_training:
        model.train()
    if world > 1:
        sums = accelerator.reduce(
            torch.tensor([total, float(count)], dtype=torch.float64, device=device), "sum"
        )
        total, count = float(sums[0]), int(sums[1])
    return total / max(count, 1)
