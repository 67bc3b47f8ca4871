"""The store: per-file atomic replacement, code-aware lexical search, format rebuild, and Chroma
reconciliation, on a real SQLite file and a real Chroma directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from repotune.server.config import Settings
from repotune.server.index.chunking import chunk_file
from repotune.server.index.store import DB_NAME, Store, index_location
from repotune.server.index.terms import code_terms, split_identifier

SOURCE = '''
def parse_config_file(path):
    """Read the settings file."""
    return open(path).read()


class HttpRequestHandler:
    def handleIncomingRequest(self, request):
        return request.body
'''


def put(store: Store, path: str, text: str) -> list[str]:
    chunks = chunk_file(path, text, f"hash-{hash(text)}", chunk_lines=8, chunk_overlap=2)
    store.replace_file(path, f"hash-{hash(text)}", len(text), 1, "python", "utf-8", chunks)
    return [c.id for c in chunks]


def test_identifier_splitting() -> None:
    assert split_identifier("parseConfigFile") == ["parseconfigfile", "parse", "config", "file"]
    assert split_identifier("HTTPServer_v2") == ["httpserver_v2", "http", "server", "v", "2"]
    assert split_identifier("plain") == ["plain"]
    assert "handle" in code_terms("self.handleIncomingRequest(x)")


def test_lexical_search_finds_identifier_parts(tmp_path: Path) -> None:
    store = Store(tmp_path / "idx", dense=False)
    put(store, "app.py", SOURCE)
    put(store, "other.py", "def unrelated():\n    return 42\n")
    hits = store.get_chunks([cid for cid, _ in store.lexical_search("incoming request", 5)])
    assert [row["symbol"] for row in hits.values()] == ["HttpRequestHandler"]
    top = store.lexical_search("parse config", 5)[0][0]
    assert store.get_chunks([top])[top]["symbol"] == "parse_config_file"
    assert store.lexical_search("zzz_not_there", 5) == []
    store.close()


def test_replace_and_remove_are_whole_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "idx", dense=True)
    first = put(store, "app.py", SOURCE)
    assert store.dense_pending_count() == len(first)
    second = put(store, "app.py", SOURCE.replace("request.body", "request.json"))
    kept = set(first) & set(second)
    assert kept and kept != set(first)  # only the touched chunk changed id
    assert store.chunk_ids() == set(second)
    assert store.file("app.py").chunk_ids == tuple(second)  # type: ignore[union-attr]
    assert set(store.take_deleted()) == set(first) - set(second)
    store.remove_file("app.py")
    assert store.chunk_ids() == set() and store.file("app.py") is None
    assert store.lexical_search("parse config", 5) == []
    assert store.dense_pending_count() == 0
    store.close()


def test_crash_inside_a_file_transaction_leaves_the_old_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "idx", dense=True)
    before = put(store, "app.py", SOURCE)
    chunks = chunk_file("app.py", SOURCE + "\ndef extra():\n    pass\n", "h2", 8, 2)
    broken = [*chunks, chunks[0]]  # duplicate id: the insert fails half-way through the file
    with pytest.raises(sqlite3.IntegrityError):
        store.replace_file("app.py", "h2", 1, 1, "python", "utf-8", broken)
    assert store.chunk_ids() == set(before)
    assert store.file("app.py").hash != "h2"  # type: ignore[union-attr]
    assert len(store.lexical_search("parse config", 50)) == 1
    store.close()


def test_format_change_rebuilds_instead_of_failing(tmp_path: Path) -> None:
    location = tmp_path / "idx"
    store = Store(location, dense=False)
    put(store, "app.py", SOURCE)
    store.close()
    db = sqlite3.connect(location / DB_NAME)
    db.execute("UPDATE meta SET value = '0' WHERE key = 'format_version'")
    db.commit()
    db.close()
    reopened = Store(location, dense=False)
    assert reopened.rebuilt and reopened.chunk_count() == 0
    reopened.close()
    (location / DB_NAME).write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (location / (DB_NAME + suffix)).unlink(missing_ok=True)
    damaged = Store(location, dense=False)
    assert damaged.rebuilt and damaged.chunk_count() == 0
    damaged.close()


def test_reconcile_dense_removes_stale_and_queues_missing_vectors(tmp_path: Path) -> None:
    store = Store(tmp_path / "idx", dense=True, embedder_id="model-a")
    ids = put(store, "app.py", SOURCE)
    batch = store.pending_batch(100)
    assert [cid for cid, _ in batch] == ids and batch[0][1].startswith("app.py ")
    vectors = np.eye(len(ids), 8, dtype=np.float32)
    store.upsert_vectors(ids, vectors)
    store.mark_embedded(ids)
    # as after a crash: a vector whose chunk is gone, and a chunk whose vector never landed
    store.upsert_vectors(["ghost"], np.ones((1, 8), dtype=np.float32))
    store.delete_vectors([ids[0]])
    report = store.reconcile_dense()
    assert report == {"stale": 1, "missing": 1}
    assert store.vector_ids() == set(ids[1:])
    assert [cid for cid, _ in store.pending_batch(10)] == [ids[0]]
    store.close()
    # another embedder: every vector is queued again
    other = Store(tmp_path / "idx", dense=True, embedder_id="model-b")
    other.reconcile_dense()
    assert other.vector_ids() == set() and other.dense_pending_count() == len(ids)
    other.close()


def test_index_location_defaults_to_cache_and_honours_setting(
    tmp_path: Path, isolated_cache: Path
) -> None:
    workspace = tmp_path / "my repo"
    workspace.mkdir()
    default = index_location(workspace, Settings())
    assert default.parent == isolated_cache / "indexes"
    assert default.name.startswith("my_repo-")
    assert not default.is_relative_to(workspace)
    other = tmp_path / "elsewhere" / "my repo"
    other.mkdir(parents=True)
    assert index_location(other, Settings()) != default
    custom = Settings.model_validate({"index": {"index_dir": ".repotune/index"}})
    assert index_location(workspace, custom) == workspace.resolve() / ".repotune" / "index"


def test_absolute_index_dir_gives_each_workspace_its_own_folder(tmp_path: Path) -> None:
    """One editor-wide index_dir must not make two workspace folders share (and wipe) a store."""
    shared = Settings.model_validate({"index": {"index_dir": str(tmp_path / "indexes")}})
    first, second = tmp_path / "a" / "repo", tmp_path / "b" / "repo"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    one, two = index_location(first, shared), index_location(second, shared)
    assert one.parent == two.parent == tmp_path / "indexes"
    assert one != two


def test_term_counts_follow_writes_and_bound_the_query(tmp_path: Path) -> None:
    """Document counts are read once and held in memory; a term written since is still found
    (looked up on its own), the counts are refreshed in the background after enough writes, and
    a query keeps only the rarest terms within the postings budget."""
    import time

    from repotune.server.index import lexical as lexical_module

    store = Store(tmp_path / "idx", dense=False)
    for n in range(30):
        put(
            store, f"common{n}.py", f"def shared_helper_{n}(value):\n    return everywhere(value)\n"
        )
    put(store, "app.py", SOURCE)
    counts = store.refresh_term_counts()
    assert counts.documents["everywhere"] == 30 and counts.chunks >= 31
    put(store, "late.py", "def freshly_written_name():\n    return everywhere(1)\n")
    assert "freshly_written_name" not in counts.documents
    top = store.lexical_search("freshly_written_name(", 3)[0][0]
    assert store.get_chunks([top])[top]["path"] == "late.py"
    # rarest first, within the budget: the common word is dropped when rarer ones fill it
    budget = lexical_module.QUERY_POSTINGS_BUDGET
    lexical_module.QUERY_POSTINGS_BUDGET = 5
    try:
        with store._lock:
            kept = store.lexical.informative_terms(
                ["everywhere", "parse_config_file", "freshly_written_name"]
            )
    finally:
        lexical_module.QUERY_POSTINGS_BUDGET = budget
    assert set(kept) == {"parse_config_file", "freshly_written_name"}
    assert "everywhere" not in kept
    for n in range(lexical_module.TERM_COUNTS_MAX_WRITES + 1):
        put(store, f"burst{n}.py", f"def burst_{n}():\n    return {n}\n")
    store.lexical_search("burst_3", 3)  # stale counts: this query starts a background refresh
    deadline = time.monotonic() + 10
    while "burst_3" not in store.lexical.counts.documents and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.lexical.counts.documents.get("burst_3") == 1
    store.close()
