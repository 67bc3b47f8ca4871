"""Typing sessions of `repotune bench complete` (pure logic, no model)."""

from __future__ import annotations

from pathlib import Path

from repotune.server.bench.sessions import Cursor, place_in_same_file


def _cursor_at(text: str, line: int) -> Cursor:
    offset = sum(len(each) + 1 for each in text.split("\n")[:line]) + 4
    return Cursor("mod.py", text[:offset], text[offset:], "cold", 0)


def test_a_move_within_the_file_comes_from_the_end_of_a_line_far_above(tmp_path: Path) -> None:
    text = "".join(f"    value_{n} = {n}\n" for n in range(100))
    (tmp_path / "mod.py").write_text(text)
    came_from = place_in_same_file(tmp_path, _cursor_at(text, 60), lines=40)
    assert came_from.path == "mod.py"
    assert came_from.prefix + came_from.suffix == text  # the file as it is
    assert came_from.prefix.endswith("    value_20 = 20")  # the end of line 20
    assert came_from.suffix.startswith("\n    value_21 = 21")


def test_near_the_top_it_comes_from_below(tmp_path: Path) -> None:
    text = "".join(f"x{n} = {n}\n" for n in range(60))
    (tmp_path / "mod.py").write_text(text)
    came_from = place_in_same_file(tmp_path, _cursor_at(text, 5), lines=40)
    assert came_from.prefix.endswith("\nx45 = 45")
    assert came_from.prefix + came_from.suffix == text
    # A short file: the end of its last line.
    short = "a = 1\nb = 2\n"
    (tmp_path / "mod.py").write_text(short)
    assert place_in_same_file(tmp_path, _cursor_at(short, 0), lines=40).prefix == short
