"""`repotune bench index --shared` end to end on a small real repository and a real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from repotune.server.bench.shared_index import bench_shared_index
from repotune.server.config import Settings

pytestmark = pytest.mark.slow


def test_bench_shared_index_reports_the_second_client_against_alone(tmp_path: Path) -> None:
    for n in range(3):
        (tmp_path / f"mod{n}.py").write_text(
            "\n\n".join(
                f"def function_{n}_{k}(value):\n    '''Step {k}.'''\n    return value * {k}\n"
                for k in range(30)
            )
        )
    result = bench_shared_index(tmp_path, Settings(), "tiny")
    alone, first, second = (
        result["second_client_alone"],
        result["first_client_shared"],
        result["second_client_shared"],
    )
    assert alone["chunks"] == second["chunks"] >= first["chunks"] > 3
    assert alone["embedded"] == alone["chunks"] and alone["shared_index"] is None
    assert first["shared_index"]["pushed"] == first["chunks"]
    # The second client embeds only what its own edit changed; the rest comes from the server.
    assert 0 < second["embedded"] < second["chunks"] / 2
    assert second["shared_index"]["fetched"] == second["chunks"] - second["embedded"]
    assert result["fully_dense_speedup"] > 0
    assert result["second_client_edit"] == "mod0.py"
