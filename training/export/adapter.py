"""A trained peft LoRA as a llama.cpp GGUF adapter.

The adapter file follows llama.cpp's `convert_lora_to_gguf.py`: `general.type=adapter`,
`adapter.type=lora`, `adapter.lora.alpha`, the base's `general.architecture`, and for every
adapted weight `<gguf tensor>.lora_a` (peft's A, r x in) and `<gguf tensor>.lora_b` (peft's B,
out x r), written as they are (no transpose: GGUF reverses the shape, which is what ggml wants).
Gemma needs no q/k permutation; its norms are not adapted (their GGUF form stores 1+w, so an
adapter on them would be wrong), and the tied embeddings are refused.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from repotune.server.gguf_layout import read_layout
from repotune.training.base import TrainError
from repotune.training.export.gguf import arch_of, write_gguf

_LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")


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

    arch, _ = arch_of(base_gguf)
    base_shapes = {info.name: info.shape for info in read_layout(base_gguf).tensors}
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
    write_gguf(writer)
    os.replace(tmp, target)
    return target
