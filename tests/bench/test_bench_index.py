"""`repotune bench index` end to end on a small real repository (sizes shrunk, logic as is)."""

from __future__ import annotations

from pathlib import Path

import pytest
from repotune.server.bench import index as bench_index
from repotune.server.config import Settings

pytestmark = pytest.mark.slow


def test_bench_index_reports_every_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(6):
        (tmp_path / f"mod{n}.py").write_text(
            "\n\n".join(
                f"def function_{n}_{k}(value):\n    '''Step {k}.'''\n    return value * {k}\n"
                for k in range(8)
            )
        )
    monkeypatch.setattr(bench_index, "EDITS", 3)
    monkeypatch.setattr(bench_index, "QUERIES", 5)
    monkeypatch.setattr(bench_index, "SCALE_CHUNKS", 300)
    monkeypatch.setattr(bench_index, "THROUGHPUT_SAMPLE", 8)
    settings = Settings.model_validate({"index": {"debounce_ms": 50}})
    result = bench_index.bench_index(tmp_path, settings, "tiny")
    assert result["files"] == 6 and result["chunks"] >= 6
    assert result["embedder_chunks_per_s"] > 0 and result["dense_pass_vs_embedder"] > 0
    assert result["save_to_searchable_ms"]["lexical_and_dense"]["n"] == 3
    assert result["query_ms"]["hybrid_total"]["n"] == 5
    assert result["query_ms"]["query_embedding"]["p50"] > 0  # the dense half really ran
    assert result["query_ms_scaled"]["chunks"] >= 300
    assert result["rss_mb"]["peak"] >= result["rss_mb"]["with_embedder"] > 0


def test_scaled_store_gives_every_copy_its_own_names(tmp_path: Path) -> None:
    """The 50,000-chunk figure replicates the real chunks; the copies must not share names, or
    every name is "defined in more than 3 places" and the definition lookup does no work."""
    import random

    import numpy as np
    from repotune.server.index.chunking import chunk_file
    from repotune.server.index.retrieval import MAX_DEFINITION_SITES, HybridRetriever
    from repotune.server.index.store import Store

    files = {
        "geo.py": "def distance(a, b):\n    return abs(a - b)\n",
        "shapes.py": "from geo import distance\n\n\nclass Segment:\n"
        "    def length(self):\n        return distance(self.a, self.b)\n",
    }
    source = Store(tmp_path / "source", dense=True)
    ids = []
    for path, text in files.items():
        chunks = chunk_file(path, text, "h")
        source.replace_file(path, "h", len(text), 1, "python", "utf-8", chunks)
        ids += [chunk.id for chunk in chunks]
    source.upsert_vectors(ids, np.random.default_rng(0).standard_normal((len(ids), 8)))
    source.mark_embedded(ids)
    source.close()

    scaled = bench_index.scaled_store(
        tmp_path, tmp_path / "source", 10 * len(ids), random.Random(1)
    )
    try:
        assert scaled.chunk_count() >= 10 * len(ids)
        names = ["distance", "distance_c3", "Segment_c7", "length_c9"]
        sites = scaled.definitions.definition_sites(names, MAX_DEFINITION_SITES)
        assert {name: [path for _, path in sites[name]] for name in names} == {
            "distance": ["copy0/geo.py"],
            "distance_c3": ["copy3/geo.py"],
            "Segment_c7": ["copy7/shapes.py"],
            "length_c9": ["copy9/shapes.py"],
        }
        # uses are renamed with the definitions: copy 3's caller calls copy 3's function
        copy3 = [r for r in scaled.chunk_rows() if r[1] == "copy3/shapes.py"]
        assert any("distance_c3(self.a, self.b)" in r[10] for r in copy3)
        retriever = HybridRetriever(scaled, None)
        hits = retriever.search("distance between a and b", 5, names=["distance_c3"])
        assert any("definition" in hit.sources and hit.path == "copy3/geo.py" for hit in hits)
    finally:
        scaled.close()
