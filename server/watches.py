"""Which directories get a watch: as few as cover every indexable directory, none inside ignored
trees.

A recursive watch puts an inotify watch on every directory below it, ignored or not: one on the
root covers `.git`, `.venv` and every `node_modules` of a monorepo, which exhausts the system's
watch limit or overflows the event queue for events that are dropped anyway. So a directory whose
subtree holds no ignored directory gets one recursive watch; a directory with an ignored
directory somewhere below gets a non-recursive watch and its children are planned the same way.
watchdog runs a thread per watch, so past MAX_WATCHES the plan falls back to one recursive watch
per indexable top-level directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from repotune.server.files import WorkspaceFilter

MAX_WATCHES = 64

WatchPlan = dict[str, bool]  # workspace-relative directory ("" = the root) -> recursive


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _unwatched(filter: WorkspaceFilter, path: Path, rel: str) -> bool:
    if path.is_symlink():
        return True  # never followed by the indexer either
    return filter.dir_ignored(rel) and not filter.could_re_include_below(rel)


def plan_watches(root: Path, filter: WorkspaceFilter, max_watches: int = MAX_WATCHES) -> WatchPlan:
    """The watches that see every change to indexable files and none in ignored directories."""
    children: dict[str, list[str]] = {}
    has_unwatched_child: set[str] = set()
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        rel = Path(dirpath).relative_to(root).as_posix()
        rel = "" if rel == "." else rel
        kept = []
        for name in dirnames:
            child = _join(rel, name)
            if _unwatched(filter, Path(dirpath) / name, child):
                has_unwatched_child.add(rel)
            else:
                kept.append(name)
        dirnames[:] = kept
        children[rel] = [_join(rel, name) for name in kept]
    mixed: set[str] = set()  # directories with an unwatched directory somewhere below
    for rel in sorted(children, key=lambda r: r.count("/") + (1 if r else 0), reverse=True):
        if rel in has_unwatched_child or any(child in mixed for child in children[rel]):
            mixed.add(rel)
    plan: WatchPlan = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        if rel not in mixed:
            plan[rel] = True
            continue
        plan[rel] = False
        pending.extend(children.get(rel, []))
    if len(plan) > max_watches:
        plan = {"": False} | {child: True for child in children.get("", [])}
    return plan
