"""`repotune bench complete PATH`: completion latency on a real codebase, as one JSON object.

It indexes PATH, then replays typing sessions (sessions.py) at sampled cursor positions in its
Python files: a *cold* request is the first of a session (a new place in a file, so little KV
cache to reuse); *warm* requests follow it as the user types the next characters of the real
line; a *next_line* request ends each session (the line finished, Enter, the first request on
the new line below it).

Each session is replayed four times from the same start: the result cache, kept snippets and KV
caches dropped, then a request at the previous session's place (or, `--within-file`, at a line
40 lines away in the same file), unmeasured, with its background work finished (so a session's
new place is one the user moves to from another). Through the
assistant as the language server calls it (replay.py):
- *before*: the request alone, with work ahead off (no prefill, whole blocks, one KV cache): the
  figures of earlier runs, kept under the same keys (cold, warm, next_line...);
- *ahead*: as VS Code with the RepoTune extension sends it: the cursor comes to rest at the new
  place (a ``repotune/prefetch``) `dwell_ms` before the first keystroke; every keystroke is a
  didChange (a prefetch), and the completion request follows after the client's wait (VS Code's
  own 50 ms debounce plus the extension's ``completion.debounce_ms``); a new place gets its own
  snippets at once (``stable_context`` off);
- *stable*: the defaults: as *ahead*, with ``completion.stable_context`` on (completion/sticky.py:
  a new place one of whose top two snippets the cached context block shows keeps that block
  until its own snippets' prompt is evaluated) and quick start as configured (the default
  "auto" turns it on only where the measured prompt speed is slow);
- *quick*: as *ahead*, with quick start on (completion/quick_start.py: a new place's first
  answers come from a short prompt while the full one is evaluated in the background).
All report the time from the keystroke to the suggestion (``keystroke_ms``: the client's wait
plus the request), per kind, how often a suggestion's first line was the rest of the real line,
and the work-ahead arms how much prefilled work no request used.

PATH may also be ``pypi:NAME==VERSION``: the pinned package's wheel is downloaded once with pip
into ``cache_dir()/corpora/`` and unpacked (`ensure_corpus`), so the figures are reproducible.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from repotune.server.bench.replay import (
    AHEAD,
    BEFORE,
    EDITOR_DEBOUNCE_MS,
    QUICK,
    STABLE,
    Arm,
    first_lines_agree,
    keystroke_figures,
    replay,
)
from repotune.server.bench.sessions import (
    MOVE_LINES,
    Cursor,
    place_in_same_file,
    sample_sessions,
)
from repotune.server.bench.stats import rounded_percentile
from repotune.server.config import Settings, settings_with
from repotune.server.corpora import ensure_corpus
from repotune.server.models import ModelError

DEFAULT_CORPUS = "requests==2.32.3"
TIME_BUDGET_S = 1200.0
AB_SESSIONS = 8  # sessions replayed twice (prompt lookup off/on)
DWELL_MS = 1000  # how long the cursor rests at a new place before the first keystroke


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
    prompt_eval_ms = sum(r["prompt_eval_ms"] for r in served)
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
        "prefill_tokens_per_s": (
            round((prompt_tokens - reused) / (prompt_eval_ms / 1000)) if prompt_eval_ms else None
        ),
        "share_outside_generation": round(outside / spent, 3) if spent else None,
        "mean_ms": {
            key: round(statistics.mean(r[f"{key}_ms"] for r in served), 1) if served else None
            for key in ("retrieval", "tokenize", "prompt_eval", "generate", "total")
        },
    }


# --------------------------------------------------------------------------- run


def _with_completion(assistant: Any, settings: Settings, completion: dict[str, Any]) -> None:
    assistant.engine.reload(settings_with(settings, {"completion": completion}, "bench"))


def _compare_prompt_lookup(
    assistant: Any, root: Path, settings: Settings, sessions: list[list[Cursor]], debounce_s: float
) -> dict[str, Any]:
    """Replay sessions with prompt lookup off and on, alternating, so load drifts hit both."""
    subset = sessions[:AB_SESSIONS]
    results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    try:
        for cursors in subset:
            for lookup in (False, True):
                arm = Arm("lookup", False, {**BEFORE, "prompt_lookup": lookup})
                _with_completion(assistant, settings, arm.completion)
                results[lookup].extend(replay(assistant, root, cursors, arm, debounce_s, 0.0))
    finally:
        assistant.engine.reload(settings)
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


def _open(workspace: Path, settings: Settings) -> tuple[Any, float, bool]:
    """The assistant with `workspace` indexed and its model loaded; (assistant, index s, idle)."""
    from repotune.server.assistant import Assistant

    assistant = Assistant(settings.model_dump())
    started = time.perf_counter()
    assistant.add_folder(workspace, watch=False)
    assistant.start()  # the model loads while the index builds
    index = assistant.folders.index_for(workspace)
    idle = index.wait_idle(timeout=600)
    index_s = time.perf_counter() - started
    engine = assistant.engine
    if engine is None or not engine.wait_ready(600):
        assistant.close()
        raise ModelError(
            (engine.load_error if engine else None) or "the generator did not load in time"
        )
    return assistant, index_s, idle


def run_bench_complete(
    workspace: Path,
    settings: Settings,
    samples: int = 100,
    time_budget_s: float = TIME_BUDGET_S,
    compare_prompt_lookup: bool = True,
    dwell_ms: int = DWELL_MS,
    within_file: bool = False,
) -> dict[str, Any]:
    """Index `workspace`, replay sampled typing sessions, print (and return) the JSON report.
    `within_file`: each new place is reached from elsewhere in its own file."""
    name = workspace.name
    if name.startswith("pypi:"):
        workspace = ensure_corpus(name[len("pypi:") :])
    elif not workspace.is_dir():
        raise SystemExit(f"repotune: {workspace} is not a directory")
    workspace = workspace.resolve()
    sessions = sample_sessions(workspace, samples)
    # The client's wait between a keystroke and its request: the editor's debounce, then ours.
    wait_ms = EDITOR_DEBOUNCE_MS + settings.completion.debounce_ms
    wait_s = wait_ms / 1000
    arms = (
        Arm("before", False, BEFORE),
        Arm("ahead", True, AHEAD),
        Arm("stable", True, STABLE),
        Arm("quick", True, QUICK),
    )

    assistant, index_s, index_idle = _open(workspace, settings)
    engine = assistant.engine
    try:
        records: dict[str, list[dict[str, Any]]] = {arm.name: [] for arm in arms}
        bench_started = time.perf_counter()
        truncated = False
        work: dict[str, dict[str, int]] = {arm.name: {} for arm in arms}
        for number, cursors in enumerate(sessions):
            if time.perf_counter() - bench_started > time_budget_s:
                truncated = True
                break
            # The user arrives from the previous session's place (the first from the last's),
            # or from elsewhere in the same file.
            previous = sessions[number - 1][0] if len(sessions) > 1 else None
            if within_file:
                previous = place_in_same_file(workspace, cursors[0])
            for arm in arms:
                _with_completion(assistant, settings, arm.completion)
                counted = dict(engine.ahead_stats)
                records[arm.name].extend(
                    replay(assistant, workspace, cursors, arm, wait_s, dwell_ms / 1000, previous)
                )
                engine.wait_ahead(60)
                for key, value in engine.ahead_stats.items():
                    work[arm.name][key] = work[arm.name].get(key, 0) + value - counted.get(key, 0)
        engine.reload(settings)
        lookup_ab = None
        if compare_prompt_lookup and not truncated:
            lookup_ab = _compare_prompt_lookup(assistant, workspace, settings, sessions, wait_s)
        status = engine.status()
        index_stats = _index_stats(assistant.folders.index_for(workspace))
    finally:
        assistant.close()

    before, ahead, quick = records["before"], records["ahead"], records["quick"]
    stable = records["stable"]
    report = _report(workspace, settings, status, index_s, index_idle, index_stats, before)
    report["truncated_by_time_budget"] = truncated
    # Latency at a new place scales with these: hosts are compared by them, not by name.
    report["host_speed"] = {
        "prefill_tokens_per_s": report["cold"]["prefill_tokens_per_s"],
        "decode_tokens_per_s": report["cold"]["decode_tokens_per_s"],
        "measured_on": "the before arm's new places (whole prompts evaluated, no work ahead)",
    }
    report["lookup_ab"] = lookup_ab
    report["editor"] = {
        "debounce_ms": settings.completion.debounce_ms,
        "editor_debounce_ms": EDITOR_DEBOUNCE_MS,
        "wait_ms": wait_ms,
        "dwell_ms": dwell_ms,
        "new_place_from": (
            f"the end of the line {MOVE_LINES} lines above in the same file (below near its top)"
            if within_file
            else "another place (the previous session's first)"
        )
        + ", answered and its background work finished before the cursor moves",
        "before": keystroke_figures(before),
        "ahead": keystroke_figures(ahead),
        "stable": keystroke_figures(stable),
        "quick": keystroke_figures(quick),
        "quick_settings": {
            key: getattr(settings.completion, key)
            for key in ("quick_prefix_tokens", "quick_suffix_tokens", "quick_start_min_tokens")
        },
        "ahead_requests": _summary_per_kind(ahead),
        "stable_requests": _summary_per_kind(stable),
        "quick_requests": _summary_per_kind(quick),
        "prefill": _prefill_work(work["ahead"]),
        "stable_prefill": _prefill_work(work["stable"]),
        "quick_prefill": _prefill_work(work["quick"]),
        "first_line": first_lines_agree(before, ahead),
        "targets_ms": {"cold_p50": 700, "next_line_p50": 500, "warm_p50": 150},
        "examples": [{k: r[k] for k in ("path", "kind", "text", "reason")} for r in ahead[:6]],
    }
    print(json.dumps(report, indent=2))
    return report


def _summary_per_kind(records: list[dict[str, Any]]) -> dict[str, Any]:
    """An arm's request-level figures for each kind of place."""
    return {
        kind: _summary([r for r in records if r["kind"] == kind])
        for kind in ("cold", "warm", "next_line")
    }


