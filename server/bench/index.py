"""`repotune bench index`: index throughput, save-to-searchable latency, query latency, memory.

The benchmark never touches the user's files: it copies the workspace's indexable files to a
temporary directory, indexes the copy into a temporary index, edits the copy, and deletes both.
`--corpus wandb==0.19.11` fetches a pinned PyPI wheel (Python source nobody here wrote) into the
cache dir and benchmarks its unpacked contents. Loops are bounded in count and time.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from repotune.server.bench.record import run_machine
from repotune.server.bench.stats import p50_p95
from repotune.server.config import Settings
from repotune.server.corpora import ensure_corpus
from repotune.server.index.chunking import Chunk, Chunker
from repotune.server.index.files import ContentSkip, WorkspaceFilter, read_text_file
from repotune.server.index.retrieval import CursorQuery, HybridRetriever, cursor_queries
from repotune.server.index.store import Store, embed_text
from repotune.server.index.workspace import WorkspaceIndex
from repotune.server.llm.embeddings import load_embedder

DEFAULT_CORPUS = "wandb==0.19.11"
EDITS = 24
QUERIES = 60
SCALE_CHUNKS = 50_000
EDIT_TIMEOUT_S = 20.0
THROUGHPUT_SAMPLE = 256
_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*")


class _PeakRss(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)


def copy_workspace(workspace: Path, settings: Settings, target: Path) -> int:
    scan = WorkspaceFilter(workspace, settings).scan()
    for entry in scan.files:
        destination = target / entry.rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entry.path, destination)
    return len(scan.files)


def index_timed(
    index: WorkspaceIndex, timeout_s: float, watch: bool = False
) -> tuple[float, float]:
    """Start an index: seconds until it is lexically searchable, and until it is idle (dense)."""
    started = time.perf_counter()
    index.start(watch=watch)
    index.wait_lexical(timeout_s)
    lexical_s = time.perf_counter() - started
    if not index.wait_idle(timeout_s):
        raise RuntimeError(f"{index.root}: the index did not become idle in {timeout_s} s")
    return lexical_s, time.perf_counter() - started


def bench_index(workspace: Path, settings: Settings, label: str | None = None) -> dict[str, Any]:
    import psutil

    rng = random.Random(1234)
    process = psutil.Process()
    rss_start = process.memory_info().rss
    scratch = Path(tempfile.mkdtemp(prefix="repotune-bench-"))
    result: dict[str, Any] = {
        "benchmark": "index",
        "corpus": label or str(workspace),
        "machine": run_machine(),
    }
    try:
        copy = scratch / "workspace"
        result["files_copied"] = copy_workspace(workspace, settings, copy)
        started = time.perf_counter()
        embedder = load_embedder(
            settings.model.embedder, settings.model.threads, settings.model.gpu_layers
        )
        result["embedder_load_s"] = round(time.perf_counter() - started, 2)
        # The embedder's own throughput on a fixed sample of this corpus's chunks, measured just
        # before and just after the dense pass (the mean is the reference: a load that drifts
        # during the run affects both sides alike).
        sample = _sample_chunk_texts(copy, settings, rng, THROUGHPUT_SAMPLE)
        batch = settings.index.embed_batch_size
        own_before = _embedder_rate(embedder, sample, batch)
        rss_base = process.memory_info().rss
        peak = _PeakRss()
        peak.start()
        index = WorkspaceIndex(copy, settings, embedder=embedder, location=scratch / "index")
        lexical_s, full_s = index_timed(index, 24 * 3600, watch=True)
        stats = index.stats()
        dense_fill_s = index.timings.get("dense_fill_s", 0.0)
        result.update(
            {
                "files": stats["files"],
                "chunks": stats["chunks"],
                "skipped": stats["skipped"],
                "lexical_searchable_s": round(lexical_s, 2),
                "full_index_s": round(full_s, 2),
                "files_per_s": round(stats["files"] / full_s, 2),
                "lexical_files_per_s": round(stats["files"] / lexical_s, 1),
                "embed_share_of_full_index": round(index.filler.embed_seconds / full_s, 3),
                "embed_share_of_dense_pass": round(index.filler.embed_seconds / dense_fill_s, 3)
                if dense_fill_s
                else None,
                "dense_chunks_per_s": round(index.filler.embedded / dense_fill_s, 1)
                if dense_fill_s
                else None,
            }
        )
        rows = index.store.chunk_rows()
        own_after = _embedder_rate(embedder, sample, batch)
        own = (own_before + own_after) / 2
        result["embedder_chunks_per_s"] = round(own, 1)
        result["embedder_chunks_per_s_before_after"] = [round(own_before, 1), round(own_after, 1)]
        if result["dense_chunks_per_s"]:
            result["dense_pass_vs_embedder"] = round(result["dense_chunks_per_s"] / own, 3)

        # Save-to-searchable: append a new function to real files, wait until both halves see it.
        result["save_to_searchable_ms"] = _save_to_searchable(index, copy, settings, rng)
        index.wait_idle(120)

        # Query latency: cursor windows taken from random chunks, all distinct (no cache hits).
        queries = _cursor_windows(rows, settings, embedder, rng)
        result["query_ms"] = _time_queries(index.retriever, queries, settings.retrieval.top_k)
        result["query_ms"]["chunks"] = index.store.chunk_count()
        index.close()
        peak.stop.set()
        peak.join()
        result["rss_mb"] = {
            "at_start": round(rss_start / 2**20, 1),
            "with_embedder": round(rss_base / 2**20, 1),
            "peak": round(peak.peak / 2**20, 1),
            "added_by_indexing": round((peak.peak - rss_base) / 2**20, 1),
        }

        # Query latency at 50,000 chunks: the real chunks and vectors replicated under new paths.
        scaled = _scaled_query_ms(scratch, settings, embedder, queries, rng)
        if scaled is not None:
            result["query_ms_scaled"] = scaled
        embedder.close()
        result["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _save_to_searchable(
    index: WorkspaceIndex, copy: Path, settings: Settings, rng: random.Random
) -> dict[str, Any]:
    """Milliseconds from an appended function to its lexical hit, and to its vector."""
    candidates = sorted(p for p in index.store.files() if p.endswith(".py")) or sorted(
        index.store.files()
    )
    lexical_ms: list[float] = []
    dense_ms: list[float] = []
    for n in range(EDITS):
        rel = rng.choice(candidates)
        probe = f"repotune_bench_probe_{n}"
        path = copy / rel
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"\n\ndef {probe}(value):\n    return value + {n}\n")
        t0 = time.perf_counter()
        deadline = t0 + EDIT_TIMEOUT_S
        seen_lexical = False
        while time.perf_counter() < deadline:
            if not seen_lexical:
                ids = [cid for cid, _ in index.store.lexical_search(probe, 3)]
                rows_found = index.store.get_chunks(ids)
                if any(probe in r["text"] for r in rows_found.values()):
                    lexical_ms.append((time.perf_counter() - t0) * 1000)
                    seen_lexical = True
            if seen_lexical and index.store.dense_pending_count(rel) == 0:
                dense_ms.append((time.perf_counter() - t0) * 1000)
                break
            time.sleep(0.002)
        time.sleep(0.2)
    return {
        "lexical": p50_p95(lexical_ms),
        "lexical_and_dense": p50_p95(dense_ms),
        "debounce_ms": settings.index.debounce_ms,
    }


def _cursor_windows(
    rows: list[tuple[Any, ...]], settings: Settings, embedder: Any, rng: random.Random
) -> list[CursorQuery]:
    """Cursor windows taken from random chunks, all distinct (no cache hits)."""
    queries = []
    for row in rng.sample(rows, min(QUERIES, len(rows))):
        lines = row[10].splitlines()
        cut = len(lines) // 2
        queries.append(
            cursor_queries(
                "\n".join(lines[:cut]),
                "\n".join(lines[cut:]),
                settings.retrieval,
                embedder.count_text_tokens,
            )
        )
    return queries


def _scaled_query_ms(
    scratch: Path,
    settings: Settings,
    embedder: Any,
    queries: list[CursorQuery],
    rng: random.Random,
) -> dict[str, Any] | None:
    """Query latency at SCALE_CHUNKS: the real chunks and vectors replicated under new paths."""
    scaled = scaled_store(scratch, scratch / "index", SCALE_CHUNKS, rng)
    if scaled is None:
        return None
    cache: dict[str, np.ndarray] = {}

    def embed_query(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = embedder.embed_query(text)
        return cache[text]

    retriever = HybridRetriever(
        scaled,
        embed_query,
        settings.retrieval.rrf_k,
        settings.retrieval.definition_weight,
        settings.retrieval.same_name_weight,
    )
    timed = _time_queries(
        retriever,
        # a space added to each dense query: no cache hits
        [CursorQuery(q.lexical, q.dense + " ", q.names, q.enclosing) for q in queries],
        settings.retrieval.top_k,
    )
    timed["chunks"] = scaled.chunk_count()
    scaled.close()
    return timed


def _sample_chunk_texts(
    workspace: Path, settings: Settings, rng: random.Random, size: int
) -> list[str]:
    """Texts as the dense pass embeds them, for chunks of randomly chosen files."""
    chunker = Chunker(settings.index.chunk_lines, settings.index.chunk_overlap)
    files = WorkspaceFilter(workspace, settings).scan().files
    texts: list[str] = []
    for entry in rng.sample(files, len(files)):
        try:
            text = read_text_file(entry.path, settings.index.max_file_bytes).text
        except (ContentSkip, OSError):  # skipped by the index too
            continue
        for chunk in chunker.chunk(entry.rel, text, "sample"):
            texts.append(
                embed_text(chunk.path, chunk.kind, chunk.signature or chunk.symbol, chunk.text)
            )
        if len(texts) >= size * 4:
            break
    return rng.sample(texts, min(size, len(texts)))


def _embedder_rate(embedder: Any, texts: list[str], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        embedder.embed(texts[i : i + batch])
    return len(texts) / max(1e-9, time.perf_counter() - started)


def _time_queries(retriever: Any, queries: list[CursorQuery], k: int) -> dict[str, Any]:
    total: list[float] = []
    embed: list[float] = []
    search: list[float] = []
    definitions: list[float] = []
    for query in queries:
        retriever.search(
            query.lexical,
            k,
            dense_query=query.dense,
            names=query.names,
            enclosing=query.enclosing,
        )
        timings = retriever.last_timings
        total.append(timings.total_ms)
        embed.append(timings.embed_ms)
        search.append(timings.total_ms - timings.embed_ms)
        definitions.append(timings.definitions_ms)
    return {
        "hybrid_total": p50_p95(total),
        "query_embedding": p50_p95(embed),
        "hybrid_without_embedding": p50_p95(search),
        "definition_lookup": p50_p95(definitions),
    }


def scaled_store(scratch: Path, source_location: Path, target: int, rng: random.Random) -> Any:
    """A store with `target` chunks: copies of the real rows (prefixed paths) and their vectors
    with a little noise, so FTS5 and HNSW work at that size without hours of embedding. Every
    copy but the first renames the names its chunks define (`parse` -> `parse_c3`, uses
    included), so a name is defined as often as in the real corpus and the definition lookup
    reads real rows instead of dropping every name as ambiguous."""
    source = Store(source_location, dense=True)
    rows = source.chunk_rows()
    if not rows:
        source.close()
        return None
    ids = [r[0] for r in rows]
    got = source.collection().get(ids=ids, include=["embeddings"])
    vectors = dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32), strict=True))
    source.close()
    store = Store(scratch / "scaled", dense=True)
    copies = max(1, -(-target // len(rows)))
    noise = np.random.default_rng(rng.randrange(1 << 30))
    defined = {name for r in rows for name in r[11].split()}
    for copy in range(copies):
        by_path: dict[str, list[Chunk]] = {}
        for chunk in copied_chunks(rows, copy, defined):
            by_path.setdefault(chunk.path, []).append(chunk)
        for path, chunks in by_path.items():
            store.replace_file(path, "h", 1, 1, chunks[0].language, "utf-8", chunks)
        batch_ids = [f"{r[0]}-c{copy}" for r in rows if r[0] in vectors]
        noisy = np.stack([vectors[r[0]] for r in rows if r[0] in vectors])
        noisy = noisy + 0.01 * noise.standard_normal(noisy.shape).astype(np.float32)
        for i in range(0, len(batch_ids), 2000):
            store.upsert_vectors(batch_ids[i : i + 2000], noisy[i : i + 2000])
        store.mark_embedded(batch_ids)
        if store.chunk_count() >= target:
            break
    store.refresh_term_counts()  # as WorkspaceIndex does after its lexical pass
    return store


def copied_chunks(rows: list[tuple[Any, ...]], copy: int, defined: set[str]) -> list[Chunk]:
    """Copy number `copy` of the store rows `rows` under `copy<N>/`; from copy 1 on, every
    identifier in `defined` is suffixed `_c<N>` wherever it appears (text, symbol, parent,
    signature, defines)."""

    def rename(text: str | None) -> str | None:
        if text is None or copy == 0:
            return text
        return _IDENTIFIER.sub(
            lambda m: f"{m[0]}_c{copy}" if m[0] in defined else m[0],
            text,
        )

    return [
        Chunk(
            id=f"{r[0]}-c{copy}",
            path=f"copy{copy}/{r[1]}",
            language=r[6],
            symbol=rename(r[4]),
            kind=r[5],
            start_line=r[2],
            end_line=r[3],
            text=rename(r[10]) or "",
            file_hash=r[9],
            parent=rename(r[7]),
            signature=rename(r[8]),
            defines=tuple((rename(r[11]) or "").split()),
        )
        for r in rows
    ]


def run_bench_index(
    workspace: Path | None,
    settings: Settings,
    corpus: str | None = None,
    bench: Callable[[Path, Settings, str | None], dict[str, Any]] = bench_index,
) -> dict[str, Any]:
    """Print (and return) the JSON report of `bench` (the index's own, or the shared index's)
    for `workspace` or a pinned corpus."""
    label = None
    if corpus:
        workspace = ensure_corpus(corpus)
        label = corpus
    if workspace is None or not workspace.is_dir():
        raise SystemExit("repotune: bench index needs a workspace directory or --corpus NAME==VER")
    result = bench(workspace, settings, label)
    print(json.dumps(result, indent=2))
    return result
