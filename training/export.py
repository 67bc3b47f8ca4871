"""Export a trained LoRA to llama.cpp: a GGUF adapter (default) or a merged, quantized model.

The adapter file follows llama.cpp's `convert_lora_to_gguf.py`: `general.type=adapter`,
`adapter.type=lora`, `adapter.lora.alpha`, the base's `general.architecture`, and for every
adapted weight `<gguf tensor>.lora_a` (peft's A, r x in) and `<gguf tensor>.lora_b` (peft's B,
out x r), written as they are (no transpose: GGUF reverses the shape, which is what ggml wants).
Gemma needs no q/k permutation; its norms are not adapted (their GGUF form stores 1+w, so an
adapter on them would be wrong), and the tied embeddings are refused.

The parity check runs the same held-out text through llama.cpp (base GGUF + adapter) and through
the PyTorch peft model, and compares logits. On an F32 GGUF of the base (the dequantized weights,
built here once) the two must agree essentially exactly; on the quantized base the server runs,
agreement is reported (quantization noise there would hide adapter bugs, so it is not the gate).
Because a lightly trained adapter barely moves the logits, the check also compares the *change*
each runtime sees (adapter minus base): a wrongly oriented or ignored adapter fails there.

Merged export (`merge="Q8_0"`): W + alpha/r * B @ A is folded into the F32 base and checked the
same way *before* quantizing (the merged F32 model against the PyTorch base + LoRA: the exactness
gate, same thresholds as the adapter), then quantized with llama.cpp's own quantizer and checked
again against a quantized bar. Q4_K_M is refused unless asked for (`allow_q4=True`): the served
Q4_K_M base already agrees with float32 PyTorch on only 0.90-0.96 of top-1 tokens, so a merged
Q4_K_M adds a second round of 4-bit noise on top of the fine-tune; its parity is then reported
against the quantized bar like any other, never hidden.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from repotune.server.config import cache_dir
from repotune.server.models import sha256_file
from repotune.training.base import BaseWeights, TrainError, load_model, load_tokenizer
from repotune.training.finetune import ADAPTER_DIR, base_for_run

# Thresholds for the exact (F32 base) parity check.
MIN_TOP1_AGREEMENT = 0.99
MAX_DELTA_RELATIVE_ERROR = 0.05
# The served (quantized) base: a sanity bar only, reported in full. llama.cpp's Q4_K matmuls
# (activations quantized too) against float32 PyTorch on the same dequantized weights agreed on
# 0.90-0.96 of top-1 tokens across runs here, so a 0.90 bar failed on noise; exactness is judged
# on the F32 base above, this bar only catches a grossly broken load.
MIN_TOP1_AGREEMENT_QUANTIZED = 0.80
# A merged Q8_0 model against float32 PyTorch base + LoRA (8-bit weights and activations).
MIN_TOP1_AGREEMENT_Q8 = 0.90
MERGE_KINDS = ("Q8_0", "Q4_K_M")

_LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")


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


# --------------------------------------------------------------------------- llama.cpp


def _no_extra_buffers() -> contextlib.AbstractContextManager[None]:
    """Load without llama.cpp's "extra" (repacked) weight buffers: some virtual machines advertise
    AMX without enabling it and llama.cpp's AMX kernels then die with SIGSEGV (see the engine)."""
    from repotune.server.llm.runtime import llama_extra_buffers

    return llama_extra_buffers(False)


def open_llama(model_path: Path, lora_path: Path | None = None, n_ctx: int = 1024) -> Any:
    """A llama.cpp model for scoring (all logits). `lora_path` disables mmap: the base is read
    into RAM (about the GGUF's size), which the caller must allow for."""
    import psutil
    from llama_cpp import Llama

    with _no_extra_buffers():
        return Llama(
            model_path=str(model_path),
            lora_path=str(lora_path) if lora_path else None,
            n_ctx=n_ctx,
            n_batch=n_ctx,
            logits_all=True,
            n_threads=psutil.cpu_count(logical=False) or 1,
            verbose=False,
        )


def llama_logits(llm: Any, token_ids: Sequence[int]) -> np.ndarray:
    llm.reset()
    llm.eval(list(token_ids))
    return np.array(llm.scores[: len(token_ids)], dtype=np.float32)


# --------------------------------------------------------------------------- GGUF helpers


