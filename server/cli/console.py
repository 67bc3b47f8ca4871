"""Error lines that reach the terminal even while llama.cpp loads a model.

llama-cpp-python silences model loading by pointing file descriptors 1 and 2 at /dev/null for
the whole process, and sys.stdout/sys.stderr at /dev/null files. An error printed by another
thread meanwhile (the embedder loads in the index's thread while the command's own thread
fails) vanished, leaving an exit status 1 and no message. Errors are written to a copy of stderr
taken when this module is first imported, before any model loads (the CLI imports it at start).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import typer


def _original_stderr() -> TextIO:
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8")
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded, captured)
        return sys.stderr


_STDERR = _original_stderr()


def print_error(message: str) -> None:
    target: TextIO = sys.stderr
    try:
        # A real file: the process's stderr, or the /dev/null file llama-cpp-python swaps in
        # for sys.stderr (besides pointing fd 2 at /dev/null) while it loads a model.
        target.fileno()
        target = _STDERR
    except (OSError, ValueError, AttributeError):  # captured in Python (tests, an embedding app)
        pass
    typer.secho(message, fg=typer.colors.RED, file=target)


def _below_errors(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR


@contextmanager
def load_errors_said_once() -> Iterator[None]:
    """Leave a failed model load to the command's own `repotune: ...` line.

    The model slot logs the failure for the server's log; a one-shot command that prints it
    itself would otherwise say it twice."""
    from repotune.server.completion.model_slot import log as slot_log

    slot_log.addFilter(_below_errors)
    try:
        yield
    finally:
        slot_log.removeFilter(_below_errors)
