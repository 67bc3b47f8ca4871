"""`repotune bench complete PATH`: completion latency on a real codebase, as one JSON object.

It indexes PATH, then replays typing sessions at sampled cursor positions in its Python files:
- a *cold* request is the first of a session (a new place in a file, so little KV cache to reuse);
- *warm* requests follow it as the user types the next characters of the real line, each one a
  full request (retrieval + prompt + generation), the way an editor sends them;
- a *next_line* request ends each session: the line finished, Enter, the first request on the
  new line below it (the common way a cold request happens while writing code).
Most sessions start mid-line (single-line completions, the common case); one in four starts on
an empty line in a function body (a block). The text after the cursor on the cursor's line is
removed (the user has not typed it yet), everything else in the file stays.

PATH may also be ``pypi:NAME==VERSION``: the pinned package's wheel is downloaded once with pip
into ``cache_dir()/corpora/`` and unpacked (`ensure_corpus`), so the figures are reproducible.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repotune.server.bench.stats import rounded_percentile
from repotune.server.completion.context import as_snippets
from repotune.server.completion.engine import CompletionEngine
from repotune.server.completion.request import CompletionRequest
from repotune.server.config import Settings, settings_with
from repotune.server.corpora import ensure_corpus
from repotune.server.index.workspace import WorkspaceIndex
from repotune.server.models import ModelError

DEFAULT_CORPUS = "requests==2.32.3"
WARM_KEYSTROKES = 3
BLOCK_SHARE = 0.25
TIME_BUDGET_S = 1200.0
SEED = 20240601
AB_SESSIONS = 8  # sessions replayed twice (prompt lookup off/on)


# --------------------------------------------------------------------------- corpus


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Cursor:
    path: str  # workspace-relative
    prefix: str
    suffix: str
    kind: str  # "cold" | "warm" | "next_line" (Enter at the end of the typed line)
    session: int


def _python_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part.startswith(".") or part in ("__pycache__",) for part in parts):
            continue
        if path.stat().st_size < 200_000:
            files.append(path)
    return files


def _candidate_lines(lines: list[str]) -> list[int]:
    picks = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not line.startswith("    ") or len(stripped) < 12:
            continue
        if stripped[0] in "#\"'@" or stripped.startswith(("def ", "class ", "return\n")):
            continue
        picks.append(index)
    return picks


def sample_sessions(root: Path, samples: int, seed: int = SEED) -> list[list[Cursor]]:
    """Typing sessions totalling at least `samples` cursor positions, in a seeded order."""
    rng = random.Random(seed)
    files = _python_files(root)
    if not files:
        raise SystemExit(f"repotune: no Python files under {root}")
    texts = {path: path.read_text(encoding="utf-8", errors="replace") for path in files}
    pool = [(path, index) for path in files for index in _candidate_lines(texts[path].split("\n"))]
    if not pool:
        raise SystemExit(f"repotune: no code lines to complete under {root}")
    rng.shuffle(pool)
    sessions: list[list[Cursor]] = []
    total = 0
    for session, (path, index) in enumerate(pool):
        if total >= samples:
            break
        lines = texts[path].split("\n")
        before = "\n".join(lines[:index]) + ("\n" if index else "")
        after = "\n" + "\n".join(lines[index + 1 :])
        line = lines[index]
        indent = line[: len(line) - len(line.lstrip())]
        relative = path.relative_to(root).as_posix()
        cursors: list[Cursor] = []
        if rng.random() < BLOCK_SHARE:
            # An empty line in a body, before the real line; then its first characters typed.
            start = indent
            suffix = "\n" + line + after
            cursors.append(Cursor(relative, before + start, suffix, "cold", session))
            typed = line[len(indent) :]
            for step in range(1, WARM_KEYSTROKES + 1):
                cursors.append(
                    Cursor(relative, before + indent + typed[:step], suffix, "warm", session)
                )
        else:
            content = line[len(indent) :]
            column = len(indent) + rng.randint(2, max(2, len(content) // 2))
            for step in range(WARM_KEYSTROKES + 1):
                end = min(len(line), column + step)
                kind = "cold" if step == 0 else "warm"
                cursors.append(Cursor(relative, before + line[:end], after, kind, session))
        # The line done, Enter: the first request on the new line below it.
        cursors.append(Cursor(relative, before + line + "\n" + indent, after, "next_line", session))
        sessions.append(cursors)
        total += len(cursors)
    return sessions


# --------------------------------------------------------------------------- statistics


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    served = [r for r in records if not r["cached"] and r["generated_tokens"] is not None]
    totals = [r["total_ms"] for r in records]
    outside = sum(r["total_ms"] - r["generate_ms"] for r in served)
    spent = sum(r["total_ms"] for r in served)
    decode_tokens = sum(max(0, r["generated_tokens"] - 1) for r in served)
    decode_ms = sum(r["generate_ms"] for r in served)
    prompt_tokens = sum(r["prompt_tokens"] for r in served)
    reused = sum(r["reused_tokens"] for r in served)
    return {
        "requests": len(records),
        "model_served": len(served),
        "cache_hits": sum(1 for r in records if r["cached"]),
        "empty": sum(1 for r in records if not r["text"]),
        "latency_ms_p50": rounded_percentile(totals, 50),
        "latency_ms_p95": rounded_percentile(totals, 95),
        "model_latency_ms_p50": rounded_percentile([r["total_ms"] for r in served], 50),
        "model_latency_ms_p95": rounded_percentile([r["total_ms"] for r in served], 95),
        "retrieval_ms_p50": rounded_percentile([r["retrieval_ms"] for r in records], 50),
        "prompt_eval_ms_p50": rounded_percentile([r["prompt_eval_ms"] for r in served], 50),
        "prompt_tokens_mean": round(prompt_tokens / len(served), 1) if served else None,
        "kv_reuse_ratio": round(reused / prompt_tokens, 3) if prompt_tokens else None,
        "generated_tokens_mean": (
            round(statistics.mean(r["generated_tokens"] for r in served), 1) if served else None
        ),
        "decode_tokens_per_s": round(decode_tokens / (decode_ms / 1000), 1) if decode_ms else None,
        "share_outside_generation": round(outside / spent, 3) if spent else None,
        "mean_ms": {
            key: round(statistics.mean(r[f"{key}_ms"] for r in served), 1) if served else None
            for key in ("retrieval", "tokenize", "prompt_eval", "generate", "total")
        },
    }


# --------------------------------------------------------------------------- run


def _replay(
    engine: Any, index: Any, settings: Settings, cursors: list[Cursor], name: str
) -> list[dict[str, Any]]:
    """Send one session's requests as an editor would: retrieval, then completion."""
    records = []
    for cursor in cursors:
        t0 = time.perf_counter()
        chunks = []
        if engine.wants_context(cursor.path, cursor.prefix):  # once per line, as the LSP does
            chunks = index.search_cursor(
                cursor.path, cursor.prefix, cursor.suffix, settings.retrieval.top_k
            )
        retrieval_ms = (time.perf_counter() - t0) * 1000
        request = CompletionRequest(
            cursor.path, "python", cursor.prefix, cursor.suffix, as_snippets(chunks), name
        )
        engine.last_stats = {}
        result = engine.complete(request)
        total_ms = (time.perf_counter() - t0) * 1000
        # An emptied completion still cost a generation: take its figures from last_stats.
        stats = engine.last_stats if result is None else {}
        timings = result.timings if result else stats.get("timings", {})

        def pick(key: str, default: Any, result: Any = result, stats: dict = stats) -> Any:
            return getattr(result, key) if result is not None else stats.get(key, default)

        records.append(
            {
                "session": cursor.session,
                "kind": cursor.kind,
                "path": cursor.path,
                "multiline": result.multiline if result else None,
                "text": result.text if result else "",
                "reason": engine.last_reason,
                "cached": bool(result and result.cached),
                "total_ms": total_ms,
                "retrieval_ms": retrieval_ms,
                "tokenize_ms": timings.get("tokenize", 0.0),
                "prompt_eval_ms": timings.get("prompt_eval", 0.0),
                "generate_ms": timings.get("generate", 0.0),
                "prompt_tokens": pick("prompt_tokens", 0),
                "reused_tokens": pick("reused_tokens", 0),
                "generated_tokens": pick("generated_tokens", None),
                "drafted_tokens": pick("drafted_tokens", 0),
                "accepted_tokens": pick("accepted_tokens", 0),
            }
        )
    return records


