"""Work done ahead of the editor's request on one background thread: the newest job wins.

Editors send didChange before the (debounced) completion request, and a user who accepts the
first line of a block asks for the rest next. The engine submits that work here; a job gets a
cancel event that a newer job, or any completion request, sets, and the job checks it between
small steps, so it never holds the model long after something more urgent arrives.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Job = Callable[[threading.Event], None]


@dataclass
class _Pending:
    kind: str
    job: Job
    cancel: threading.Event


class AheadWorker:
    """A single background thread running the most recently submitted job."""

    def __init__(self, name: str = "repotune-ahead") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._pending: _Pending | None = None
        self._running: _Pending | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.submitted = 0
        self.superseded = 0

    def submit(self, kind: str, job: Job) -> bool:
        """Queue `job` in place of any pending one and cancel the running one."""
        with self._cond:
            if self._closed:
                return False
            running = self._running
            if self._pending is not None:
                self._pending.cancel.set()
                self.superseded += 1
            if running is not None:
                running.cancel.set()
            self._queue(kind, job)
            return True

    def offer(self, kind: str, job: Job) -> bool:
        """Queue `job` only where it displaces nothing: no job pending, none running but the
        caller's own (a job may queue its follow-up), and no request has stopped that one."""
        with self._cond:
            if self._closed or self._pending is not None:
                return False
            running = self._running
            if running is not None and (
                threading.current_thread() is not self._thread or running.cancel.is_set()
            ):
                return False
            self._queue(kind, job)
            return True

    def _queue(self, kind: str, job: Job) -> None:
        """Make `job` the pending one and wake the thread (holding `_cond`)."""
        self._pending = _Pending(kind, job, threading.Event())
        self.submitted += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()
        self._cond.notify()

    def cancel(self) -> None:
        """Stop the running job at its next step and drop the pending one."""
        with self._cond:
            for item in (self._pending, self._running):
                if item is not None:
                    item.cancel.set()
            self._pending = None

    def busy(self) -> str | None:
        """The kind of the newest job pending or running that is not cancelled, if any."""
        with self._cond:
            # A submit cancels the running job and queues its own: that one is the answer
            # while the cancelled one finishes its step.
            for item in (self._pending, self._running):
                if item is not None and not item.cancel.is_set():
                    return item.kind
            return None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is pending or running (tests and benchmarks)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._pending is None and self._running is None, timeout
            )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self.cancel()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                item, self._pending = self._pending, None
                self._running = item
            try:
                if item is not None and not item.cancel.is_set():
                    item.job(item.cancel)
            except Exception:  # a failed job must not end the thread
                log.exception("background %s job failed", item.kind if item else "?")
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()
