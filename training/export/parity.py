"""llama.cpp against PyTorch on held-out text: is the exported adapter the trained one?

The parity check runs the same held-out text through llama.cpp (base GGUF + adapter) and through
the PyTorch peft model, and compares logits. On an F32 GGUF of the base (the dequantized weights,
built here once) the two must agree essentially exactly; on the quantized base the server runs,
agreement is reported (quantization noise there would hide adapter bugs, so it is not the gate).
Because a lightly trained adapter barely moves the logits, the check also compares the *change*
each runtime sees (adapter minus base): a wrongly oriented or ignored adapter fails there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from repotune.training.base import BaseWeights, TrainError, load_model, load_tokenizer, open_llama
from repotune.training.checkpoint import ADAPTER_DIR, read_run
from repotune.training.export.gguf import f32_base
from repotune.training.finetune import base_for_run

# Thresholds for the exact (F32 base) parity check.
MIN_TOP1_AGREEMENT = 0.99
MAX_DELTA_RELATIVE_ERROR = 0.05
# The served (quantized) base: a sanity bar only, reported in full. llama.cpp's Q4_K matmuls
# quantize activations too, so their top-1 agreement with float32 PyTorch varies from run to run
# (README, Benchmarks) and a tight bar fails on noise; exactness is judged on the F32 base above.
MIN_TOP1_AGREEMENT_QUANTIZED = 0.80
# A merged Q8_0 model against float32 PyTorch base + LoRA (8-bit weights and activations).
MIN_TOP1_AGREEMENT_Q8 = 0.90


@dataclass
class ParityReport:
    base: str
    tokens: int
    top1_agreement: float
    max_abs_error: float
    mean_abs_error: float
    delta_relative_error: float  # ||Δllama − Δtorch|| / ||Δtorch||, Δ = adapter − base logits
    delta_norm: float  # mean |Δtorch|: how much the adapter changes the logits at all
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ParityError(TrainError):
    """llama.cpp and PyTorch disagree on the adapter: the export is not trustworthy."""


def llama_logits(llm: Any, token_ids: Sequence[int]) -> np.ndarray:
    llm.reset()
    llm.eval(list(token_ids))
    return np.array(llm.scores[: len(token_ids)], dtype=np.float32)


def _torch_logits(model: Any, token_ids: Sequence[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        ids = torch.tensor([list(token_ids)])
        return model(input_ids=ids).logits[0].float().numpy()


def parity_texts_tokens(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    sequences = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"][:max_tokens]
        if len(ids) >= 8:
            sequences.append(ids)
    if not sequences:
        raise TrainError("parity check: no held-out text long enough to compare")
    return sequences


def compare(
    gguf_path: Path,
    adapter_path: Path | None,
    sequences: Sequence[list[int]],
    torch_base: Sequence[np.ndarray],
    torch_adapted: Sequence[np.ndarray],
    min_top1: float,
    llama_base: Sequence[np.ndarray] | None = None,
) -> ParityReport:
    """Score `sequences` with llama.cpp (base, then base + adapter) against PyTorch's logits.

    `adapter_path=None` with `llama_base` given scores a merged model: `gguf_path` is the
    adapted model itself and `llama_base` the base's llama.cpp logits (for the delta check).
    """
    n_ctx = max(len(s) for s in sequences) + 8
    if llama_base is None:
        llama_base = llama_scores(gguf_path, None, sequences)
    adapted = open_llama(gguf_path, adapter_path, n_ctx=n_ctx)
    llama_adapted = [llama_logits(adapted, s) for s in sequences]
    adapted.close()
    agree = total = 0
    max_err = 0.0
    sum_err = 0.0
    delta_diff = delta_ref = delta_abs = 0.0
    for lb, la, tb, ta in zip(llama_base, llama_adapted, torch_base, torch_adapted, strict=True):
        agree += int((la.argmax(-1) == ta.argmax(-1)).sum())
        total += la.shape[0]
        err = np.abs(la - ta)
        max_err = max(max_err, float(err.max()))
        sum_err += float(err.mean()) * la.shape[0]
        d_llama, d_torch = la - lb, ta - tb
        delta_diff += float(np.square(d_llama - d_torch).sum())
        delta_ref += float(np.square(d_torch).sum())
        delta_abs += float(np.abs(d_torch).mean()) * la.shape[0]
    relative = math.sqrt(delta_diff / delta_ref) if delta_ref > 0 else 0.0
    top1 = agree / total
    return ParityReport(
        base=str(gguf_path),
        tokens=total,
        top1_agreement=top1,
        max_abs_error=max_err,
        mean_abs_error=sum_err / total,
        delta_relative_error=relative,
        delta_norm=delta_abs / total,
        passed=top1 >= min_top1,
    )


def llama_scores(
    model_path: Path, adapter_path: Path | None, sequences: Sequence[list[int]]
) -> list[np.ndarray]:
    """llama.cpp's logits for each sequence (the model is loaded, used and closed)."""
    llm = open_llama(model_path, adapter_path, n_ctx=max(len(s) for s in sequences) + 8)
    try:
        return [llama_logits(llm, s) for s in sequences]
    finally:
        llm.close()


