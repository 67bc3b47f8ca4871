"""GPU offload: what the llama.cpp build can do, the layers to offload, the CPU fallback."""

from __future__ import annotations

import ctypes
import logging
import platform
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

# llama-cpp-python maps n_gpu_layers=-1 to "every layer" (the output layer included).
ALL_LAYERS = -1
BACKEND_FLAGS = {
    "cuda": "-DGGML_CUDA=on",
    "metal": "-DGGML_METAL=on",
    "hip": "-DGGML_HIP=on",
    "vulkan": "-DGGML_VULKAN=on",
}
_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}
_LOAD_ERRORS = (ValueError, RuntimeError, OSError)

T = TypeVar("T")


def offload_supported() -> bool:
    """Whether this llama-cpp-python build has a GPU backend (False when it is not installed)."""
    try:
        import llama_cpp
    except ImportError:
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())


def requested_layers(setting: int | str, supported: bool) -> int:
    """n_gpu_layers for a `model.gpu_layers` setting: "auto" (or -1) = all when the build can."""
    if not supported:
        return 0
    if setting == "auto" or setting == -1:
        return ALL_LAYERS
    return int(setting)


def block_count(metadata: Mapping[str, Any]) -> int:
    """A GGUF model's transformer blocks, from its metadata."""
    return int(metadata.get(f"{metadata.get('general.architecture', '')}.block_count", 0))


def offloaded_layers(requested: int, block_count: int) -> int:
    """Layers llama.cpp puts on the device: the blocks plus the output layer, at most."""
    total = block_count + 1
    return total if requested < 0 else min(requested, total)


def load_with_fallback(
    load: Callable[[int], T], layers: int, what: str
) -> tuple[T, int, str | None]:
    """Load with `layers` offloaded; if the device cannot take the model, load on the CPU.
    Returns the model, the layers actually asked for, and the message saying why it fell back."""
    if layers == 0:
        return load(0), 0, None
    try:
        return load(layers), layers, None
    except _LOAD_ERRORS as exc:
        message = f"{what}: GPU offload failed ({exc}); running on the CPU"
        log.warning("%s", message)
    return load(0), 0, message


def _ggml() -> Any | None:
    """libggml of the installed llama-cpp-python (the backend registry lives there)."""
    try:
        import llama_cpp
    except ImportError:
        return None
    folder = Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml.so", "libggml.dylib", "ggml.dll"):
        if (folder / name).exists():
            try:
                lib = ctypes.CDLL(str(folder / name))
            except OSError:
                return None
            lib.ggml_backend_reg_count.restype = ctypes.c_size_t
            lib.ggml_backend_reg_get.restype = ctypes.c_void_p
            lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
            lib.ggml_backend_reg_name.restype = ctypes.c_char_p
            lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
            lib.ggml_backend_dev_count.restype = ctypes.c_size_t
            lib.ggml_backend_dev_get.restype = ctypes.c_void_p
            lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
            for function in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
                getattr(lib, function).restype = ctypes.c_char_p
                getattr(lib, function).argtypes = [ctypes.c_void_p]
            lib.ggml_backend_dev_type.restype = ctypes.c_int
            lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
            lib.ggml_backend_dev_memory.restype = None
            lib.ggml_backend_dev_memory.argtypes = [
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_size_t),
                ctypes.POINTER(ctypes.c_size_t),
            ]
            return lib
    return None


def backend_report() -> dict[str, Any]:
    """The build's ggml backends and the devices they see (read from ggml's registry)."""
    lib = _ggml()
    if lib is None:
        return {"backends": [], "devices": []}
    backends = [
        lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)).decode()
        for i in range(lib.ggml_backend_reg_count())
    ]
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
        devices.append(
            {
                "name": lib.ggml_backend_dev_name(device).decode(),
                "description": lib.ggml_backend_dev_description(device).decode(),
                "type": _DEVICE_TYPES.get(lib.ggml_backend_dev_type(device), "other"),
                "memory_mb": round(total.value / 2**20),
            }
        )
    return {"backends": backends, "devices": devices}


def likely_backend() -> str:
    """The backend this machine most likely wants, for the install hint."""
    if platform.system() == "Darwin":
        return "metal"
    if shutil.which("nvidia-smi") or Path("/proc/driver/nvidia").exists():
        return "cuda"
    if shutil.which("rocminfo") or Path("/dev/kfd").exists():
        return "hip"
    return "cuda"


def install_commands(backend: str, version: str) -> dict[str, str]:
    """The exact commands that rebuild llama-cpp-python with a GPU backend."""
    return {
        "backend": backend,
        "make": f"make install GPU={backend}   (or make install-server GPU={backend})",
        "pip": f'CMAKE_ARGS="{BACKEND_FLAGS[backend]}" pip install --no-cache-dir --no-binary '
        f"llama-cpp-python --force-reinstall --no-deps llama-cpp-python=={version}",
        "other_backends": ", ".join(f"GPU={name}" for name in BACKEND_FLAGS if name != backend),
    }
