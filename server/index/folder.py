"""Which folders RepoTune may write its index into, and what it may delete there.

An index folder carries a marker file written when RepoTune creates (or claims an empty) folder.
Nothing is ever deleted from a folder without the marker, and a wipe (index format change, a
damaged database) removes only the names the store itself writes, so whatever else lives there
(a trained adapter, a dataset, a repository) survives. Folders and files are private to the user
(0700 / 0600): an index holds the text of the code it indexed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

MARKER_NAME = ".repotune-index"
MARKER_TEXT = "RepoTune index folder, format 1: RepoTune may delete its own files here.\n"
DB_NAME = "index.sqlite3"
CHROMA_DIR = "chroma"
# Everything the store writes, and so everything a wipe may remove.
OWNED_NAMES = frozenset(
    {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", CHROMA_DIR}
)
FOLDER_MODE = 0o700
FILE_MODE = 0o600


class IndexFolderError(RuntimeError):
    """The folder cannot hold an index (foreign content, cannot be created); says why."""


def owns(location: Path) -> bool:
    """Whether RepoTune created (or claimed) this folder."""
    return (location / MARKER_NAME).is_file() and not (location / MARKER_NAME).is_symlink()


def claim(location: Path) -> None:
    """Make `location` a RepoTune index folder, or raise IndexFolderError if it is someone else's.

    A new or empty folder is claimed; a folder from an older RepoTune (only the store's own names,
    its database a readable RepoTune index) is adopted; anything else is refused."""
    try:
        location.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    except OSError as exc:
        raise IndexFolderError(f"cannot create the index folder {location}: {exc}") from exc
    if not location.is_dir():
        raise IndexFolderError(f"the index folder {location} is not a directory")
    link = _linked_store_file(location)
    if link is not None:
        raise IndexFolderError(
            f"the index folder {location} holds a symlink where RepoTune keeps its own files "
            f"({link.relative_to(location)} -> {os.readlink(link)}); RepoTune never writes "
            "through links (a repository can commit them): remove it, or point index.index_dir "
            "at an empty folder"
        )
    if owns(location):
        _private(location, FOLDER_MODE)
        return
    try:
        entries = {entry.name for entry in location.iterdir()}
    except OSError as exc:
        raise IndexFolderError(f"cannot read the index folder {location}: {exc}") from exc
    if entries and not (entries <= OWNED_NAMES and _is_repotune_database(location / DB_NAME)):
        raise IndexFolderError(
            f"the index folder {location} holds files RepoTune did not create; RepoTune only "
            "writes its index into an empty folder (or one marked by it), so it is not used: "
            "point index.index_dir at an empty folder or leave it unset"
        )
    try:
        write_private(location / MARKER_NAME, MARKER_TEXT)
    except OSError as exc:
        raise IndexFolderError(f"cannot write into the index folder {location}: {exc}") from exc
    _private(location, FOLDER_MODE)


def _linked_store_file(location: Path) -> Path | None:
    """The first symlink among the store's own names in `location` or below its Chroma folder;
    SQLite and Chroma would follow it and write into whatever file it names."""
    for name in sorted(OWNED_NAMES):
        path = location / name
        if path.is_symlink():
            return path
    return first_symlink_below(location / CHROMA_DIR)


def first_symlink_below(folder: Path) -> Path | None:
    """The first symlink anywhere below `folder` (a linked folder is listed, never entered), or
    None; None for a folder that does not exist."""
    for parent, dirs, files in os.walk(folder):
        for name in sorted((*dirs, *files)):
            if (Path(parent) / name).is_symlink():
                return Path(parent) / name
    return None


def _is_repotune_database(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return row is not None


def wipe(location: Path) -> list[str]:
    """Remove the store's own files from a folder RepoTune owns; returns the names removed.

    Refuses (IndexFolderError) in a folder without the marker."""
    if not owns(location):
        raise IndexFolderError(f"{location} is not a RepoTune index folder: nothing is deleted")
    removed = []
    for name in sorted(OWNED_NAMES):
        path = location / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()  # a symlink is removed, never followed
        else:
            continue
        removed.append(name)
    return removed


def write_private(path: Path, text: str) -> None:
    """Write a small file readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def create_private_file(path: Path) -> None:
    """Create an empty file with mode 0600 if it does not exist (SQLite then gives its -wal and
    -shm files the same mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE))


def make_private(root: Path) -> None:
    """Tighten the modes of everything below `root` (Chroma creates its files with the umask)."""
    _private(root, FOLDER_MODE)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            _private(Path(dirpath) / name, FOLDER_MODE)
        for name in filenames:
            _private(Path(dirpath) / name, FILE_MODE)


def _private(path: Path, mode: int) -> None:
    with contextlib.suppress(OSError):
        if not path.is_symlink() and (path.stat().st_mode & 0o777) != mode:
            path.chmod(mode)
