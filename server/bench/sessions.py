"""Typing sessions for `repotune bench complete`, sampled from a codebase's Python files.

A session is a new place in a file (the first character typed there), a few more keystrokes
along the real line, then Enter at its end. Most sessions start mid-line; one in four starts
on an empty line in a function body (a block is due). The text after the cursor on its line
is removed (the user has not typed it yet), everything else in the file stays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

WARM_KEYSTROKES = 3
BLOCK_SHARE = 0.25
SEED = 20240601
MOVE_LINES = 40  # how far a move within a file goes (well beyond sticky_context_lines)


@dataclass(frozen=True)
class Cursor:
    path: str  # workspace-relative
    prefix: str
    suffix: str
    kind: str  # "cold" | "warm" | "next_line" (Enter at the end of the typed line)
    session: int
    expected: str = ""  # the rest of the real line (none after Enter: that line is new)


def _python_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part.startswith(".") or part in ("__pycache__",) for part in parts):
            continue
        if path.stat().st_size < 200_000:
            files.append(path)
    return files


def _candidate_lines(lines: list[str]) -> list[int]:
    picks = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not line.startswith("    ") or len(stripped) < 12:
            continue
        if stripped[0] in "#\"'@" or stripped.startswith(("def ", "class ", "return\n")):
            continue
        picks.append(index)
    return picks


def sample_sessions(root: Path, samples: int, seed: int = SEED) -> list[list[Cursor]]:
    """Typing sessions totalling at least `samples` cursor positions, in a seeded order."""
    rng = random.Random(seed)
    files = _python_files(root)
    if not files:
        raise SystemExit(f"repotune: no Python files under {root}")
    texts = {path: path.read_text(encoding="utf-8", errors="replace") for path in files}
    pool = [(path, index) for path in files for index in _candidate_lines(texts[path].split("\n"))]
    if not pool:
        raise SystemExit(f"repotune: no code lines to complete under {root}")
    rng.shuffle(pool)
    sessions: list[list[Cursor]] = []
    total = 0
    for session, (path, index) in enumerate(pool):
        if total >= samples:
            break
        lines = texts[path].split("\n")
        before = "\n".join(lines[:index]) + ("\n" if index else "")
        after = "\n" + "\n".join(lines[index + 1 :])
        line = lines[index]
        indent = line[: len(line) - len(line.lstrip())]
        relative = path.relative_to(root).as_posix()
        cursors: list[Cursor] = []
        suffix = after
        if rng.random() < BLOCK_SHARE:
            # An empty line in a body, before the real line; then its first characters typed.
            start = indent
            suffix = "\n" + line + after
            typed = line[len(indent) :]
            cursors.append(Cursor(relative, before + start, suffix, "cold", session, typed))
            for step in range(1, WARM_KEYSTROKES + 1):
                prefix = before + indent + typed[:step]
                cursors.append(Cursor(relative, prefix, suffix, "warm", session, typed[step:]))
        else:
            content = line[len(indent) :]
            column = len(indent) + rng.randint(2, max(2, len(content) // 2))
            for step in range(WARM_KEYSTROKES + 1):
                end = min(len(line), column + step)
                kind = "cold" if step == 0 else "warm"
                cursors.append(
                    Cursor(relative, before + line[:end], after, kind, session, line[end:])
                )
        # The line done, Enter: the first request on the new line below it (typing inserts at
        # the cursor: what follows it is the same all session long).
        enter = before + line + "\n" + indent
        cursors.append(Cursor(relative, enter, suffix, "next_line", session))
        sessions.append(cursors)
        total += len(cursors)
    return sessions


def place_in_same_file(root: Path, cursor: Cursor, lines: int = MOVE_LINES) -> Cursor:
    """Where a user moving within the file comes from: the end of the line `lines` above the
    session's place (below it near the file's top)."""
    text = (root / cursor.path).read_text(encoding="utf-8", errors="replace")
    all_lines = text.split("\n")
    line = cursor.prefix.count("\n")
    target = line - lines if line >= lines else min(len(all_lines) - 1, line + lines)
    offset = sum(len(each) + 1 for each in all_lines[:target]) + len(all_lines[target])
    return Cursor(cursor.path, text[:offset], text[offset:], "cold", cursor.session)