@dataclass
class TorchReference:
    """PyTorch's logits on the held-out tokens: the base, and the base + LoRA (peft)."""

    sequences: list[list[int]]
    base: list[np.ndarray]
    adapted: list[np.ndarray]


def torch_reference(run_dir: Path, texts: Sequence[str], max_tokens: int = 256) -> TorchReference:
    from peft import PeftModel

    base = base_for_run(run_dir)
    tokenizer = load_tokenizer(base)
    sequences = parity_texts_tokens(tokenizer, texts, max_tokens)
    model = load_model(base)
    model.eval()
    torch_base = [_torch_logits(model, s) for s in sequences]
    peft_model = PeftModel.from_pretrained(model, str(Path(run_dir) / ADAPTER_DIR))
    peft_model.eval()
    torch_adapted = [_torch_logits(peft_model, s) for s in sequences]
    del peft_model, model
    return TorchReference(sequences, torch_base, torch_adapted)


def parity_check(
    run_dir: Path,
    adapter_gguf: Path,
    texts: Sequence[str],
    max_tokens: int = 256,
    served_base: bool = True,
    reference: TorchReference | None = None,
) -> list[ParityReport]:
    """Exact check on the F32 base (gate) and, when asked, the served base (reported)."""
    base = base_for_run(run_dir)
    ref = reference or torch_reference(run_dir, texts, max_tokens)
    exact = compare(
        f32_base(base), adapter_gguf, ref.sequences, ref.base, ref.adapted, MIN_TOP1_AGREEMENT
    )
    exact.passed = exact.passed and exact.delta_relative_error <= MAX_DELTA_RELATIVE_ERROR
    reports = [exact]
    if served_base and base.gguf_path is not None:
        reports.append(
            compare(
                base.gguf_path,
                adapter_gguf,
                ref.sequences,
                ref.base,
                ref.adapted,
                MIN_TOP1_AGREEMENT_QUANTIZED,
            )
        )
    return reports


def merged_parity(
    base: BaseWeights,
    model_path: Path,
    kind: str | None,
    ref: TorchReference,
    llama_base: Sequence[np.ndarray] | None = None,
) -> ParityReport:
    """A merged model against PyTorch base + LoRA. `kind=None`: the F32 merge, judged like the
    adapter on the F32 base (top-1 and adapter delta); otherwise the quantized merge, judged on
    top-1 against `kind`'s bar. Deltas are taken against the F32 base's llama.cpp logits."""
    if llama_base is None:
        llama_base = llama_scores(f32_base(base), None, ref.sequences)
    if kind is None:
        bar = MIN_TOP1_AGREEMENT
    else:
        bar = MIN_TOP1_AGREEMENT_Q8 if kind == "Q8_0" else MIN_TOP1_AGREEMENT_QUANTIZED
    report = compare(model_path, None, ref.sequences, ref.base, ref.adapted, bar, llama_base)
    if kind is None:
        report.passed = report.passed and report.delta_relative_error <= MAX_DELTA_RELATIVE_ERROR
    return report


def raise_parity(report: ParityReport, outcome: str) -> None:
    raise ParityError(
        f"parity check failed on {Path(report.base).name}: top-1 agreement "
        f"{report.top1_agreement:.4f}, adapter-delta relative error "
        f"{report.delta_relative_error:.4f}, max logit error {report.max_abs_error:.3f}; {outcome}"
    )


def held_out_texts(run_dir: Path, limit: int = 4) -> list[str]:
    """Held-out text for the parity check: test examples (else validation) of the run's data."""
    data_dir = Path(read_run(run_dir)["data_dir"])
    texts: list[str] = []
    for name in ("test.jsonl", "validation.jsonl"):
        path = data_dir / name
        if path.is_file():
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    item = json.loads(line)
                    texts.append(item["prompt"] + item["completion"])
                    if len(texts) >= limit:
                        return texts
    return texts
