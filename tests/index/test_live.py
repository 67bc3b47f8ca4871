"""The live index: real watchdog events on a real temp git repo, real Chroma, the real embedder,
and a real SIGKILL in the middle of a full index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from repotune.server.config import Settings
from repotune.server.index.workspace import WorkspaceIndex

pytestmark = pytest.mark.slow
SETTLE_TIMEOUT = 15.0


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def function_source(name: str, body: str = "return 1") -> str:
    return f"def {name}(value):\n    '''Helper {name}.'''\n    {body}\n"


def eventually(check: Callable[[], bool], timeout: float = SETTLE_TIMEOUT) -> float:
    """Seconds until `check()` holds; fails the test after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def paths_for(index: WorkspaceIndex, query: str) -> set[str]:
    return {hit.path for hit in index.search(query, 10) if query in hit.text}


@pytest.fixture()
def live(tmp_path: Path, embedder: Any) -> Iterator[tuple[Path, WorkspaceIndex]]:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    write(root, ".gitignore", "build/\n*.log\n")
    write(root, "pkg/core.py", function_source("alpha_entry"))
    write(root, "pkg/util.py", function_source("beta_helper"))
    write(root, "README.md", "# Demo\n\nA small demo repository.\n")
    settings = Settings.model_validate({"index": {"debounce_ms": 100}})
    index = WorkspaceIndex(root, settings, embedder=embedder, location=tmp_path / "index")
    index.start(watch=True)
    assert index.wait_idle(60)
    yield root, index
    index.close()


def test_edits_moves_and_deletes_reach_search_results(live: tuple[Path, WorkspaceIndex]) -> None:
    root, index = live
    assert paths_for(index, "alpha_entry") == {"pkg/core.py"}

    write(root, "pkg/new_mod.py", function_source("gamma_created"))
    eventually(lambda: paths_for(index, "gamma_created") == {"pkg/new_mod.py"})

    write(root, "pkg/new_mod.py", function_source("gamma_renamed"))
    eventually(lambda: paths_for(index, "gamma_renamed") == {"pkg/new_mod.py"})
    assert paths_for(index, "gamma_created") == set()

    os.rename(root / "pkg/new_mod.py", root / "pkg/moved_mod.py")
    eventually(lambda: paths_for(index, "gamma_renamed") == {"pkg/moved_mod.py"})

    (root / "pkg/moved_mod.py").unlink()
    eventually(lambda: paths_for(index, "gamma_renamed") == set())

    os.rename(root / "pkg", root / "lib")
    eventually(lambda: paths_for(index, "alpha_entry") == {"lib/core.py"})
    eventually(lambda: paths_for(index, "beta_helper") == {"lib/util.py"})

    subprocess.run(["rm", "-rf", str(root / "lib")], check=True)
    eventually(lambda: not paths_for(index, "alpha_entry") and not paths_for(index, "beta_helper"))
    assert index.wait_idle(60)
    assert index.store.files().keys() == {".gitignore", "README.md"}
    # SQLite and Chroma agree once the dense side has caught up
    assert index.store.vector_ids() == index.store.chunk_ids()


def test_ignored_paths_produce_no_work(live: tuple[Path, WorkspaceIndex]) -> None:
    root, index = live
    before = dict(index.indexer.index_counts)
    ignored_before = index.watch_handler.ignored_events
    for i in range(20):
        write(root, f"build/out_{i}.py", function_source(f"built_{i}"))
        write(root, f"debug_{i}.log", "noise\n")
    write(root, "pkg/after.py", function_source("after_ignored"))  # a marker that real work flows
    eventually(lambda: paths_for(index, "after_ignored") == {"pkg/after.py"})
    assert index.watch_handler.ignored_events - ignored_before >= 40
    changed = {p for p, n in index.indexer.index_counts.items() if before.get(p) != n}
    assert changed == {"pkg/after.py"}
    assert paths_for(index, "built_3") == set()