def _compare_prompt_lookup(
    engine: Any, index: Any, settings: Settings, sessions: list[list[Cursor]], name: str
) -> dict[str, Any]:
    """Replay sessions with prompt lookup off and on, alternating, so load drifts hit both."""
    subset = sessions[:AB_SESSIONS]
    results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    try:
        for cursors in subset:
            for lookup in (False, True):
                engine.reload(
                    settings_with(settings, {"completion": {"prompt_lookup": lookup}}, "bench")
                )
                engine._loaded.llm.reset()  # same cold start for both arms
                results[lookup].extend(_replay(engine, index, settings, cursors, name))
    finally:
        engine.reload(settings)
    report: dict[str, Any] = {"sessions": len(subset)}
    for lookup, records in results.items():
        served = [r for r in records if not r["cached"] and r["generated_tokens"] is not None]
        drafted = sum(r["drafted_tokens"] for r in served)
        summary = _summary(records)
        report["on" if lookup else "off"] = {
            "latency_ms_p50": summary["latency_ms_p50"],
            "warm_latency_ms_p50": _summary([r for r in records if r["kind"] == "warm"])[
                "latency_ms_p50"
            ],
            "decode_tokens_per_s": summary["decode_tokens_per_s"],
            "generate_ms_total": round(sum(r["generate_ms"] for r in served), 1),
            "generated_tokens": sum(r["generated_tokens"] for r in served),
            "drafted_tokens": drafted,
            "acceptance": round(sum(r["accepted_tokens"] for r in served) / drafted, 3)
            if drafted
            else None,
        }
    off, on = report["off"], report["on"]
    report["helps"] = bool(
        on["decode_tokens_per_s"]
        and off["decode_tokens_per_s"]
        and on["decode_tokens_per_s"] > off["decode_tokens_per_s"] * 1.05
    )
    return report


