"""The base weights for training: the very GGUF the server runs, read by transformers.

transformers dequantizes a GGUF to float (`gguf_file=`), slowly (mostly the tokenizer), so the
result is cached once per GGUF checksum as an ordinary Hugging Face folder: every later run loads
quickly and trains on exactly the same numbers.
A Hugging Face model directory is accepted as a base as well (no GGUF export parity then).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repotune.server.config import cache_dir
from repotune.server.llm.runtime import no_extra_buffers
from repotune.server.models import ModelError, resolve_generator, sha256_file


class TrainError(RuntimeError):
    """A training step cannot go on; the message is meant for the user."""


@dataclass(frozen=True)
class BaseWeights:
    """Where the base model lives: the GGUF (when it came from one) and a transformers folder."""

    reference: str
    hf_dir: Path
    gguf_path: Path | None
    sha256: str


def _converted_dir(sha256: str) -> Path:
    return cache_dir() / "training" / f"base-{sha256[:16]}"


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantize a GGUF with transformers and save it as a plain (unquantized) HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise TrainError(
            f"transformers cannot read {gguf_path.name} ({exc}); pass a Hugging Face model "
            "directory of the same model as the base instead"
        ) from None
    # The weights are plain float32 now; forget the GGUF "quantizer" so they can be saved.
    model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it loosely
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "repotune-source.json").write_text(
        json.dumps({"gguf": str(gguf_path), "sha256": sha256_file(gguf_path)}, indent=2)
    )
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def prepare_base(reference: str = "default") -> BaseWeights:
    """Resolve a generator reference (default, .gguf path, hf:, or an HF model folder)."""
    candidate = Path(reference).expanduser()
    if candidate.is_dir():
        if not (candidate / "config.json").is_file():
            raise TrainError(f"base model folder {candidate} has no config.json")
        digest = sha256_file(candidate / "config.json")
        return BaseWeights(reference, candidate.resolve(), None, digest)
    try:
        resolved = resolve_generator(reference)
    except ModelError as exc:
        raise TrainError(str(exc)) from None
    target = _converted_dir(resolved.sha256)
    if not (target / "config.json").is_file() or not (target / "model.safetensors").is_file():
        _convert_gguf(resolved.path, target)
    return BaseWeights(reference, target, resolved.path, resolved.sha256)


def load_tokenizer(base: BaseWeights) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.hf_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(base: BaseWeights, dtype: Any = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    # peft asks transformers 5 for a renamed property at every wrap; nothing a user can act on
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
    return AutoModelForCausalLM.from_pretrained(
        base.hf_dir, dtype=dtype or torch.float32, attn_implementation="eager"
    )


# --------------------------------------------------------------------------- llama.cpp


def open_llama(model_path: Path, lora_path: Path | None = None, n_ctx: int = 1024) -> Any:
    """A llama.cpp model for scoring (all logits). `lora_path` disables mmap: the base is read
    into RAM (about the GGUF's size), which the caller must allow for."""
    import psutil
    from llama_cpp import Llama

    with no_extra_buffers():
        return Llama(
            model_path=str(model_path),
            lora_path=str(lora_path) if lora_path else None,
            n_ctx=n_ctx,
            n_batch=n_ctx,
            logits_all=True,
            n_threads=psutil.cpu_count(logical=False) or 1,
            verbose=False,
        )
