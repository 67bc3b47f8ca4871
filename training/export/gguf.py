"""GGUF files: metadata copy, dequantized (F32) copies with optional deltas, quantization."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from repotune.server.config import cache_dir
from repotune.server.gguf_layout import GGUFLayoutError, read_layout
from repotune.training.base import BaseWeights, TrainError


def arch_of(path: Path) -> tuple[str, int]:
    """A GGUF model's architecture and block count, from its header alone (the vocabulary is
    skipped, not read: server/gguf_layout.py)."""
    try:
        metadata = read_layout(path).metadata
    except (OSError, GGUFLayoutError) as exc:
        raise TrainError(f"{path}: not a readable GGUF file ({exc})") from None
    arch = str(metadata.get("general.architecture", ""))
    blocks = metadata.get(f"{arch}.block_count")
    if not arch or not isinstance(blocks, int):
        raise TrainError(f"{path}: no general.architecture / block_count in its metadata")
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


def write_gguf(writer: Any) -> None:
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

    arch, _ = arch_of(source)
    reader = gguf.GGUFReader(str(source))  # every tensor's data is copied
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
    write_gguf(writer)
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


def gguf_file_type(path: Path) -> str:
    """The GGUF's `general.file_type` by name (e.g. MOSTLY_Q8_0)."""
    import gguf

    value = int(read_layout(path).metadata["general.file_type"])
    return gguf.LlamaFileType(value).name