def test_a_file_name_that_is_not_utf8_is_skipped_not_a_crash(tmp_path: Path, embedder: Any) -> None:
    """`b"bad\\xffname.py"` made the index pass raise UnicodeEncodeError at the database (the
    whole pass, so no file was indexed); at the start and when created under the watch, it is
    listed as skipped and the rest of the folder is indexed."""
    root = tmp_path / "repo"
    write(root, "pkg/core.py", function_source("alpha_entry"))
    (root / os.fsdecode(b"first\xffname.py")).write_text(function_source("first_bad_name"))
    settings = Settings.model_validate({"index": {"debounce_ms": 100}})
    index = WorkspaceIndex(root, settings, embedder=embedder, location=tmp_path / "index")
    try:
        index.start(watch=True)
        assert index.wait_idle(60)
        assert paths_for(index, "alpha_entry") == {"pkg/core.py"}
        assert list(index.store.skipped().values()).count("undecodable-name") == 1
        (root / "pkg" / os.fsdecode(b"later\xfe.py")).write_text(function_source("later_bad"))
        write(root, "pkg/after.py", function_source("after_bad_name"))
        eventually(lambda: paths_for(index, "after_bad_name") == {"pkg/after.py"})
        assert index.wait_idle(60)
        assert not index.indexer.errors, index.indexer.errors
        assert paths_for(index, "later_bad") == paths_for(index, "first_bad_name") == set()
    finally:
        index.close()


def test_burst_of_saves_is_coalesced(live: tuple[Path, WorkspaceIndex]) -> None:
    root, index = live
    target = root / "pkg/hot.py"
    for i in range(50):
        target.write_text(function_source("hot_path", f"return {i}"))
        time.sleep(0.01)
    eventually(lambda: any("return 49" in h.text for h in index.search("hot_path", 5)))
    assert index.wait_idle(60)
    runs = index.indexer.index_counts["pkg/hot.py"]
    # ~0.6 s of saves with a 100 ms interval: a handful of runs, never one per save
    assert 1 <= runs <= 10, runs
    assert [h.text for h in index.search("hot_path", 5) if h.path == "pkg/hot.py"] == [
        function_source("hot_path", "return 49").rstrip("\n")
    ]


def test_every_bout_of_work_ends_with_an_idle_event(tmp_path: Path, embedder: Any) -> None:
    """The editor's status follows these events: whichever thread finishes last must say "idle",
    or the status bar stays on "indexing" (as CI once saw after a rescan with nothing to embed)."""
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    write(root, ".gitignore", "*.log\n")
    write(root, "pkg/core.py", function_source("alpha_entry"))
    events: list[tuple[str, bool]] = []
    holder: dict[str, WorkspaceIndex] = {}

    def record(event: dict[str, Any]) -> None:
        # What a status computed at this moment would say, as the language server computes it.
        events.append((event["phase"], holder["index"].is_idle()))

    settings = Settings.model_validate({"index": {"debounce_ms": 100}})
    index = WorkspaceIndex(root, settings, record, embedder=embedder, location=tmp_path / "index")
    holder["index"] = index
    index.start(watch=True)
    try:
        assert index.wait_idle(60)
        eventually(lambda: events[-1] == ("idle", True))

        write(root, "pkg/extra.py", function_source("gamma_extra"))  # lexical and dense work
        eventually(lambda: paths_for(index, "gamma_extra") == {"pkg/extra.py"})
        assert index.wait_idle(60)
        eventually(lambda: events[-1] == ("idle", True))

        index.reindex()  # a rescan that finds nothing new: lexical work only, nothing to embed
        eventually(lambda: any(phase == "lexical" for phase, _ in events[-3:]))
        assert index.wait_idle(60)
        try:
            eventually(lambda: events[-1] == ("idle", True))
        except AssertionError:
            raise AssertionError(f"the last events (phase, idle): {events[-12:]}") from None
    finally:
        index.close()


