"""Stored benchmark results: the JSON a benchmark printed, with what it takes to trust it later.

Each file holds the command line, the RepoTune commit it ran (and whether the tree had uncommitted
changes), the machine and the time, beside the benchmark's own JSON. The README quotes figures
from the files committed in `server/bench/results/` (`repotune bench ... --save DIR`).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout, for an editable install


def run_machine() -> dict[str, Any]:
    """The few machine facts a benchmark's own JSON carries, with the load when it starts."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def machine_facts() -> dict[str, Any]:
    """CPU, cores, memory, platform, versions, GPU offload and the load when asked."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = psutil.cpu_count(logical=False) or 0
    logical = psutil.cpu_count() or 0
    memory = psutil.virtual_memory().total / 2**30
    try:
        import llama_cpp

        llama: str | None = llama_cpp.__version__
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
    except ImportError:  # pragma: no cover - the engine needs it anyway
        llama, gpu = None, False
    summary = (
        f"{cpu}, GPU offload, {memory:.0f} GiB RAM"
        if gpu
        else f"{cpu}, {cores} cores / {logical} threads, {memory:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, no GPU offload"
    )
    return {
        "summary": summary,
        "cpu": cpu,
        "physical_cores": cores,
        "logical_cores": logical,
        "memory_gib": round(memory, 1),
        "gpu_offload": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "llama_cpp_python": llama,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def git_commit(root: Path = SOURCE_ROOT) -> dict[str, Any] | None:
    """The commit of the RepoTune checkout at `root` and whether its tree is dirty; None when
    RepoTune does not run from a git checkout (an installed wheel)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    try:
        if Path(git("rev-parse", "--show-toplevel").strip()).resolve() != root.resolve():
            return None  # installed inside some other repository (a virtualenv in a project)
        commit = git("rev-parse", "HEAD").strip()
        changes = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"sha": commit, "dirty": bool(changes.strip())}


def source_commit() -> dict[str, Any]:
    """The commit fields an evaluation report carries: {"commit": sha, "dirty": bool}, both None
    outside a checkout."""
    found = git_commit()
    if found is None:
        return {"commit": None, "dirty": None}
    return {"commit": found["sha"], "dirty": found["dirty"]}


def record(benchmark: str, result: dict[str, Any], argv: list[str] | None = None) -> dict[str, Any]:
    """The stored form of one result."""
    args = sys.argv[1:] if argv is None else argv
    return {
        "benchmark": benchmark,
        "command": shlex.join(["repotune", *args]),
        "commit": git_commit(),
        "machine": machine_facts(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": result,
    }


def save_result(
    benchmark: str, result: dict[str, Any], directory: Path, argv: list[str] | None = None
) -> Path:
    """Write `<directory>/<benchmark>-<UTC time>.json` (never over an earlier file)."""
    entry = record(benchmark, result, argv)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(entry["timestamp"]).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{benchmark}-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{benchmark}-{stamp}-{n}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
