"""The index database: its schema, its format version, and opening it (rebuilding what is damaged
or of another format, inside a folder RepoTune owns)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from repotune.server.index.folder import DB_NAME, IndexFolderError, create_private_file, wipe

# Bumped when what an index holds changes, redaction included (6: passphrases of words run
# together are redacted): an index in another format is rebuilt on opening.
INDEX_FORMAT_VERSION = 6

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY, hash TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    language TEXT, encoding TEXT, chunk_ids TEXT NOT NULL, indexed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, path TEXT NOT NULL,
    start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, symbol TEXT, kind TEXT NOT NULL,
    language TEXT NOT NULL, parent TEXT, signature TEXT, file_hash TEXT NOT NULL,
    text TEXT NOT NULL, defines TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    names, body, tokenize = "unicode61 remove_diacritics 0 tokenchars '_'");
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_vocab USING fts5vocab(chunks_fts, 'row');
CREATE TABLE IF NOT EXISTS definitions(
    name TEXT NOT NULL, chunk_id TEXT NOT NULL, path TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS definitions_name ON definitions(name);
CREATE INDEX IF NOT EXISTS definitions_path ON definitions(path);
CREATE TABLE IF NOT EXISTS dense_pending(id TEXT PRIMARY KEY, priority INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS dense_pending_order ON dense_pending(priority);
CREATE TABLE IF NOT EXISTS dense_deleted(id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS skipped(path TEXT PRIMARY KEY, reason TEXT NOT NULL);
"""

# SQLite's result codes for a file that is not a database or is damaged: only these mean
# "rebuild"; anything else (cannot open, read-only, permission denied) is an error to report.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


class StoreError(RuntimeError):
    """The index could not be opened or written; the message says where and why."""


@dataclass
class OpenedDatabase:
    db: sqlite3.Connection
    rebuilt_from: str | None  # what the database was when it had to be rebuilt ("damaged", …)


def connect(location: Path) -> sqlite3.Connection:
    """A connection to the folder's database (WAL: readers never wait for the writer)."""
    create_private_file(location / DB_NAME)
    db = sqlite3.connect(
        location / DB_NAME, check_same_thread=False, isolation_level=None, timeout=30
    )
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def open_database(location: Path) -> OpenedDatabase:
    """Open the index database, rebuilding it empty when it is damaged or of another format."""
    db: sqlite3.Connection | None = None
    try:
        db = connect(location)
        version = _read_version(db)
    except (sqlite3.Error, OSError) as exc:
        if db is not None:
            db.close()
        if not isinstance(exc, sqlite3.Error) or not _is_corruption(exc):
            raise StoreError(f"cannot open the index in {location}: {exc}") from exc
        version, db = "damaged", None
    rebuilt_from = None
    if version is not None and version != str(INDEX_FORMAT_VERSION):
        rebuilt_from = version if version in ("damaged", "unknown") else f"format {version}"
        # An index in another format (or a damaged one) is rebuilt, never an error.
        if db is not None:
            db.close()
        wipe_store(location)
        try:
            db = connect(location)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the index in {location}: {exc}") from exc
    assert db is not None
    try:
        db.executescript(SCHEMA)
        db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('format_version', ?)", (str(INDEX_FORMAT_VERSION),)
        )
        db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (str(time.time()),))
    except sqlite3.Error as exc:  # e.g. a read-only folder or file
        db.close()
        raise StoreError(f"cannot write the index in {location}: {exc}") from exc
    return OpenedDatabase(db, rebuilt_from)


def wipe_store(location: Path) -> None:
    """Remove the store's own files only, and only in a folder RepoTune owns."""
    try:
        wipe(location)
    except (IndexFolderError, OSError) as exc:
        raise StoreError(f"cannot rebuild the index in {location}: {exc}") from exc


def _read_version(db: sqlite3.Connection) -> str | None:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    if "meta" not in tables:
        return None if not tables else "unknown"
    row = db.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
    return row[0] if row else "unknown"


def _is_corruption(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return isinstance(error, sqlite3.DatabaseError) and not isinstance(
        error, sqlite3.OperationalError
    )