def test_save_to_searchable_includes_dense(live: tuple[Path, WorkspaceIndex]) -> None:
    root, index = live
    write(root, "pkg/fresh.py", function_source("delta_fresh"))
    eventually(lambda: paths_for(index, "delta_fresh") == {"pkg/fresh.py"}, timeout=5)
    eventually(lambda: index.store.dense_pending_count("pkg/fresh.py") == 0, timeout=10)
    hits = index.search("delta_fresh", 3)
    assert hits[0].path == "pkg/fresh.py" and "dense" in hits[0].sources


# ---------------------------------------------------------------------------- SIGKILL

KILL_SCRIPT = """
import json, sys
from pathlib import Path
from repotune.server.config import Settings
from repotune.server.index.workspace import WorkspaceIndex
settings = Settings.model_validate({"index": {"embed_batch_size": 8}})
index = WorkspaceIndex(Path(sys.argv[1]), settings, lambda e: print(json.dumps(e), flush=True),
                       location=Path(sys.argv[2]))
index.start(watch=False)
index.wait_idle(600)
print(json.dumps({"phase": "finished", "done": 0, "total": 0}), flush=True)
"""


def make_corpus(root: Path, files: int) -> None:
    for i in range(files):
        body = "\n\n".join(
            f"def handler_{i}_{j}(request, retries={j}):\n"
            f"    '''Handle request kind {j} of module {i}.'''\n"
            + "\n".join(f"    step_{k} = request.get('{k}', {k * j})" for k in range(6))
            + "\n    return step_5"
            for j in range(2)
        )
        write(root, f"mod_{i // 50}/file_{i}.py", body + "\n")


def snapshot(index: WorkspaceIndex) -> tuple[Any, ...]:
    files = {p: (r.hash, r.size, r.chunk_ids) for p, r in index.store.files().items()}
    return files, index.store.chunk_rows(), index.store.vector_ids()