def run_bench_complete(
    workspace: Path,
    settings: Settings,
    samples: int = 100,
    time_budget_s: float = TIME_BUDGET_S,
    compare_prompt_lookup: bool = True,
) -> dict[str, Any]:
    """Index `workspace`, replay sampled typing sessions, print (and return) the JSON report."""
    name = workspace.name
    if name.startswith("pypi:"):
        workspace = ensure_corpus(name[len("pypi:") :])
    elif not workspace.is_dir():
        raise SystemExit(f"repotune: {workspace} is not a directory")
    workspace = workspace.resolve()
    sessions = sample_sessions(workspace, samples)

    engine = CompletionEngine(settings)
    engine.start_loading()  # loads while the index builds
    index = WorkspaceIndex(workspace, settings)
    started = time.perf_counter()
    index.start(watch=False)
    index_idle = index.wait_idle(timeout=600)
    index_s = time.perf_counter() - started
    try:
        if not engine.wait_ready(600):
            raise ModelError(engine.load_error or "the generator did not load in time")
        records: list[dict[str, Any]] = []
        bench_started = time.perf_counter()
        truncated = False
        for cursors in sessions:
            if time.perf_counter() - bench_started > time_budget_s:
                truncated = True
                break
            records.extend(_replay(engine, index, settings, cursors, name))
        lookup_ab = None
        if compare_prompt_lookup and not truncated:
            lookup_ab = _compare_prompt_lookup(engine, index, settings, sessions, name)
        status = engine.status()
    finally:
        engine.close()
        index.close()

    cold = [r for r in records if r["kind"] == "cold"]
    warm = [r for r in records if r["kind"] == "warm"]
    warm_single = [r for r in warm if r["multiline"] is False or r["multiline"] is None]
    report: dict[str, Any] = {
        "benchmark": "complete",
        "corpus": str(workspace),
        "samples": len(records),
        "sessions": len({r["session"] for r in records}),
        "truncated_by_time_budget": truncated,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "llama_cpp": _llama_version(),
        },
        "model": {
            key: status.get(key)
            for key in ("model", "adapter", "format", "threads", "gpu_offload", "prompt_lookup")
        },
        "settings": settings.completion.model_dump(
            include={
                "context_tokens",
                "prefix_tokens",
                "suffix_tokens",
                "max_tokens_line",
                "max_tokens_block",
                "time_cap_ms",
                "prompt_lookup",
            }
        ),
        "index": {"seconds": round(index_s, 1), "idle": index_idle, **_index_stats(index)},
        "cold": _summary(cold),
        "warm": _summary(warm),
        "warm_single_line": _summary(warm_single),
        "cold_multi_line": _summary([r for r in cold if r["multiline"]]),
        "next_line": _summary([r for r in records if r["kind"] == "next_line"]),
        "targets": {
            "warm_share_outside_generation_max": 0.35,
            "warm_single_line_p50_ms_max": 300,
        },
        "prompt_lookup_ab": lookup_ab,
        "examples": [
            {k: r[k] for k in ("path", "kind", "multiline", "text", "reason")} for r in records[:6]
        ],
    }
    warm_summary = report["warm"]
    report["targets"]["met_share"] = (
        warm_summary["share_outside_generation"] is not None
        and warm_summary["share_outside_generation"] <= 0.35
    )
    p50 = report["warm_single_line"]["latency_ms_p50"]
    report["targets"]["met_p50"] = p50 is not None and p50 <= 300
    print(json.dumps(report, indent=2))
    return report


def _index_stats(index: Any) -> dict[str, Any]:
    try:
        stats = index.stats()
    except Exception:
        return {}
    return {k: stats.get(k) for k in ("files", "chunks", "dense_pending")}


def _llama_version() -> str:
    try:
        import llama_cpp

        return str(llama_cpp.__version__)
    except ImportError:
        return "missing"


def main(argv: list[str] | None = None) -> None:
    """``python -m repotune.server.bench.complete fetch [NAME==VERSION]`` prints the corpus path."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["fetch"]:
        print(ensure_corpus(args[1] if len(args) > 1 else DEFAULT_CORPUS))
        return
    raise SystemExit("usage: python -m repotune.server.bench.complete fetch [NAME==VERSION]")


if __name__ == "__main__":
    main()
