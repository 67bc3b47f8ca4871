"""Loading the generator (and its adapter) with llama.cpp, and choosing its prompt format."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from repotune.server.completion.formats import PromptFormat, choose_format
from repotune.server.completion.tokens import CachedTokenCounter
from repotune.server.config import Settings
from repotune.server.llm.gpu import (
    block_count,
    load_with_fallback,
    offloaded_layers,
    requested_layers,
)
from repotune.server.llm.healing import Vocabulary
from repotune.server.llm.runtime import (
    llama_extra_buffers,
    llama_verbose,
    thread_count,
    wants_extra_buffers,
)
from repotune.server.models import (
    ModelError,
    adapter_reference,
    fitting_adapter,
    resolve_generator,
)


@dataclass
class LoadedModel:
    """A generator and what was learned loading it: its prompt format and load facts."""

    llm: Any
    format: PromptFormat
    info: dict[str, Any]
    counter: CachedTokenCounter | None = None

    def __post_init__(self) -> None:
        if self.counter is None:
            llm = self.llm
            self.counter = CachedTokenCounter(
                lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            )

    def count(self, text: str) -> int:
        """Tokens of `text` without special tokens (cached)."""
        assert self.counter is not None
        return self.counter(text)

    @cached_property
    def vocabulary(self) -> Vocabulary:
        """The token pieces for token healing (read once; loading reads them ahead)."""
        return Vocabulary.of(self.llm)


def load_model(settings: Settings) -> LoadedModel:
    """Resolve and load the generator (and adapter). Raises ModelError with a user message."""
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError as exc:
        raise ModelError(f"llama-cpp-python is not installed ({exc})") from None

    model = settings.model
    resolved = resolve_generator(model.generator)
    adapter_path: Path | None = None
    adapter_ref = adapter_reference(model.adapter, model.generator)
    if adapter_ref:
        adapter_path = fitting_adapter(adapter_ref, resolved).path
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    threads = thread_count(model.threads)
    extra_bufts = wants_extra_buffers(model.cpu_extra_buffers)
    started = time.perf_counter()
    llm, gpu_layers, gpu_fallback = _load(
        Llama, settings, resolved.path, adapter_path, gpu, threads, extra_bufts
    )
    metadata = {str(k): str(v) for k, v in llm.metadata.items()}
    if "tokenizer.chat_template" not in metadata and metadata.get(
        "general.architecture", ""
    ).startswith("gemma"):
        llm.chat_format = "gemma"  # llama-cpp-python would otherwise fall back to llama-2

    fmt = format_of(llm, model.prompt_format)
    info = {
        "model": str(resolved.path),
        "model_ref": model.generator,
        "model_name": metadata.get("general.name", resolved.path.name),
        "architecture": metadata.get("general.architecture", ""),
        "adapter": str(adapter_path) if adapter_path else None,
        "adapter_scale": model.adapter_scale if adapter_path else None,
        "format": fmt.name,
        "format_forced": model.prompt_format != "auto",
        "gpu_offload": gpu,
        "gpu_layers": offloaded_layers(gpu_layers, block_count(metadata)) if gpu_layers else 0,
        "gpu_fallback": gpu_fallback,
        "threads": threads,
        "context_length": model.context_length,
        "cpu_extra_buffers": extra_bufts,
        "chat_format": llm.chat_format,
        "chat_template": "tokenizer.chat_template" in metadata,
        "load_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    loaded = LoadedModel(llm=llm, format=fmt, info=info)
    if settings.completion.token_healing:
        _ = loaded.vocabulary  # on the loading thread, not on the first request's
    return loaded


def _load(
    llama_class: Any,
    settings: Settings,
    path: Path,
    adapter_path: Path | None,
    gpu: bool,
    threads: int,
    extra_bufts: bool,
) -> tuple[Any, int, str | None]:
    """The Llama object, with the GPU layers it got and why it fell back (if it did)."""
    model = settings.model

    def build(n_gpu_layers: int) -> Any:
        with llama_extra_buffers(extra_bufts):
            llm = llama_class(
                model_path=str(path),
                n_ctx=model.context_length,
                n_batch=min(512, model.context_length),
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers,
                lora_path=str(adapter_path) if adapter_path else None,
                lora_scale=model.adapter_scale,
                swa_full=True,  # sliding-window models (Gemma 3) keep prefix reuse possible
                verbose=llama_verbose(),
            )
            if adapter_path and not getattr(llm, "_lora_adapter", True):
                # llama-cpp-python 0.3 tests the adapter for None, which its NULL pointer never
                # is: it served on with no adapter and crashed at the first decode
                llm._lora_adapter = None  # nothing to free
                llm.close()
                raise ValueError("the adapter was refused")
            if getattr(getattr(llm, "_ctx", None), "memory", True) is None:
                llm.close()  # no KV cache: an encoder such as the embedder; decoding asserted
                raise ValueError("it cannot generate text (an embedding model: model.embedder)")
            return llm

    try:
        return load_with_fallback(build, requested_layers(model.gpu_layers, gpu), "generator")
    except (ValueError, RuntimeError, OSError) as exc:
        what = f"generator {path}"
        if adapter_path:
            what += f" with adapter {adapter_path}"
        raise ModelError(f"{what}: llama.cpp could not load it ({exc})") from None


def format_of(llm: Any, setting: str = "auto") -> PromptFormat:
    """The prompt format of a loaded llama.cpp model: the one `setting` names, or the one its
    metadata and vocabulary show when "auto" (the engine's and the training data's choice)."""

    def has_token(text: str) -> bool:
        try:
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        except RuntimeError:
            return False
        return len(tokens) == 1

    metadata = {str(k): str(v) for k, v in llm.metadata.items()}
    return choose_format(metadata, has_token, setting)
