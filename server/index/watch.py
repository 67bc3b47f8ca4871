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

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from repotune.server.config import CONFIG_FILE_NAME
from repotune.server.index.files import (
    IGNORE_FILE_NAMES,
    WorkspaceFilter,
    too_deep,
    utf8_name,
)
from watchdog.events import FileSystemEvent, FileSystemEventHandler

log = logging.getLogger(__name__)

MAX_WATCHES = 64
# Directory events are gathered this long before the watches are re-planned (a tree walk).
WATCH_REPLAN_DELAY_S = 0.3

WatchPlan = dict[str, bool]  # workspace-relative directory ("" = the root) -> recursive
# Files at the workspace root whose change means new settings for the workspace.
SETTINGS_FILE_NAMES = (CONFIG_FILE_NAME, "pyproject.toml")


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _unwatched(filter: WorkspaceFilter, path: Path, rel: str) -> bool:
    if path.is_symlink() or too_deep(rel, is_dir=True):
        return True  # never followed (or entered) by the indexer either
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
        text = os.fsdecode(raw)
        path = Path(text)
        if self.index_dir is not None and path.is_relative_to(self.index_dir):
            return None
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return None
        value = rel.as_posix()
        if not utf8_name(value):
            self.ignored_events += 1  # the scan lists it as skipped ("undecodable-name")
            return None
        return None if value in ("", ".") else value

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.event_type in ("deleted", "moved") and self.root_deleted is not None:
            source = event.src_path
            if Path(os.fsdecode(source)) == self.root:
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


class Watcher:
    """The watchdog observer of one workspace: every indexable directory watched with as few
    watches as possible, re-planned as directories come and go."""

    def __init__(
        self,
        root: Path,
        file_filter: WorkspaceFilter,
        debouncer: Debouncer,
        index_dir: Path,
        *,
        request_rescan: Callable[[], None],
        settings_changed: Callable[[], None],
        is_new_directory: Callable[[str], bool],
        report_error: Callable[[str], None],
        stop: threading.Event,
    ) -> None:
        self.root = root
        self.filter = file_filter
        self.debouncer = debouncer
        self.index_dir = index_dir
        self._request_rescan = request_rescan
        self._settings_changed = settings_changed
        self._is_new_directory = is_new_directory
        self._report_error = report_error
        self._stop = stop
        self.handler: WatchHandler | None = None
        self.root_missing = False
        self._observer: Any = None
        self._lock = threading.Lock()
        self._watches: dict[str, tuple[bool, Any]] = {}  # rel dir -> (recursive, watch)
        # What is watched, replaced whole after each refresh: read without the lock by the
        # event handler, which runs under watchdog's own lock (taking ours there would invert
        # the order the refresh takes them in: schedule() needs watchdog's lock).
        self._watched: WatchPlan = {}
        self._plan_due = threading.Event()

    @property
    def watching(self) -> bool:
        return self._observer is not None

    def start(self, spawn: Callable[[str, Callable[[], None]], None]) -> None:
        """Schedule the first plan and start the observer and the planner thread (`spawn`)."""
        from watchdog.observers import Observer

        handler = WatchHandler(
            self.root,
            self.filter,
            self.debouncer,
            self._request_rescan,
            self.index_dir,
            directory_changed=self._directory_changed,
            settings_changed=self._settings_changed,
            root_deleted=self._root_deleted,
        )
        self.handler = handler
        observer = Observer()
        git_info = self.root / ".git" / "info"
        if git_info.is_dir():
            observer.schedule(handler, str(git_info), recursive=False)
        observer.daemon = True
        self._observer = observer
        self.refresh()
        observer.start()
        spawn("repotune-watch-planner", self._planner_loop)

    def watched(self) -> WatchPlan:
        """The directories watched now ('' = the root) and whether recursively."""
        return dict(self._watched)

    def set_filter(self, file_filter: WorkspaceFilter) -> None:
        """New ignore rules: events are filtered by them at once, the watches re-planned soon."""
        self.filter = file_filter
        if self.handler is not None:
            self.handler.filter = file_filter
        self._plan_due.set()

    def stop(self) -> None:
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(timeout=5)

    def _directory_changed(self, rel: str) -> None:
        """A directory appeared, went or moved: re-plan the watches if they must follow it (a new
        directory beside non-recursive watches, or an ignored one inside a recursive watch)."""
        parent = rel.rpartition("/")[0]
        watched = self._watched
        beside = watched.get(parent) is False
        if beside or rel in watched or self.filter.dir_path_ignored(rel):
            self._plan_due.set()

    def _root_deleted(self) -> None:
        self.root_missing = True

    def _check_root(self) -> None:
        """A workspace folder deleted and created again gets fresh watches and a full pass (the
        old watches died with the old directory)."""
        if not self.root.is_dir():
            self.root_missing = True
            return
        if not self.root_missing or self._observer is None:
            return
        self.root_missing = False
        with self._lock:
            for _, watch in self._watches.values():
                with contextlib.suppress(Exception):
                    self._observer.unschedule(watch)
            self._watches.clear()
        self.refresh()
        self._request_rescan()

    def _planner_loop(self) -> None:
        while not self._stop.is_set():
            self._check_root()
            if not self._plan_due.wait(0.5):
                continue
            self._stop.wait(WATCH_REPLAN_DELAY_S)  # let a burst (git checkout, npm install) land
            self._plan_due.clear()
            self.refresh()

    def refresh(self) -> None:
        """Apply the current watch plan: drop watches no longer wanted, add new ones (and look
        through a newly watched directory, whose files may predate the watch)."""
        observer = self._observer
        if observer is None or self._stop.is_set():
            return
        with self._lock:
            plan = plan_watches(self.root, self.filter)
            stale = []
            # New watches go in before the ones they replace come out: a directory whose watch
            # changes (recursive or not) is never unwatched in between, so no event falls in a gap.
            for rel in sorted(plan):
                current = self._watches.get(rel)
                if current is not None and current[0] == plan[rel]:
                    continue
                path = self.root / rel if rel else self.root
                try:
                    watch = observer.schedule(self.handler, str(path), recursive=plan[rel])
                except OSError as exc:  # e.g. the system's inotify watch limit, or it just went
                    if path.is_dir():
                        self._report_error(f"cannot watch {rel or '.'}/: {exc}")
                        log.warning("cannot watch %s: %s", rel or ".", exc)
                    continue
                if current is not None:
                    stale.append(current[1])
                self._watches[rel] = (plan[rel], watch)
                if current is None and rel and self._is_new_directory(rel):
                    self.debouncer.add(rel)  # a new directory: files may predate its watch
            for rel in [rel for rel in self._watches if rel not in plan]:
                stale.append(self._watches.pop(rel)[1])
            for watch in stale:
                with contextlib.suppress(Exception):
                    observer.unschedule(watch)
            self._watched = {rel: recursive for rel, (recursive, _) in self._watches.items()}
