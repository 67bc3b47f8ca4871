"""Whether a LoRA adapter file fits the generator it is set for, checked before llama.cpp sees it.

llama.cpp refuses an adapter that is not one, was made for another architecture or model size,
or lacks half of a tensor pair, but llama-cpp-python 0.3 misses the refusal (it tests the NULL
pointer it gets for None), serves on without the adapter, and the first decode crashed the
process (segmentation fault): a base model's path in `model.adapter` did it. These are
llama.cpp's own checks (llama_adapter_lora_init_impl), made on the two files' GGUF layouts.
"""

from __future__ import annotations

from pathlib import Path

from repotune.server.gguf_layout import GGUFLayout, GGUFLayoutError, TensorInfo, read_layout

_PAIR_SUFFIXES = (".lora_a", ".lora_b")


class AdapterMismatch(ValueError):
    """The adapter cannot apply to this base; the message says why, in the user's terms."""


def check_adapter_fits(adapter: Path, base: Path) -> None:
    """Raise AdapterMismatch unless llama.cpp would accept `adapter` for the model `base`."""
    try:
        adapter_layout, base_layout = read_layout(adapter), read_layout(base)
    except (GGUFLayoutError, OSError) as exc:
        raise AdapterMismatch(f"cannot read its GGUF layout ({exc})") from None
    kind = adapter_layout.metadata.get("general.type")
    if kind != "adapter":
        raise AdapterMismatch(
            f"it is not a LoRA adapter (general.type is {kind!r}, not 'adapter'): a whole model "
            "goes in model.generator, an adapter from `repotune train export` in model.adapter"
        )
    if adapter_layout.metadata.get("adapter.type") != "lora":
        raise AdapterMismatch(
            f"it is a {adapter_layout.metadata.get('adapter.type')!r} adapter; llama.cpp applies "
            "LoRA adapters only"
        )
    adapter_arch = adapter_layout.metadata.get("general.architecture")
    base_arch = base_layout.metadata.get("general.architecture")
    if adapter_arch != base_arch:
        raise AdapterMismatch(
            f"it was made for the {adapter_arch!r} architecture, the generator is {base_arch!r}"
        )
    _check_pairs(adapter_layout, {t.name: t for t in base_layout.tensors})


def _check_pairs(adapter: GGUFLayout, base: dict[str, TensorInfo]) -> None:
    pairs: dict[str, dict[str, TensorInfo]] = {}
    for tensor in adapter.tensors:
        for suffix in _PAIR_SUFFIXES:
            if tensor.name.endswith(suffix):
                pairs.setdefault(tensor.name.removesuffix(suffix), {})[suffix] = tensor
    for name, pair in pairs.items():
        if len(pair) != 2:
            raise AdapterMismatch(f"the LoRA pair for {name!r} is missing one of its two tensors")
        if name not in base:
            raise AdapterMismatch(
                f"it adapts {name!r}, which the generator does not have (an adapter for "
                "another base model?)"
            )
        a, b, weight = pair[".lora_a"].shape, pair[".lora_b"].shape, base[name].shape
        if len(a) < 2 or len(b) < 2 or len(weight) < 2:
            raise AdapterMismatch(f"the LoRA pair for {name!r} is not a pair of matrices")
        if weight[0] != a[0] or weight[1] != b[1]:
            raise AdapterMismatch(
                f"its {name!r} is {a[0]}x{b[1]}, the generator's is {weight[0]}x{weight[1]} "
                "(an adapter for another size of this model?)"
            )
        if a[1] != b[0]:
            raise AdapterMismatch(f"the LoRA pair for {name!r} has mismatched ranks")