def _arch_of(reader: Any) -> tuple[str, int]:
    arch = str(reader.fields["general.architecture"].contents())
    blocks = int(reader.fields[f"{arch}.block_count"].contents())
    return arch, blocks


def _copy_metadata(reader: Any, writer: Any, file_type: int | None) -> None:
    from gguf import GGUFValueType

    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == "general.file_type" and file_type is not None:
            writer.add_uint32(key, file_type)
            continue
        kind = fld.types[0]
        if kind == GGUFValueType.ARRAY:
            writer.add_key_value(key, fld.contents(), kind, sub_type=fld.types[-1])
        else:
            writer.add_key_value(key, fld.contents(), kind)


def _write(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_dequantized_gguf(
    source: Path, target: Path, deltas: dict[str, np.ndarray] | None = None
) -> Path:
    """Write `source` with every tensor as F32 (+ optional per-tensor deltas, for merging).

    Metadata (tokenizer included) is copied unchanged, so llama.cpp sees the same model with
    exact weights; Gemma's 1+w norms stay in GGUF form because nothing goes through transformers.
    """
    import gguf

    reader = gguf.GGUFReader(str(source))
    arch, _ = _arch_of(reader)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch)
    _copy_metadata(reader, writer, file_type=int(gguf.LlamaFileType.ALL_F32))
    pending = dict(deltas or {})
    for info in reader.tensors:
        array = gguf.quants.dequantize(info.data, info.tensor_type).astype(np.float32)
        delta = pending.pop(info.name, None)
        if delta is not None:
            if delta.shape != array.shape:
                raise TrainError(f"merge: {info.name} is {array.shape}, delta is {delta.shape}")
            array = array + delta
        writer.add_tensor(info.name, array)
    if pending:
        raise TrainError(f"merge: tensors not in the base: {sorted(pending)[:3]}")
    _write(writer)
    os.replace(tmp, target)
    return target


def f32_base(base: BaseWeights) -> Path:
    """The F32 GGUF of the base (cached by the base's checksum): the exactness reference."""
    if base.gguf_path is None:
        raise TrainError("the base is not a GGUF; there is nothing for llama.cpp to load")
    target = cache_dir() / "training" / f"base-{base.sha256[:16]}-f32.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_dequantized_gguf(base.gguf_path, target)
    return target


# --------------------------------------------------------------------------- adapter


@dataclass
class LoraWeights:
    alpha: float  # the alpha llama.cpp must use (scale = alpha / r)
    rank: int
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]  # gguf base tensor -> (A, B)


def read_peft_adapter(adapter_dir: Path, arch: str, blocks: int) -> LoraWeights:
    """peft's adapter folder as (A, B) pairs keyed by the base's GGUF tensor names."""
    import gguf
    from safetensors.numpy import load_file

    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise TrainError(f"{adapter_dir} is not a peft LoRA adapter folder")
    config = json.loads(config_path.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise TrainError(f"only LoRA adapters can be exported (got {config.get('peft_type')})")
    if config.get("use_dora"):
        raise TrainError("DoRA adapters cannot be exported to llama.cpp")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise TrainError("per-module rank/alpha patterns cannot be exported (one alpha in GGUF)")
    if config.get("modules_to_save"):
        raise TrainError("modules_to_save (fully trained layers) cannot be exported as LoRA")
    rank = int(config["r"])
    alpha = float(config["lora_alpha"])
    if config.get("use_rslora"):
        alpha = alpha * math.sqrt(rank)  # peft scales by alpha/sqrt(r), llama.cpp by alpha/r
    arch_enum = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch)
    if arch_enum is None:
        raise TrainError(f"unknown GGUF architecture '{arch}'")
    names = gguf.get_tensor_name_map(arch_enum, blocks)
    tensors = load_file(str(weights_path))
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in sorted(tensors):
        if not key.endswith(_LORA_SUFFIXES[0]):
            if not key.endswith(_LORA_SUFFIXES[1]):
                raise TrainError(f"unexpected tensor in the adapter: {key}")
            continue
        module = key[: -len(_LORA_SUFFIXES[0])]
        hf_name = module.removeprefix("base_model.model.")
        if hf_name.endswith(("embed_tokens", "lm_head")):
            raise TrainError(f"LoRA on the tied embeddings ({hf_name}) is not supported")
        gguf_name = names.get_name(hf_name)
        if gguf_name is None:
            raise TrainError(f"no GGUF tensor for {hf_name} in architecture '{arch}'")
        lora_a = tensors[key].astype(np.float32)
        lora_b = tensors[module + _LORA_SUFFIXES[1]].astype(np.float32)
        pairs[gguf_name + ".weight"] = (lora_a, lora_b)
    if not pairs:
        raise TrainError(f"{adapter_dir} holds no LoRA weights")
    return LoraWeights(alpha=alpha, rank=rank, pairs=pairs)


