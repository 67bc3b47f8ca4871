"""The one merge path: fold the LoRA into the base, check, quantize, check again.

Merged export (`merge="Q8_0"`): W + alpha/r * B @ A is folded into the F32 base and checked the
same way *before* quantizing (the merged F32 model against the PyTorch base + LoRA: the exactness
gate, same thresholds as the adapter), then quantized with llama.cpp's own quantizer and checked
again against a quantized bar. Q4_K_M is refused unless asked for (`allow_q4=True`): the served
Q4_K_M base already disagrees with float32 PyTorch on a share of top-1 tokens (README,
Benchmarks), so a merged Q4_K_M adds a second round of 4-bit noise on top of the fine-tune; its
parity is then reported against the quantized bar like any other, never hidden.
"""

from __future__ import annotations

import os
from pathlib import Path

from repotune.training.base import BaseWeights
from repotune.training.export.adapter import LoraWeights
from repotune.training.export.gguf import f32_base, quantize_gguf, write_dequantized_gguf
from repotune.training.export.parity import (
    ParityReport,
    TorchReference,
    llama_scores,
    merged_parity,
    raise_parity,
)

MERGE_KINDS = ("Q8_0", "Q4_K_M")


def merge_f32(lora: LoraWeights, base_gguf: Path, target: Path) -> Path:
    """The base with the adapter folded in (W + alpha/r · B·A), every tensor F32 (~1 GB for
    Gemma 3 270M: written tensor by tensor, but the writer holds them until the file is done)."""
    scale = lora.alpha / lora.rank
    deltas = {name: scale * (b @ a) for name, (a, b) in lora.pairs.items()}
    return write_dequantized_gguf(base_gguf, target, deltas)


def export_merged(
    lora: LoraWeights, base: BaseWeights, output: Path, kind: str, ref: TorchReference
) -> tuple[Path, list[ParityReport]]:
    """Merge, check the F32 merge, quantize, check again; only then name it as the export."""
    assert base.gguf_path is not None
    target = output.with_name(f"{output.stem}-{kind}.gguf")
    failed = target.with_suffix(".failed-parity.gguf")
    target.unlink(missing_ok=True)  # a stale export must not outlive a failed one
    failed.unlink(missing_ok=True)
    merged_f32 = output.with_name(f"{output.stem}-merged-f32.tmp{os.getpid()}.gguf")
    staged = output.with_name(f"{output.stem}-{kind}.tmp{os.getpid()}.gguf")
    try:
        merge_f32(lora, base.gguf_path, merged_f32)
        llama_base = llama_scores(f32_base(base), None, ref.sequences)
        exact = merged_parity(base, merged_f32, None, ref, llama_base)
        exact.base = f"merged F32 ({target.name} before quantization)"
        if not exact.passed:
            raise_parity(exact, "the merged model was not exported")
        quantize_gguf(merged_f32, staged, kind)
        merged_f32.unlink()
        quantized = merged_parity(base, staged, kind, ref, llama_base)
        quantized.base = str(target)
        if not quantized.passed:
            os.replace(staged, failed)
            raise_parity(quantized, f"the merged model was left as {failed.name}")
        os.replace(staged, target)
        return target, [exact, quantized]
    finally:
        merged_f32.unlink(missing_ok=True)
        staged.unlink(missing_ok=True)
