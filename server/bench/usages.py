"""`repotune bench usages`: how exactly "Where is X used?" is answered, against Python's own parser.

For names defined in a Python workspace (functions, classes, methods; sampled with a fixed
seed), the lines the server lists as uses (ask/usages.py over the index's text, read with
tree-sitter) are compared with the lines where Python's `ast` finds the name loaded or an
attribute of that name, in the same files read from disk. Precision and recall are over
(file, line) pairs, pooled over names; the time is the server's lookup per name. The index is
built lexical-only in a temporary folder; the workspace is only read.
"""

from __future__ import annotations

import ast
import json
import random
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from repotune.server.ask.use_sites import sites_in_index
from repotune.server.bench.record import run_machine
from repotune.server.bench.stats import p50_p95
from repotune.server.config import Settings, settings_with
from repotune.server.corpora import ensure_corpus
from repotune.server.index.workspace import WorkspaceIndex

DEFAULT_NAMES = 100
INDEX_TIMEOUT_S = 600.0
MIN_NAME_CHARS = 4  # "run", "get": common words, every file has them
MAX_MISSES_SHOWN = 10

Line = tuple[str, int]


def python_uses(files: dict[str, str], name: str) -> set[Line]:
    """Lines where `ast` sees `name` read (a Name loaded) or an attribute named `name` (any
    context: `self.name = ...` names it too) — the reference the server's list is held to."""
    found: set[Line] = set()
    for path, source in files.items():
        if name not in source:
            continue
        for node in ast.walk(_tree(source)):
            loaded = isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
            if (loaded and node.id == name) or (  # type: ignore[attr-defined]
                isinstance(node, ast.Attribute) and node.attr == name
            ):
                found.add((path, _name_line(node)))
    return found


def _tree(source: str) -> ast.AST:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in old sources
        try:
            return ast.parse(source)
        except (SyntaxError, ValueError):
            return ast.Module(body=[], type_ignores=[])


def _name_line(node: ast.AST) -> int:
    """The line the name itself is on (an attribute's node starts at its object)."""
    if isinstance(node, ast.Attribute) and node.end_lineno is not None:
        return node.end_lineno
    return getattr(node, "lineno", 0)


def defined_names(files: dict[str, str]) -> list[str]:
    """Function, class and method names defined in the files, each once, sorted."""
    names: set[str] = set()
    for source in files.values():
        for node in ast.walk(_tree(source)):
            definition = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if definition and len(node.name) >= MIN_NAME_CHARS:  # type: ignore[attr-defined]
                names.add(node.name)  # type: ignore[attr-defined]
    return sorted(names)


def bench_usages(
    workspace: Path, settings: Settings, label: str | None, names: int, seed: int = 1234
) -> dict[str, Any]:
    """Precision and recall of the listed uses against `ast`, over `names` sampled names."""
    with tempfile.TemporaryDirectory(prefix="repotune-bench-usages-") as scratch:
        index_settings = {"dense": False, "index_dir": str(Path(scratch) / "index")}
        lexical = settings_with(settings, {"index": index_settings}, "bench")
        with WorkspaceIndex(workspace, lexical) as index:
            index.start(watch=False)
            if not index.wait_lexical(INDEX_TIMEOUT_S):
                raise SystemExit("repotune: the index did not finish in time")
            indexed = [path for path in index.store.files() if path.endswith(".py")]
            files = {path: _read(workspace / path) for path in indexed}
            pool = defined_names(files)
            sample = sorted(random.Random(seed).sample(pool, min(names, len(pool))))
            listed_total = true_total = hits = exact = 0
            times: list[float] = []
            misses: list[dict[str, Any]] = []
            for name in sample:
                started = time.perf_counter()
                sites, _, _ = sites_in_index(index.store, name, max_files=1 << 30)
                times.append((time.perf_counter() - started) * 1000.0)
                listed = {(s.path, s.line) for s in sites if s.kind == "use"}
                truth = python_uses(files, name)
                listed_total += len(listed)
                true_total += len(truth)
                hits += len(listed & truth)
                exact += listed == truth
                if listed != truth and len(misses) < MAX_MISSES_SHOWN:
                    misses.append(
                        {
                            "name": name,
                            "listed_not_in_ast": sorted(listed - truth)[:3],
                            "in_ast_not_listed": sorted(truth - listed)[:3],
                        }
                    )
    return {
        "benchmark": "usages",
        "workspace": label or str(workspace),
        "python_files": len(files),
        "names": len(sample),
        "seed": seed,
        "uses_in_ast": true_total,
        "uses_listed": listed_total,
        "precision": round(hits / listed_total, 4) if listed_total else None,
        "recall": round(hits / true_total, 4) if true_total else None,
        "names_exactly_right": round(exact / len(sample), 4) if sample else None,
        "lookup_ms": p50_p95(times),
        "differences": misses,
        "machine": run_machine(),
    }


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def run_bench_usages(
    workspace: Path | None, settings: Settings, corpus: str | None, names: int = DEFAULT_NAMES
) -> dict[str, Any]:
    """Print (and return) the JSON report for `workspace` or a pinned PyPI corpus."""
    label = None
    if corpus:
        workspace, label = ensure_corpus(corpus), corpus
    if workspace is None or not workspace.is_dir():
        raise SystemExit("repotune: bench usages needs a workspace directory or --corpus NAME==VER")
    result = bench_usages(workspace, settings, label, names)
    print(json.dumps(result, indent=2))
    return result
