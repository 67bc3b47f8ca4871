"""`repotune bench index --shared`: how much sooner a second client's index is fully dense when a
shared Chroma server already holds a teammate's vectors, against the same client alone.

One run, one process, one embedder, a throwaway `chroma run` on localhost: "alone" indexes the
second client's copy with no server; "first" indexes the repository with the server (embedding
everything and pushing it); "second" indexes its own copy (the same files plus one local edit)
with the server, embedding only the chunks its edit created. Each uses a fresh index folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from repotune.server.bench.chroma_server import ChromaServerProcess
from repotune.server.bench.index import copy_workspace, index_timed
from repotune.server.bench.record import run_machine
from repotune.server.config import Settings, settings_with
from repotune.server.index.workspace import WorkspaceIndex
from repotune.server.llm.embeddings import load_embedder

TIMEOUT_S = 3600.0
LOCAL_EDIT = "\n\ndef repotune_bench_local_edit(value):\n    return value + 1\n"


def _index_until_dense(root: Path, location: Path, settings: Settings, embedder: Any) -> dict:
    index = WorkspaceIndex(root, settings, embedder=embedder, location=location)
    lexical_s, dense_s = index_timed(index, TIMEOUT_S)
    stats = index.stats()
    index.close()
    return {
        "chunks": stats["chunks"],
        "lexical_s": round(lexical_s, 2),
        "fully_dense_s": round(dense_s, 2),
        "embedded": stats["embedded"],
        "embed_seconds": stats["embed_seconds"],
        "shared_index": stats["shared_index"],
    }


def bench_shared_index(
    workspace: Path, settings: Settings, label: str | None = None
) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="repotune-bench-shared-"))
    result: dict[str, Any] = {
        "benchmark": "index-shared",
        "corpus": label or str(workspace),
        "machine": run_machine(),
    }
    try:
        first_copy = scratch / "first"
        result["files_copied"] = copy_workspace(workspace, settings, first_copy)
        second_copy = scratch / "second"
        shutil.copytree(first_copy, second_copy)
        edited = _edit_one_file(second_copy)
        result["second_client_edit"] = edited
        _warm_up(first_copy, scratch / "i-warm", settings)
        model = settings.model
        embedder = load_embedder(model.embedder, model.threads, model.gpu_layers)
        try:
            with ChromaServerProcess(scratch / "chroma") as server:
                shared = settings_with(settings, {"index": {"chroma_url": server.url}}, "benchmark")
                solo = settings_with(settings, {"index": {"chroma_url": None}}, "benchmark")
                alone = _index_until_dense(second_copy, scratch / "i-alone", solo, embedder)
                first = _index_until_dense(first_copy, scratch / "i-first", shared, embedder)
                second = _index_until_dense(second_copy, scratch / "i-second", shared, embedder)
        finally:
            embedder.close()
        result.update(
            {
                "second_client_alone": alone,
                "first_client_shared": first,
                "second_client_shared": second,
                "fully_dense_speedup": round(alone["fully_dense_s"] / second["fully_dense_s"], 2),
                # Embedding time swings with the machine's load; what the server adds is the rest.
                "first_client_added_s_outside_embedding": round(
                    _outside_embedding(first) - _outside_embedding(alone), 2
                ),
            }
        )
        result["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _outside_embedding(run: dict[str, Any]) -> float:
    return float(run["fully_dense_s"]) - float(run["embed_seconds"])


def _warm_up(root: Path, location: Path, settings: Settings) -> None:
    """A lexical-only pass first, so the first measured run does not pay for loading parsers."""
    with WorkspaceIndex(root, settings, location=location) as index:
        index.start(dense=False)
        index.wait_idle(TIMEOUT_S)


def _edit_one_file(root: Path) -> str:
    """Append a function to the first Python file (else the first file): the second client's own
    change, which nobody else has embedded."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    target = next((p for p in files if p.suffix == ".py"), files[0])
    with target.open("a", encoding="utf-8") as handle:
        handle.write(LOCAL_EDIT)
    return target.relative_to(root).as_posix()