def _prefill_work(stats: dict[str, int]) -> dict[str, Any]:
    """An arm's work-ahead counters, with how much prefilled work no request kept."""
    prefilled = stats.get("prefill_tokens", 0)
    used = stats.get("prefill_used_tokens", 0)
    return {
        **stats,
        "wasted_tokens": prefilled - used,
        "wasted_share": round(1 - used / prefilled, 3) if prefilled else None,
    }


def _report(
    workspace: Path,
    settings: Settings,
    status: dict[str, Any],
    index_s: float,
    index_idle: bool,
    index_stats: dict[str, Any],
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """The request-level figures (the keys earlier runs reported)."""
    cold = [r for r in records if r["kind"] == "cold"]
    warm = [r for r in records if r["kind"] == "warm"]
    warm_single = [r for r in warm if r["multiline"] is False or r["multiline"] is None]
    report: dict[str, Any] = {
        "benchmark": "complete",
        "corpus": str(workspace),
        "samples": len(records),
        "sessions": len({r["session"] for r in records}),
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
                "debounce_ms",
            }
        ),
        "index": {"seconds": round(index_s, 1), "idle": index_idle, **index_stats},
        "cold": _summary(cold),
        "warm": _summary(warm),
        "warm_single_line": _summary(warm_single),
        "cold_multi_line": _summary([r for r in cold if r["multiline"]]),
        "next_line": _summary([r for r in records if r["kind"] == "next_line"]),
        "targets": {
            "warm_share_outside_generation_max": 0.35,
            "warm_single_line_p50_ms_max": 300,
        },
        "examples": [
            {k: r[k] for k in ("path", "kind", "multiline", "text", "reason")} for r in records[:6]
        ],
    }
    share = report["warm"]["share_outside_generation"]
    report["targets"]["met_share"] = share is not None and share <= 0.35
    p50 = report["warm_single_line"]["latency_ms_p50"]
    report["targets"]["met_p50"] = p50 is not None and p50 <= 300
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