@pytest.fixture(scope="module")
def kill_corpus(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("kill")
    root = base / "repo"
    make_corpus(root, 150)
    fresh = WorkspaceIndex(root, Settings(), embedder=embedder, location=base / "fresh")
    fresh.start(watch=False)
    assert fresh.wait_idle(300)
    expected = snapshot(fresh)
    fresh.close()
    yield root, expected


@pytest.mark.parametrize("kill_phase", ["lexical", "dense"])
def test_sigkill_mid_index_then_restart_equals_fresh_index(
    kill_corpus: Any, kill_phase: str, tmp_path: Path, embedder: Any
) -> None:
    root, expected = kill_corpus
    location = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(root), str(location)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    killed_at = None
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["phase"] == "finished":
            break
        if event["phase"] == kill_phase and 0 < event["done"] < event["total"] * 0.7:
            if kill_phase == "lexical" and event["done"] < event["total"] * 0.2:
                continue
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = event
            break
    proc.wait(timeout=30)
    assert killed_at is not None, "the indexer finished before it could be killed"
    assert proc.returncode == -signal.SIGKILL

    partial = WorkspaceIndex(root, Settings(), embedder=embedder, location=location)
    partial_files = len(partial.store.files())
    if kill_phase == "lexical":
        assert 0 < partial_files < len(expected[0])
    else:
        assert 0 < partial.store.dense_pending_count() < len(expected[1])
    partial.start(watch=False)
    assert partial.wait_idle(300)
    assert snapshot(partial) == expected
    partial.close()


def test_ignored_top_level_directories_get_no_watch(live: tuple[Path, WorkspaceIndex]) -> None:
    """Only indexable directories are watched (no inotify watches for build/ or .git), and a
    top-level directory created or un-ignored later is picked up."""
    root, index = live
    assert index.watched_directories() == {"": False, "pkg": True}
    write(root, "build/deep/a/b/c.py", function_source("built_artifact"))
    write(root, "lib/extra.py", function_source("delta_library"))
    eventually(lambda: paths_for(index, "delta_library") == {"lib/extra.py"})
    eventually(lambda: index.watched_directories() == {"": False, "pkg": True, "lib": True})
    write(root, ".gitignore", "*.log\n")  # build/ is no longer ignored
    eventually(lambda: paths_for(index, "built_artifact") == {"build/deep/a/b/c.py"})
    eventually(lambda: index.watched_directories().get("build") is True)
    write(root, "build/deep/a/b/c.py", function_source("built_again"))
    eventually(lambda: paths_for(index, "built_again") == {"build/deep/a/b/c.py"})


def test_nested_ignored_directories_get_no_watch(tmp_path: Path, embedder: Any) -> None:
    """An ignored directory deep inside an indexable one (a package's node_modules) gets no
    watch, before or after it appears, while its indexable siblings keep live updates."""
    root = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    write(root, ".gitignore", "node_modules/\n")
    write(root, "packages/web/src/app.py", function_source("web_entry"))
    write(root, "packages/web/node_modules/dep/index.py", function_source("vendored_dep"))
    write(root, "packages/api/handler.py", function_source("api_handler"))
    settings = Settings.model_validate({"index": {"debounce_ms": 100, "dense": False}})
    index = WorkspaceIndex(root, settings, embedder=embedder, location=tmp_path / "index")
    index.start(watch=True)
    try:
        assert index.wait_idle(60)
        watched = index.watched_directories()
        assert watched == {
            "": False,
            "packages": False,
            "packages/web": False,
            "packages/web/src": True,
            "packages/api": True,
        }
        assert not any(rel.startswith("packages/web/node_modules") for rel in watched)
        # edits beside and below the non-recursive watches still arrive
        write(root, "packages/web/setup.py", function_source("web_setup"))
        write(root, "packages/web/src/more.py", function_source("web_more"))
        eventually(lambda: paths_for(index, "web_setup") == {"packages/web/setup.py"})
        eventually(lambda: paths_for(index, "web_more") == {"packages/web/src/more.py"})
        # a new directory beside them is watched, and its first file (written before the watch
        # could exist) is indexed
        write(root, "packages/web/lib/new.py", function_source("web_lib_new"))
        eventually(lambda: paths_for(index, "web_lib_new") == {"packages/web/lib/new.py"})
        eventually(lambda: index.watched_directories().get("packages/web/lib") is True)
        write(root, "packages/web/lib/new.py", function_source("web_lib_edited"))
        eventually(lambda: paths_for(index, "web_lib_edited") == {"packages/web/lib/new.py"})
        # an ignored directory appearing inside a recursive watch makes the plan split it
        write(root, "packages/api/node_modules/x/y.py", function_source("api_vendored"))
        eventually(lambda: index.watched_directories().get("packages/api") is False)
        assert not any("node_modules" in rel for rel in index.watched_directories())
        write(root, "packages/api/handler.py", function_source("api_handler_edited"))
        eventually(lambda: paths_for(index, "api_handler_edited") == {"packages/api/handler.py"})
        assert paths_for(index, "vendored_dep") == set()
        assert paths_for(index, "api_vendored") == set()
    finally:
        index.close()


def test_folders_share_one_embedder(tmp_path: Path) -> None:
    """Multi-root: every folder's index uses the same loaded embedder (each costs ~140 MB), and
    closing one folder leaves the others searching by meaning."""
    from repotune.server.llm.embeddings import SharedEmbedders

    shared = SharedEmbedders()
    settings = Settings.model_validate({"index": {"debounce_ms": 100}})
    indexes = []
    try:
        for name, function in (("one", "parse_settings_file"), ("two", "render_html_page")):
            root = tmp_path / name
            write(root, "mod.py", function_source(function))
            index = WorkspaceIndex(
                root, settings, location=tmp_path / f"index-{name}", shared_embedders=shared
            )
            index.start(watch=False)
            indexes.append(index)
        for index in indexes:
            assert index.wait_idle(120)
        first, second = indexes
        assert first.embedding.model is second.embedding.model is not None
        assert first.embedding.lock is second.embedding.lock
        first.close()
        hits = second.search("produce a web page as HTML", 1)
        assert hits and hits[0].symbol == "render_html_page" and "dense" in hits[0].sources
    finally:
        for index in indexes:
            index.close()
        shared.close()
