"""Start a LoRA fine-tune from a GGUF adapter (the shipped default adapter, or any other one).

A per-repository adapter continues the default adapter's training, so it adds the repository's
knowledge on top of what the default already knows (code, RepoTune's prompt format). The GGUF
file is the one artifact RepoTune ships; its tensors (`blk.N.attn_q.weight.lora_a/_b`) are mapped
back to peft's modules with gguf's own tensor-name table, the inverse of the export.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from repotune.server.config import Settings
from repotune.training.base import TrainError

_LORA_A, _LORA_B = ".weight.lora_a", ".weight.lora_b"


def init_adapter_path(settings: Settings, base: str | None = None) -> Path | None:
    """The adapter a fine-tune starts from (train.init_adapter; 'default' = the shipped one,
    for the default base only); None = fresh LoRA weights. Raises ModelError when missing."""
    from repotune.server.models import DEFAULT_REF, NO_ADAPTER, resolve_adapter

    choice = settings.train.init_adapter
    if choice == NO_ADAPTER:
        return None
    if choice == DEFAULT_REF:
        if (base or settings.model.generator) != DEFAULT_REF:
            return None  # the default adapter belongs to the default base only
        return resolve_adapter(DEFAULT_REF).path
    return Path(choice)


def read_gguf_adapter(path: Path) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(alpha, {gguf base tensor stem: (A, B)}) from a llama.cpp LoRA adapter file."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise TrainError(f"{path} is not a readable GGUF adapter ({exc})") from None
    field = reader.fields.get(gguf.Keys.Adapter.LORA_ALPHA)
    if field is None:
        raise TrainError(f"{path} is not a LoRA adapter (no {gguf.Keys.Adapter.LORA_ALPHA})")
    alpha = float(field.parts[field.data[0]][0])
    tensors = {t.name: np.asarray(t.data, dtype=np.float32) for t in reader.tensors}
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, lora_a in tensors.items():
        if name.endswith(_LORA_A):
            stem = name.removesuffix(_LORA_A)
            lora_b = tensors.get(stem + _LORA_B)
            if lora_b is None:
                raise TrainError(f"{path}: {stem} has lora_a but no lora_b")
            pairs[stem] = (lora_a, lora_b)
    if not pairs:
        raise TrainError(f"{path} holds no LoRA tensors")
    return alpha, pairs


def load_gguf_adapter(model: Any, path: Path, arch: str = "gemma3") -> dict[str, Any]:
    """Copy a GGUF adapter's weights into a peft model's LoRA layers (same rank required).

    The scale llama.cpp applies (alpha / r) is folded into B when the run's own alpha differs,
    so the starting model computes exactly what the server served with the adapter.
    """
    import gguf
    import torch

    alpha, pairs = read_gguf_adapter(path)
    arch_enum = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch)
    if arch_enum is None:
        raise TrainError(f"unknown GGUF architecture '{arch}'")
    blocks = 1 + max(int(n.split(".")[1]) for n in pairs if n.startswith("blk."))
    names = gguf.get_tensor_name_map(arch_enum, blocks)
    loaded = 0
    for module_name, module in model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
            continue
        hf_name = module_name.removeprefix("base_model.model.")
        stem = names.get_name(hf_name)
        if stem is None or stem not in pairs:
            raise TrainError(f"{path} has no weights for {hf_name}: train with the same modules")
        lora_a, lora_b = pairs[stem]
        target_a = module.lora_A["default"].weight
        target_b = module.lora_B["default"].weight
        if tuple(lora_a.shape) != tuple(target_a.shape):
            raise TrainError(
                f"{path}: rank or shape differs for {hf_name} ({lora_a.shape} vs "
                f"{tuple(target_a.shape)}); set train.lora_r to the adapter's rank"
            )
        rank = lora_a.shape[0]
        ratio = (alpha / rank) / float(module.scaling["default"])
        with torch.no_grad():
            target_a.copy_(torch.as_tensor(np.array(lora_a)))  # a copy: the file's map is read-only
            target_b.copy_(torch.from_numpy(lora_b * ratio))
        loaded += 1
    if loaded != len(pairs):
        raise TrainError(
            f"{path} has LoRA weights for {len(pairs)} layers, the run trains {loaded}: "
            "train.lora_target_modules must match the adapter's"
        )
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"path": str(path), "sha256": digest, "layers": loaded, "alpha": alpha}
