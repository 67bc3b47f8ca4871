"""`repotune bench index` end to end on a small real repository (sizes shrunk, logic as is)."""

from __future__ import annotations

from pathlib import Path

import pytest
from repotune.server import bench_index
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
