"""Retrieval: RRF fusion and query building (pure logic), then hybrid search over a real index
with the real embedder: a function is found by its name and by a description of what it does."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from repotune.server.config import Settings
from repotune.server.retrieval import cursor_query, rrf_fuse
from repotune.server.workspace_index import WorkspaceIndex

FILES = {
    "text/distance.py": '''
def levenshtein(a: str, b: str) -> int:
    """Number of single-character insertions, deletions or substitutions turning a into b."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
''',
    "net/download.py": '''
import urllib.request


def fetch_with_retries(url: str, attempts: int = 3) -> bytes:
    """Download a URL over HTTP, retrying on network errors."""
    for attempt in range(attempts):
        try:
            return urllib.request.urlopen(url, timeout=10).read()
        except OSError:
            if attempt == attempts - 1:
                raise
    return b""
''',
    "storage/cache.py": '''
import collections


class LruCache:
    """Keeps the most recently used entries, evicting the oldest beyond a capacity."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items = collections.OrderedDict()

    def get(self, key):
        value = self.items.pop(key)
        self.items[key] = value
        return value
''',
    "math/stats.py": '''
def mean_and_variance(values: list[float]) -> tuple[float, float]:
    """Average and spread of a list of numbers."""
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / len(values)
''',
    "docs/guide.md": "# Guide\n\nInstall the package, then run the command line tool.\n",
}


def test_rrf_fusion_rewards_agreement() -> None:
    fused = rrf_fuse({"lexical": ["a", "b", "c"], "dense": ["b", "d"]}, k=60)
    assert [cid for cid, _, _ in fused][:2] == ["b", "a"]
    scores = {cid: score for cid, score, _ in fused}
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert dict((cid, src) for cid, _, src in fused)["b"] == ("lexical", "dense")
    assert rrf_fuse({}, 60) == []


def test_cursor_query_takes_the_window_around_the_cursor() -> None:
    prefix = "\n".join(f"line {i}" for i in range(100))
    suffix = "\n".join(f"after {i}" for i in range(100))
    query = cursor_query(prefix, suffix, 20)
    assert query.splitlines()[0] == "line 80" and "line 79" not in query
    assert query.splitlines()[-1] == "after 4"
    assert cursor_query("", "", 20) == ""


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[WorkspaceIndex]:
    base = tmp_path_factory.mktemp("retrieval")
    root = base / "repo"
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip("\n"))
    workspace = WorkspaceIndex(root, Settings(), embedder=embedder, location=base / "index")
    workspace.start(watch=False)
    assert workspace.wait_idle(120)
    yield workspace
    workspace.close()


def test_finds_a_function_by_its_name(index: WorkspaceIndex) -> None:
    hits = index.search("fetch_with_retries", 3)
    assert hits[0].path == "net/download.py"
    assert hits[0].symbol == "fetch_with_retries" and hits[0].kind == "function"
    assert set(hits[0].sources) == {"lexical", "dense"}
    assert hits[0].start_line <= 4 <= hits[0].end_line


@pytest.mark.parametrize(
    ("description", "path"),
    [
        ("edit distance between two strings", "text/distance.py"),
        ("evict least recently used items when full", "storage/cache.py"),
        ("compute the average of numbers", "math/stats.py"),
    ],
)
def test_finds_a_function_by_a_description(
    index: WorkspaceIndex, description: str, path: str
) -> None:
    hits = index.search(description, 3)
    assert hits[0].path == path, [(h.path, h.sources) for h in hits]
    assert "dense" in hits[0].sources


def test_excluded_region_and_dedup(index: WorkspaceIndex) -> None:
    hits = index.search("levenshtein edit distance", 5)
    own = next(h for h in hits if h.path == "text/distance.py")
    excluded = index.search(
        "levenshtein edit distance", 5, exclude=("text/distance.py", own.start_line, own.start_line)
    )
    assert all(h.path != "text/distance.py" for h in excluded)
    assert len({(h.path, h.start_line) for h in hits}) == len(hits)
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert index.search("anything", 0) == [] and index.search("   ", 5) == []


def test_dense_query_keeps_whole_lines_nearest_the_cursor_within_its_token_budget() -> None:
    from repotune.server.config import RetrievalSettings
    from repotune.server.retrieval import cursor_queries, dense_cursor_query

    settings = RetrievalSettings(dense_query_lines=6, dense_query_tokens=10, query_lines=20)
    prefix = "one two three\nfour five six\nseven eight nine\nten eleven\ntwelve = "

    def words(text: str) -> int:
        return len(text.split())

    query = dense_cursor_query(prefix, " tail\nbelow", settings, words)
    assert query == "seven eight nine\nten eleven\ntwelve = \n tail"
    assert "four" not in query and "below" not in query
    # a single line over the budget is still kept whole: the query is never empty
    assert dense_cursor_query("x " * 50, "", settings, words).split() == ["x"] * 50
    # without the embedder's tokenizer: the line window alone
    both = cursor_queries(prefix, " tail\nbelow", settings)
    assert both.dense.startswith("one two three") and "below" not in both.dense
    assert both.lexical.startswith("one two three")
