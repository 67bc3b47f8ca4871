"""How much RepoTune logs: `--log-level` or REPOTUNE_LOG, for the server and the command line.

Only RepoTune's own loggers (`repotune.*`, llama.cpp's messages through `repotune.llama`) follow
the level; the libraries under it (pygls, Chroma, httpx) stay at warnings, so `debug` shows what
RepoTune and llama.cpp did without a flood from every dependency.
"""

from __future__ import annotations

import logging

LOG_LEVEL_ENV = "REPOTUNE_LOG"
LOG_LEVELS: dict[str, int] = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def configure_logging(level: str | None = None) -> None:
    """Log records to stderr; RepoTune's own at `level` (one of LOG_LEVELS) when one is given.

    Idempotent: the command line sets the level before `serve` starts the server, which then
    keeps it."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    if level is not None:
        logging.getLogger("repotune").setLevel(LOG_LEVELS[level.lower()])
