"""One typing session replayed through the assistant, as the language server calls it.

An arm says how the editor's traffic is sent: *before* sends the request alone after the
client's wait (work ahead off); *ahead* sends a didChange (`prefetch`) per keystroke and the
request after the wait, with the cursor resting at a new place first; *quick* is *ahead* with
quick start on. Every record carries the time from the keystroke to the suggestion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repotune.server.bench.sessions import Cursor
from repotune.server.bench.stats import rounded_percentile

# VS Code waits this long after a keystroke before it asks any inline-completion provider
# (its InlineCompletionsDebounce, min = max = 50 ms); the extension's own debounce comes on top.
EDITOR_DEBOUNCE_MS = 50

# Completion settings of the "before" arm: the engine as it was before work ahead.
BEFORE = {
    "prefill": False,
    "first_line_first": False,
    "warm_files": 0,
    "stable_context": False,
    "quick_start": False,
}
# The "ahead" arm: work ahead as the previous release did it (a new place gets its own
# snippets at once).
AHEAD = {"stable_context": False, "quick_start": False}
# The "stable" arm: work ahead, and a new place keeps the context block at first; quick start
# as configured (the default "auto": on only where the measured prompt speed is slow).
STABLE = {"stable_context": True}
# The "quick" arm: work ahead, and quick start's short prompt at new places.
QUICK = {"quick_start": True, "stable_context": False}


@dataclass
class Arm:
    """How a replay sends a session: `ahead` replays editor traffic (prefetch, debounce)."""

    name: str
    ahead: bool
    completion: dict[str, Any]


def _record(
    assistant: Any, cursor: Cursor, outcome: Any, request_ms: float, keystroke_ms: float
) -> dict[str, Any]:
    engine = assistant.engine
    cached = bool(outcome is not None and outcome.cached)
    stats = {} if cached else engine.last_stats
    timings = stats.get("timings", {})
    text = outcome.text if outcome else ""
    return {
        "session": cursor.session,
        "kind": cursor.kind,
        "path": cursor.path,
        "multiline": outcome.multiline if outcome else None,
        "text": text,
        "quick": bool(outcome is not None and outcome.quick),
        # The suggestion's first line is the rest of the real line (an empty one is a miss).
        "line_exact": _first_line(text) == cursor.expected.rstrip() if cursor.expected else None,
        "reason": engine.last_reason,
        "cached": cached,
        "total_ms": request_ms,
        "keystroke_ms": keystroke_ms,
        "retrieval_ms": outcome.timings.get("retrieval", 0.0) if outcome else 0.0,
        "tokenize_ms": timings.get("tokenize", 0.0),
        "prompt_eval_ms": timings.get("prompt_eval", 0.0),
        "generate_ms": timings.get("generate", 0.0),
        "prompt_tokens": stats.get("prompt_tokens", 0),
        "reused_tokens": stats.get("reused_tokens", 0),
        "generated_tokens": None if cached else stats.get("generated_tokens"),
        "drafted_tokens": stats.get("drafted_tokens", 0),
        "accepted_tokens": stats.get("accepted_tokens", 0),
    }


def replay(
    assistant: Any,
    root: Path,
    cursors: list[Cursor],
    arm: Arm,
    debounce_s: float,
    dwell_s: float,
    previous: Cursor | None = None,
) -> list[dict[str, Any]]:
    """One session as `arm` sends it; a record per keystroke. The engine starts cold, then
    (given `previous`, a place elsewhere) answers there and finishes its background work
    unmeasured: the session's new place is one the user moves to from another."""
    engine = assistant.engine
    engine.forget()
    if previous is not None:
        text = previous.prefix + previous.suffix
        assistant.complete(root / previous.path, text, len(previous.prefix), "python")
        engine.wait_ahead(60)
    records = []
    for cursor in cursors:
        path = root / cursor.path
        text = cursor.prefix + cursor.suffix
        offset = len(cursor.prefix)
        if arm.ahead and cursor.kind == "cold" and dwell_s > 0:
            # The cursor rests at the place (before the keystroke's character) for a while.
            assistant.prefetch(path, text[: offset - 1] + text[offset:], offset - 1, "python")
            time.sleep(dwell_s)
        engine.last_stats = {}
        keystroke = time.perf_counter()
        if arm.ahead:
            assistant.prefetch(path, text, offset, "python")  # the keystroke's didChange
            time.sleep(max(0.0, debounce_s - (time.perf_counter() - keystroke)))
        requested = time.perf_counter()
        outcome = assistant.complete(path, text, offset, "python", automatic=True)
        done = time.perf_counter()
        request_ms = (done - requested) * 1000
        # Without work ahead nothing happens during the debounce: it is added, not slept.
        keystroke_ms = (done - keystroke) * 1000 + (0.0 if arm.ahead else debounce_s * 1000)
        records.append(_record(assistant, cursor, outcome, request_ms, keystroke_ms))
    return records


def keystroke_figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Keystroke-to-suggestion p50/p95 per kind; how many answers came from quick start's
    short prompt, and how many suggestions were the rest of the real line (a quality check
    on the replayed places, not the evaluation's)."""
    report: dict[str, Any] = {}
    for kind in ("cold", "warm", "next_line"):
        of_kind = [r for r in records if r["kind"] == kind]
        checked = [r["line_exact"] for r in of_kind if r["line_exact"] is not None]
        report[kind] = {
            "requests": len(of_kind),
            "p50_ms": rounded_percentile([r["keystroke_ms"] for r in of_kind], 50),
            "p95_ms": rounded_percentile([r["keystroke_ms"] for r in of_kind], 95),
            "empty": sum(1 for r in of_kind if not r["text"]),
            "quick": sum(1 for r in of_kind if r["quick"]),
            "line_exact": round(sum(checked) / len(checked), 3) if checked else None,
        }
    return report


def _first_line(text: str) -> str:
    return text.strip("\n").split("\n")[0].rstrip()


def first_lines_agree(before: list[dict[str, Any]], ahead: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the before arm proposed a block: does the ahead arm's answer (its first line, on
    an empty line) start the same way? Acceptance of the first line is what it can change."""
    pairs = [
        (b["text"], a["text"])
        for b, a in zip(before, ahead, strict=True)
        if b["multiline"] and b["text"].strip()
    ]

    same = sum(1 for b, a in pairs if _first_line(b) == _first_line(a))
    return {"blocks": len(pairs), "same_first_line": same}