def write_adapter_gguf(
    lora: LoraWeights, base_gguf: Path, target: Path, dtype: str = "f32"
) -> Path:
    """Write the adapter as llama.cpp expects it (see the module docstring)."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    arch, _ = _arch_of(reader)
    base_shapes = {info.name: tuple(int(d) for d in info.shape) for info in reader.tensors}
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, lora.alpha)
    for name, (lora_a, lora_b) in lora.pairs.items():
        if name not in base_shapes:
            raise TrainError(f"the base GGUF has no tensor {name}")
        in_features, out_features = base_shapes[name][:2]  # GGUF shape is (ne0=in, ne1=out)
        if lora_a.shape[1] != in_features or lora_b.shape[0] != out_features:
            raise TrainError(f"{name}: adapter shapes {lora_a.shape}/{lora_b.shape} do not fit")
        stem = name.removesuffix(".weight")
        cast = np.float16 if dtype == "f16" else np.float32
        writer.add_tensor(stem + ".weight.lora_a", np.ascontiguousarray(lora_a.astype(cast)))
        writer.add_tensor(stem + ".weight.lora_b", np.ascontiguousarray(lora_b.astype(cast)))
    _write(writer)
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------- parity


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


# --------------------------------------------------------------------------- entry points


@dataclass
class ExportResult:
    adapter_path: Path
    sha256: str
    size_bytes: int
    base_sha256: str
    parity: list[ParityReport]
    merged_path: Path | None = None
    merged_kind: str | None = None
    merged_sha256: str | None = None
    merged_parity: list[ParityReport] = field(default_factory=list)  # [F32 merged, quantized]

    def to_json(self) -> dict[str, Any]:
        return {
            "adapter_path": str(self.adapter_path),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "base_sha256": self.base_sha256,
            "parity": [report.to_json() for report in self.parity],
            "merged_path": str(self.merged_path) if self.merged_path else None,
            "merged_kind": self.merged_kind,
            "merged_sha256": self.merged_sha256,
            "merged_parity": [report.to_json() for report in self.merged_parity],
        }


def quantize_gguf(source: Path, target: Path, kind: str = "Q8_0") -> Path:
    """Quantize a GGUF with llama.cpp's own quantizer (llama_model_quantize)."""
    import llama_cpp

    types = {
        "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
        "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "F16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    }
    if kind not in types:
        raise TrainError(f"unsupported quantization '{kind}' (choose from {', '.join(types)})")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = types[kind]
    params.nthread = 0
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    code = llama_cpp.llama_model_quantize(
        str(source).encode(), str(tmp).encode(), llama_cpp.byref(params)
    )
    if code != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise TrainError(f"llama.cpp could not quantize {source} to {kind} (code {code})")
    os.replace(tmp, target)
    return target


def merge_f32(lora: LoraWeights, base_gguf: Path, target: Path) -> Path:
    """The base with the adapter folded in (W + alpha/r · B·A), every tensor F32 (~1 GB for
    Gemma 3 270M: written tensor by tensor, but the writer holds them until the file is done)."""
    scale = lora.alpha / lora.rank
    deltas = {name: scale * (b @ a) for name, (a, b) in lora.pairs.items()}
    return write_dequantized_gguf(base_gguf, target, deltas)


def merge_adapter(lora: LoraWeights, base_gguf: Path, target: Path, kind: str = "Q8_0") -> Path:
    """Fold the adapter into the base and quantize the result (no parity check: see export)."""
    merged_f32 = target.with_name(target.stem + "-f32.gguf")
    merge_f32(lora, base_gguf, merged_f32)
    try:
        return quantize_gguf(merged_f32, target, kind)
    finally:
        merged_f32.unlink(missing_ok=True)


def gguf_file_type(path: Path) -> str:
    """The GGUF's `general.file_type` by name (e.g. MOSTLY_Q8_0)."""
    import gguf

    value = int(gguf.GGUFReader(str(path)).fields["general.file_type"].contents())
    return gguf.LlamaFileType(value).name


