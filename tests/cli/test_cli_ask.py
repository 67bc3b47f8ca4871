"""`repotune ask` end to end: real index, real default model, sources always listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_ask_answers_and_lists_the_retrieved_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "billing.py").write_text(
        "def invoice_total(lines: list[tuple[float, int]], tax_rate: float) -> float:\n"
        '    """Total of an invoice: price times quantity for each line, plus tax."""\n'
        "    subtotal = sum(price * quantity for price, quantity in lines)\n"
        "    return round(subtotal * (1 + tax_rate), 2)\n"
    )
    (repo / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/index"\n')
    result = subprocess.run(
        [sys.executable, "-m", "repotune", "ask", str(repo), "How is the invoice total computed?"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("**Sources**")
    assert answer.strip(), "empty answer"
    assert "[billing.py:1-4]" in sources
    assert "generate" in result.stderr  # timings are reported
