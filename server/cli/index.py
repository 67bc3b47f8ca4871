"""`repotune index` and `repotune search`: thin adapters over `WorkspaceIndex`."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from repotune.server.config import Settings
from repotune.server.folders import too_broad_to_index
from repotune.server.index.shared import push_all
from repotune.server.index.workspace import WorkspaceIndex

PREVIEW_LINES = 6


class _Bars:
    """One tqdm bar per phase, fed by the index's progress events (from worker threads)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        phase = event["phase"]
        if phase not in ("lexical", "dense"):
            return
        with self._lock:
            bar = self._bars.get(phase)
            if bar is None:
                label = "lexical index" if phase == "lexical" else "dense vectors"
                unit = "file" if phase == "lexical" else "chunk"
                bar = self._tqdm(
                    total=event["total"],
                    desc=label,
                    unit=unit,
                    file=sys.stderr,
                    dynamic_ncols=True,
                    leave=True,
                )
                self._bars[phase] = bar
            if event["total"] and bar.total != event["total"]:
                bar.total = event["total"]
            bar.n = event["done"]
            bar.refresh()

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()


def _summary(index: WorkspaceIndex) -> str:
    stats = index.stats()
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(stats["skipped"].items()))
    lines = [
        f"index     {stats['location']}",
        f"files     {stats['files']}   chunks {stats['chunks']}"
        + (f"   dense pending {stats['dense_pending']}" if stats["dense_enabled"] else ""),
        f"skipped   {skipped or 'none'}",
    ]
    if stats["embedder_error"]:
        lines.append(f"dense     unavailable: {stats['embedder_error']}")
    shared = stats.get("shared_index")
    if shared:
        lines.append(
            f"shared    {shared['url']} {shared['state']}: {shared['fetched']} vectors fetched, "
            f"{shared['pushed']} pushed"
        )
    for error in stats["last_errors"]:
        lines.append(f"error     {error}")
    return "\n".join(lines)


def require_indexable(workspace: Path) -> None:
    """Exit saying why when RepoTune may not index `workspace` (the home folder and the file
    system's root are refused here as the server refuses them). That it is a folder was checked
    before its settings were read (app.settings_for)."""
    problem = too_broad_to_index(workspace)
    if problem:
        raise SystemExit(f"repotune: {workspace}: {problem}")


def run_index(workspace: Path, settings: Settings, watch: bool, push: bool = False) -> None:
    """Index (or bring up to date) a workspace; with `push`, then upload every vector the shared
    index lacks; with `watch`, follow changes until Ctrl-C."""
    require_indexable(workspace)
    if push and not settings.index.chroma_url:
        raise SystemExit("repotune: --push needs a shared index: --set index.chroma_url=URL")
    if push and not settings.index.dense:
        raise SystemExit("repotune: --push needs dense vectors (index.dense is false)")
    bars = _Bars()
    index = WorkspaceIndex(workspace, settings, bars)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGINT, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        index.start(watch=watch)
        while not stop.is_set() and not index.wait_idle(0.5):
            pass
        bars.close()
        if stop.is_set():
            print(
                "interrupted: the index is consistent and resumes where it stopped", file=sys.stderr
            )
        else:
            print(_summary(index))
            if push:
                _push(index)
        if watch and not stop.is_set():
            print("watching for changes (Ctrl-C to stop)", file=sys.stderr)
            stop.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        bars.close()
        index.close()


def _push(index: WorkspaceIndex) -> None:
    shared = index.shared
    if shared is None:  # no embedder checksum (the embedder could not be resolved)
        raise SystemExit(f"repotune: --push: no dense index ({index.embedder_error})")
    if index.store.dense_pending_count():
        raise SystemExit("repotune: --push: some chunks still have no vector; nothing uploaded")
    try:
        counts = push_all(index.store.vectors, shared)
    except Exception as exc:  # the server's own error says why (down, refused, bad tenant)
        raise SystemExit(f"repotune: --push: {shared.remote.server.url}: {exc}") from None
    print(
        f"shared    {shared.remote.server.url} {shared.remote.name}: {counts['uploaded']} "
        f"vectors uploaded, {counts['already_there']} already there"
    )


def run_search(workspace: Path, settings: Settings, query: str, k: int, as_json: bool) -> None:
    """Bring the lexical index up to date, then print the top-k chunks for `query`."""
    require_indexable(workspace)
    index = WorkspaceIndex(workspace, settings)
    try:
        started = time.perf_counter()
        index.start(watch=False, dense=False)  # reconcile lexically; no dense fill here
        index.wait_lexical(timeout=3600)
        note = None
        if settings.index.dense:
            try:
                index.load_query_embedder()
            except Exception as exc:
                note = f"dense search unavailable: {exc}"
            pending = index.store.dense_pending_count()
            if pending and note is None:
                note = f"{pending} chunks have no vector yet (run `repotune index`)"
        results = index.search_question(query, k)  # what `repotune ask` would retrieve
        elapsed = (time.perf_counter() - started) * 1000
        if as_json:
            print(
                json.dumps(
                    {
                        "query": query,
                        "results": [r.to_dict() for r in results],
                        "note": note,
                        "ms": round(elapsed, 1),
                    },
                    indent=2,
                )
            )
            return
        if note:
            print(f"note: {note}", file=sys.stderr)
        if not results:
            print("no results")
        for rank, result in enumerate(results, 1):
            symbol = f"  {result.symbol}" if result.symbol else ""
            print(
                f"{rank}. {result.path}:{result.start_line}-{result.end_line}"
                f"  [{result.kind}]{symbol}  score={result.score:.4f}"
                f"  via {'+'.join(result.sources)}"
            )
            lines = result.text.splitlines()
            for line in lines[:PREVIEW_LINES]:
                print(f"     | {line[:120]}")
            if len(lines) > PREVIEW_LINES:
                print(f"     | ... ({len(lines) - PREVIEW_LINES} more lines)")
            print()
    finally:
        index.close()
