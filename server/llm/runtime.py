"""How this process runs llama.cpp: one model load at a time, the CPU's extra weight buffers,
and the thread count. Training loads its llama.cpp models through here too."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import platform
import re
import sys
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

# ggml's log levels: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the last line).
_GGML_ERROR, _GGML_CONT = 4, 5
_llama_log = logging.getLogger("repotune.llama")
# llama.cpp's error lines from the load in progress: (its thread, the lines). One load at a time.
_loading: tuple[int, list[str]] | None = None


class LlamaLoadError(ValueError):
    """Llama() failed; the message holds llama.cpp's own reason (its error lines)."""


def _reason(error_lines: list[str]) -> str:
    """llama.cpp's error lines as one reason: "llama_model_load: error loading model: unknown
    model architecture: 'x'" and "...: failed to load model" become "error loading model:
    unknown model architecture: 'x'"."""
    reasons: list[str] = []
    for line in error_lines:
        text = re.sub(r"^\w+: ", "", line.strip())  # the C function that logged it
        if text and text not in reasons:
            reasons.append(text)
    specific = [text for text in reasons if not text.endswith("failed to load model")]
    return "; ".join(specific or reasons)


def llama_verbose() -> bool:
    """Llama(verbose=...): True at debug level (`--log-level debug`). verbose=False points fds 1
    and 2 at /dev/null during a load, which drops the loader's messages even from our callback."""
    return _llama_log.isEnabledFor(logging.DEBUG)


@functools.cache  # once per process; the cache keeps the ctypes callback alive for llama.cpp
def route_llama_logs() -> Any:
    """llama.cpp's errors go to stderr, the rest to the `repotune.llama` logger at debug level.

    llama-cpp-python 0.3's own callback reads ggml's levels one step off (WARN as its ERROR), so
    with verbose=False every warning still reached the terminal or the editor's log: two dozen
    "lora ... cannot use buft 'CPU_REPACK', fallback to CPU" lines per model load."""
    import llama_cpp

    last = [0]

    @llama_cpp.llama_log_callback  # type: ignore[misc]
    def route(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        level = last[0] if level == _GGML_CONT else level
        last[0] = level
        message = text.decode("utf-8", "replace")
        loading = _loading
        if level == _GGML_ERROR and loading is not None and loading[0] == threading.get_ident():
            loading[1].append(message)  # a load's reason goes into its exception instead
        elif level == _GGML_ERROR:
            sys.stderr.write(message)
            sys.stderr.flush()
        elif message.strip():
            _llama_log.debug("%s", message.rstrip())

    llama_cpp.llama_log_set(route, ctypes.c_void_p(0))
    return route


@contextlib.contextmanager
def llama_extra_buffers(use_extra_bufts: bool) -> Iterator[None]:
    """Every Llama() of the process is built inside this, one at a time.

    Llama() has no argument for llama.cpp's `use_extra_bufts`, so its defaults are wrapped
    meanwhile. And llama-cpp-python's verbose=False silences a load by pointing fds 1 and 2
    (and sys.stdout/stderr) at /dev/null and back: two loads in two threads (the embedder's and
    the generator's, the dataset's tokenizer) interleaved those swaps and left them on /dev/null
    for good, which silenced every later log line and the CLI's JSON result."""
    with _LOAD_LOCK:
        route_llama_logs()  # under the lock: installed once, never replaced by a racing twin
        with _default_buffers(use_extra_bufts), _reasons_of_failure():
            yield


@contextlib.contextmanager
def _default_buffers(use_extra_bufts: bool) -> Iterator[None]:
    import llama_cpp.llama_cpp as native

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


@contextlib.contextmanager
def _reasons_of_failure() -> Iterator[None]:
    """A failed load raises LlamaLoadError with llama.cpp's error lines: llama-cpp-python only
    says "Failed to load model from file", and with verbose=False the lines that say why
    ("unknown model architecture: 'x'") went to /dev/null."""
    global _loading
    errors: list[str] = []
    outer, _loading = _loading, (threading.get_ident(), errors)
    try:
        yield
    except (ValueError, RuntimeError) as exc:
        reason = _reason(errors)
        if not reason:
            raise
        raise LlamaLoadError(f"{exc}: {reason}") from exc
    finally:
        _loading = outer  # the load lock is reentrant
    for line in errors:  # errors from a load that still succeeded
        sys.stderr.write(line)


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
    """A vocabulary-only Llama of the GGUF at `path` (tokenizer and metadata, no weights)."""
    with no_extra_buffers():
        from llama_cpp import Llama

        return Llama(model_path=str(path), vocab_only=True, verbose=llama_verbose())