def export(
    run_dir: Path,
    output: Path,
    parity_texts: Sequence[str],
    check: bool = True,
    merge: str | None = None,
    dtype: str = "f32",
    allow_q4: bool = False,
) -> ExportResult:
    """Write the run's best adapter as a GGUF adapter; check parity; optionally merge.

    With `merge`, the merged model is written as `<output stem>-<merge>.gguf` only when its
    parity passes (F32 merged model, then the quantized one); otherwise ParityError, and the
    quantized file is left as `*.failed-parity.gguf`.
    """
    if merge is not None and merge not in MERGE_KINDS:
        raise TrainError(f"unsupported merge type '{merge}' (choose from {', '.join(MERGE_KINDS)})")
    if merge == "Q4_K_M" and not allow_q4:
        raise TrainError(
            "merging into Q4_K_M is refused by default: 4-bit re-quantization of the merged "
            "weights adds noise the parity check cannot separate from adapter bugs; use Q8_0, "
            "the adapter (default), or pass --allow-q4 to export it with its parity reported"
        )
    if merge is not None and not check:
        raise TrainError("a merged export needs the parity check (drop --no-check)")
    run_dir = Path(run_dir)
    adapter_dir = run_dir / ADAPTER_DIR
    if not adapter_dir.is_dir():
        raise TrainError(f"{run_dir} has no trained adapter ({ADAPTER_DIR}/); run finetune first")
    base = base_for_run(run_dir)
    if base.gguf_path is None:
        raise TrainError("exporting needs a GGUF base (the model the server runs)")
    import gguf

    arch, blocks = _arch_of(gguf.GGUFReader(str(base.gguf_path)))
    lora = read_peft_adapter(adapter_dir, arch, blocks)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_adapter_gguf(lora, base.gguf_path, output, dtype=dtype)
    reports: list[ParityReport] = []
    ref = torch_reference(run_dir, parity_texts) if check else None
    if check:
        reports = parity_check(run_dir, output, parity_texts, reference=ref)
        failed = [report for report in reports if not report.passed]
        if failed:
            worst = failed[0]
            output.rename(output.with_suffix(".failed-parity.gguf"))
            raise ParityError(
                f"parity check failed on {Path(worst.base).name}: top-1 agreement "
                f"{worst.top1_agreement:.4f}, adapter-delta relative error "
                f"{worst.delta_relative_error:.4f}, max logit error {worst.max_abs_error:.3f}; "
                "the adapter was not exported"
            )
    merged = None
    merged_reports: list[ParityReport] = []
    if merge and ref is not None:
        merged, merged_reports = _export_merged(lora, base, output, merge, ref)
    result = ExportResult(
        adapter_path=output,
        sha256=sha256_file(output),
        size_bytes=output.stat().st_size,
        base_sha256=base.sha256,
        parity=reports,
        merged_path=merged,
        merged_kind=merge if merged else None,
        merged_sha256=sha256_file(merged) if merged else None,
        merged_parity=merged_reports,
    )
    (run_dir / "export.json").write_text(json.dumps(result.to_json(), indent=2))
    return result


def _export_merged(
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
            _raise_parity(exact, "the merged model was not exported")
        quantize_gguf(merged_f32, staged, kind)
        merged_f32.unlink()
        quantized = merged_parity(base, staged, kind, ref, llama_base)
        quantized.base = str(target)
        if not quantized.passed:
            os.replace(staged, failed)
            _raise_parity(quantized, f"the merged model was left as {failed.name}")
        os.replace(staged, target)
        return target, [exact, quantized]
    finally:
        merged_f32.unlink(missing_ok=True)
        staged.unlink(missing_ok=True)


def _raise_parity(report: ParityReport, outcome: str) -> None:
    raise ParityError(
        f"parity check failed on {Path(report.base).name}: top-1 agreement "
        f"{report.top1_agreement:.4f}, adapter-delta relative error "
        f"{report.delta_relative_error:.4f}, max logit error {report.max_abs_error:.3f}; {outcome}"
    )


def held_out_texts(run_dir: Path, limit: int = 4) -> list[str]:
    """Held-out text for the parity check: test examples (else validation) of the run's data."""
    info = json.loads((Path(run_dir) / "run.json").read_text())
    data_dir = Path(info["data_dir"])
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
