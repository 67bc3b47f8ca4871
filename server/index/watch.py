"""Which directories get a watch: as few as cover every indexable directory, none inside ignored
trees.

A recursive watch puts an inotify watch on every directory below it, ignored or not: one on the
root covers `.git`, `.venv` and every `node_modules` of a monorepo, which exhausts the system's
watch limit or overflows the event queue for events that are dropped anyway. So a directory whose
subtree holds no ignored directory gets one recursive watch; a directory with an ignored
directory somewhere below gets a non-recursive watch and its children are planned the same way.
watchdog runs a thread per watch, so past MAX_WATCHES the plan falls back to one recursive watch
per indexable top-level directory.

Events: `WatchHandler` filters watchdog's events (ignored paths cost nothing), `Debouncer`
coalesces them per path (a burst of saves becomes one or two updates) and `drain_into` hands them
to one worker through a bounded queue; an overflow degrades into one full reconcile, never lost
work.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from repotune.server.config import CONFIG_FILE_NAME
from repotune.server.index.files import IGNORE_FILE_NAMES, WorkspaceFilter
from watchdog.events import FileSystemEvent, FileSystemEventHandler

MAX_WATCHES = 64

WatchPlan = dict[str, bool]  # workspace-relative directory ("" = the root) -> recursive
# Files at the workspace root whose change means new settings for the workspace.
SETTINGS_FILE_NAMES = (CONFIG_FILE_NAME, "pyproject.toml")


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


class Debouncer:
    """Coalesces events per path. The first change after a quiet spell goes after `settle`
    seconds; further changes to the same path wait until `interval` has passed since its last
    release, so a burst of N saves costs a bounded number of updates, not N."""

    def __init__(self, interval: float, settle: float = 0.05) -> None:
        self.interval = interval
        self.settle = min(settle, interval)
        self._due: dict[str, float] = {}
        self._first: dict[str, float] = {}
        self._released: dict[str, float] = {}
        self._cond = threading.Condition()

    def add(self, rel: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._cond:
            due = now + self.settle
            last = self._released.get(rel)
            if last is not None and now - last < self.interval:
                due = max(due, last + self.interval)
            first = self._first.setdefault(rel, now)
            due = max(due, self._due.get(rel, 0.0))
            # never postpone one path forever while it keeps changing
            due = min(due, first + self.interval + self.settle)
            self._due[rel] = max(due, now + min(self.settle, 0.01))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def pop_due(self, timeout: float) -> list[str]:
        """Paths whose time has come, waiting up to `timeout` for one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                ready = sorted(
                    (rel for rel, due in self._due.items() if due <= now), key=self._due.__getitem__
                )
                if ready:
                    for rel in ready:
                        del self._due[rel]
                        self._first.pop(rel, None)
                        self._released[rel] = now
                    if len(self._released) > 10_000:
                        cutoff = now - self.interval
                        self._released = {k: v for k, v in self._released.items() if v > cutoff}
                    return ready
                if now >= deadline:
                    return []
                next_due = min(self._due.values(), default=deadline)
                self._cond.wait(max(0.001, min(deadline, next_due) - now))

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class WatchHandler(FileSystemEventHandler):
    """Turns watchdog events into workspace-relative paths for the debouncer."""

    def __init__(
        self,
        root: Path,
        file_filter: WorkspaceFilter,
        debouncer: Debouncer,
        request_rescan: Callable[[], None],
        index_dir: Path | None = None,
        directory_changed: Callable[[str], None] | None = None,
        settings_changed: Callable[[], None] | None = None,
        root_deleted: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.filter = file_filter
        self.debouncer = debouncer
        self.request_rescan = request_rescan
        self.index_dir = index_dir
        self.directory_changed = directory_changed
        self.settings_changed = settings_changed
        self.root_deleted = root_deleted
        self.ignored_events = 0

    def _rel(self, raw: str | bytes) -> str | None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        path = Path(text)
        if self.index_dir is not None and path.is_relative_to(self.index_dir):
            return None
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return None
        value = rel.as_posix()
        return None if value in ("", ".") else value

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.event_type in ("deleted", "moved") and self.root_deleted is not None:
            source = event.src_path
            if Path(source.decode() if isinstance(source, bytes) else source) == self.root:
                self.root_deleted()  # its watches died with it
        paths = [event.src_path]
        if event.event_type == "moved":
            paths.append(event.dest_path)
        for raw in paths:
            rel = self._rel(raw)
            if rel is None:
                continue
            self._route(rel, event.is_directory, event.event_type)

    def _route(self, rel: str, is_directory: bool, event_type: str) -> None:
        parts = PurePosixPath(rel).parts
        if parts[0] == ".git":
            if rel == ".git/info/exclude":
                self.request_rescan()
            else:
                self.ignored_events += 1
            return
        if parts[-1] in IGNORE_FILE_NAMES:
            self.request_rescan()  # the rules changed: a full (stat-only) pass finds out what
            return
        if rel in SETTINGS_FILE_NAMES and not is_directory and self.settings_changed is not None:
            self.settings_changed()  # re-read and applied by the owner; still indexed below
        if is_directory:
            if event_type == "modified":
                return  # a directory's mtime changes with its entries, which have own events
            if self.directory_changed is not None:
                self.directory_changed(rel)  # the set of watches may have to follow
            if self.filter.dir_path_ignored(rel):
                self.ignored_events += 1
                return
        elif self.filter.path_reason(rel) == "ignored":
            self.ignored_events += 1
            return
        self.debouncer.add(rel)


def drain_into(
    debouncer: Debouncer,
    work: queue.Queue[str],
    stop: threading.Event,
    request_rescan: Callable[[], None],
) -> None:
    """Debounce thread body: move due paths into the bounded work queue."""
    while not stop.is_set():
        for rel in debouncer.pop_due(timeout=0.2):
            try:
                work.put_nowait(rel)
            except queue.Full:
                request_rescan()
