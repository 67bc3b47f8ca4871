"""How this process runs llama.cpp: one model load at a time, the CPU's extra weight buffers,
and the thread count. Training loads its llama.cpp models through here too."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def physical_cores() -> int:
    try:
        import psutil

        return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def cpu_has_amx() -> bool:
    """llama.cpp's AMX weight buffers crashed (SIGSEGV in ggml_backend_amx_mul_mat) on the
    Gemma 3 GGUF on an AMX CPU here, so extra CPU buffer types are off where AMX is present."""
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "amx_int8" in line.split() or "amx_tile" in line.split()
    except OSError:
        return False
    return False


_LOAD_LOCK = threading.RLock()


@contextlib.contextmanager
def llama_extra_buffers(use_extra_bufts: bool) -> Iterator[None]:
    """Every Llama() of the process is built inside this, one at a time.

    Llama() has no argument for llama.cpp's `use_extra_bufts`, so its defaults are wrapped
    meanwhile. And llama-cpp-python's verbose=False silences a load by pointing fds 1 and 2
    (and sys.stdout/stderr) at /dev/null and back: two loads in two threads (the embedder's and
    the generator's, the dataset's tokenizer) interleaved those swaps and left them on /dev/null
    for good, which silenced every later log line and the CLI's JSON result."""
    import llama_cpp.llama_cpp as native

    with _LOAD_LOCK:
        if use_extra_bufts:
            yield
            return
        original = native.llama_model_default_params

        def patched() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        native.llama_model_default_params = patched  # type: ignore[assignment]
        try:
            yield
        finally:
            native.llama_model_default_params = original  # type: ignore[assignment]


def default_threads() -> int:
    """All physical cores: with the short OpenMP spin set in `repotune/__init__.py` a thread per
    core decodes and evaluates prompts faster than fewer threads, even with a core busy elsewhere
    (the README's Benchmarks have the figures)."""
    return physical_cores()


def thread_count(configured: int) -> int:
    """`model.threads` as llama.cpp gets it: 0 is `default_threads()`; more threads than the
    machine's logical CPUs only spin against each other and slow every completion (a settings
    file can ask for hundreds), so the count stops there."""
    if configured <= 0:
        return default_threads()
    return max(1, min(configured, os.cpu_count() or configured))


def wants_extra_buffers(setting: bool | None) -> bool:
    """`model.cpu_extra_buffers`, or by default: on with a GPU build or a CPU without AMX."""
    if setting is not None:
        return setting
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload()) or not cpu_has_amx()


def no_extra_buffers() -> contextlib.AbstractContextManager[None]:
    """A load without llama.cpp's "extra" (repacked) weight buffers, whose AMX kernels crash on
    virtual machines that advertise AMX without enabling it (see `cpu_has_amx`)."""
    return llama_extra_buffers(False)


def load_vocabulary(path: Path) -> Any:
    """A vocabulary-only Llama of the GGUF at `path` (tokenizer and metadata, no weights).

    llama.cpp logs, past verbose=False, that such a model's context is longer than its training
    context (a vocabulary-only load leaves that at 0); stderr (the fd and sys.stderr) is captured
    for the load so the line stays out of the user's terminal, and what a failed load logged is
    shown with its error. Loads are one at a time (the load lock), so no other load's output is
    swallowed; another thread's stderr during those milliseconds would be."""
    with (
        no_extra_buffers(),
        tempfile.TemporaryFile() as captured,
        open(captured.fileno(), "w", encoding="utf-8", closefd=False) as text,
    ):
        from llama_cpp import Llama

        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            with contextlib.redirect_stderr(text):
                return Llama(model_path=str(path), vocab_only=True, verbose=False)
        except Exception:
            text.flush()
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
