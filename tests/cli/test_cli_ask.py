"""`repotune ask` end to end: real index, real default model, sources always listed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _repo(root: Path, files: dict[str, str]) -> Path:
    """A git repository with `files`, indexed into its own .repotune/index."""
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/index"\n')
    return root


def _run_ask(repo: Path, question: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "repotune", "ask", str(repo), question],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_ask_answers_and_lists_the_retrieved_files(tmp_path: Path) -> None:
    billing = (
        "def invoice_total(lines: list[tuple[float, int]], tax_rate: float) -> float:\n"
        '    """Total of an invoice: price times quantity for each line, plus tax."""\n'
        "    subtotal = sum(price * quantity for price, quantity in lines)\n"
        "    return round(subtotal * (1 + tax_rate), 2)\n"
    )
    repo = _repo(tmp_path / "repo", {"billing.py": billing})
    result = _run_ask(repo, "How is the invoice total computed?")
    answer, _, sources = result.stdout.partition("**Sources**")
    assert answer.strip(), "empty answer"
    # the question describes invoice_total: the answer cites its definition first
    assert answer.strip().startswith("`invoice_total` (billing.py:1)"), answer
    assert "[billing.py:1-4]" in sources
    assert "generate" in result.stderr  # timings are reported


GEOMETRY = '''"""Shapes and their areas."""
import math


def area_of_circle(radius: float) -> float:
    """Area of a circle with the given radius."""
    return math.pi * radius * radius


def area_of_square(side: float) -> float:
    """Area of a square with the given side."""
    return side * side
'''


def _ask(repo: Path, question: str) -> str:
    return _run_ask(repo, question).stdout.partition("**Sources**")[0].strip()


def test_answers_stand_on_the_indexed_code(tmp_path: Path) -> None:
    """The default model alone denied area_of_square while its snippet defined it, and described
    an area_of_triangle that nothing defines; answers are checked against the snippets."""
    repo = tmp_path / "shapes"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "geometry.py").write_text(GEOMETRY)
    (repo / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/index"\n')
    defined = _ask(repo, "Where is area_of_square defined?")
    assert defined.startswith("`area_of_square` (geometry.py:10)"), defined
    assert "does not define" not in defined, defined
    invented = _ask(repo, "What does area_of_triangle return?")
    assert invented.startswith("The indexed code does not define"), invented
    assert "area_of_triangle" in invented


def test_search_shows_what_ask_retrieves(tmp_path: Path) -> None:
    """`repotune search` is how a user sees why an answer says what it says: it ran the plain
    hybrid search, not ask's recipe (the definitions of the names a question means)."""
    from conftest import copy_fixture_repo

    repo = copy_fixture_repo(["config.py", "store.py", "models.py", "files.py"], tmp_path / "r")
    (repo / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/index"\n')
    question = "How is the cache directory configured?"
    result = subprocess.run(
        [sys.executable, "-m", "repotune", "search", str(repo), question, "-k", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    top = json.loads(result.stdout)["results"][0]
    assert "def cache_dir()" in top["text"] and "definition" in top["sources"], top


def test_asked_from_a_cursor_the_answer_is_about_the_code_there(tmp_path: Path) -> None:
    """ "What does this function do?" had no referent: the answer was about whatever retrieval
    ranked first. Asked from a line (the editor's cursor), it is about the function there."""
    repo = tmp_path / "shapes"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "geometry.py").write_text(GEOMETRY)
    (repo / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/index"\n')
    at = f"{repo / 'geometry.py'}:12"  # inside area_of_square
    result = subprocess.run(
        [sys.executable, "-m", "repotune", "ask", str(repo), "What does this function do?",
         "--at", at],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("**Sources**")
    assert answer.strip().startswith(
        "`area_of_square` (geometry.py:10): Area of a square with the given side."
    ), answer
    assert sources.strip().splitlines()[1].startswith("- [geometry.py:10-12]"), sources
    (repo / ".env").write_text("SHOP_TOKEN=tok-19af0c\n")
    refusals = (
        ("geometry.py", "expected FILE:LINE"),
        ("geometry.py:9-3", "FIRST <= LAST"),
        (f"{repo / '.env'}:1", "never put into a prompt"),
    )
    for bad, said in refusals:
        refused = subprocess.run(
            [sys.executable, "-m", "repotune", "ask", str(repo), "Why?", "--at", bad],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0 and said in refused.stderr, refused.stderr


def test_an_answer_about_a_name_defined_twice_says_where_else(tmp_path: Path) -> None:
    repo = tmp_path / "shapes"
    (repo / "legacy").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "geometry.py").write_text(GEOMETRY)
    (repo / "legacy" / "shapes.py").write_text(
        "def area_of_square(side):\n    # kept for old callers\n    return side**2\n"
    )
    (repo / "repotune.toml").write_text('[index]\nindex_dir = ".repotune/index"\n')
    answer = _ask(repo, "What does area_of_square return?")
    cited = re.match(r"`area_of_square` \((geometry\.py:10|legacy/shapes\.py:1)\)", answer)
    assert cited, answer
    other = "legacy/shapes.py:1" if cited[1] == "geometry.py:10" else "geometry.py:10"
    assert answer.endswith(f"`area_of_square` is also defined at {other}."), answer


def test_what_calls_a_function_is_listed_from_the_index(tmp_path: Path) -> None:
    """ "What calls X?" was answered with X's definition; the index lists its callers, and the
    command does not wait for the model to load to say so."""
    report = (
        "from geometry import area_of_square\n\n\n"
        "def floor_area(rooms):\n"
        "    # area_of_square of each room\n"
        "    return sum(area_of_square(side) for side in rooms)\n"
    )
    repo = _repo(tmp_path / "shapes", {"geometry.py": GEOMETRY, "report.py": report})
    result = _run_ask(repo, "What calls area_of_square?")
    answer, _, sources = result.stdout.partition("**Sources**")
    assert answer.strip() == (
        "`area_of_square` is used in 1 place in 1 file (defined at geometry.py:10):\n"
        "- report.py:6 (in `floor_area`): `return sum(area_of_square(side) for side in rooms)`"
    ), answer
    assert "[report.py:6-6]" in sources
    assert "generate" not in result.stderr  # no model was asked
