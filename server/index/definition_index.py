"""Where names are defined: lookups in the index's definitions table (written by the store with
each file's chunks), for the definition ranking of retrieval (a cursor's names, a question's
names and `Owner.member` symbols)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

from repotune.server.index.fields import field_line


class DefinitionIndex:
    """Reads the definitions table on the store's connection, under the store's lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock

    def symbol_sites(self, symbols: Sequence[str]) -> list[str]:
        """Chunks where `Owner.member` symbols are defined — the member's own chunk, its
        owner's when the class is kept whole, or a chunk of the owner's methods that holds it
        after another (small methods share a chunk named for the first); for a field, the
        owner's chunks that assign it — in the symbols' order: a question's `Owner.member`."""
        found: dict[str, None] = {}
        with self._lock:
            for symbol in symbols:
                owner, _, member = symbol.rpartition(".")
                rows = self._db.execute(
                    "SELECT d.chunk_id FROM definitions d JOIN chunks c ON c.id = d.chunk_id"
                    " WHERE d.name = :member AND (c.symbol IN (:symbol, :owner)"
                    " OR c.symbol LIKE :any_symbol OR c.symbol LIKE :any_owner"
                    " OR c.parent = :owner OR c.parent LIKE :any_owner)"
                    " ORDER BY c.symbol = :symbol DESC",
                    {
                        "member": member,
                        "symbol": symbol,
                        "owner": owner,
                        "any_symbol": f"%.{symbol}",
                        "any_owner": f"%.{owner}",
                    },
                ).fetchall()
                if not rows:  # a field is no definition: the owner's own chunks that assign it
                    field = field_line(member)
                    owned = self._db.execute(
                        "SELECT id, text FROM chunks WHERE symbol = ? OR symbol LIKE ?",
                        (owner, f"%.{owner}"),
                    ).fetchall()
                    rows = [(chunk_id,) for chunk_id, text in owned if field.search(text)]
                for (chunk_id,) in rows:
                    found.setdefault(chunk_id, None)
        return list(found)

    def definition_sites(
        self, names: Sequence[str], max_sites: int
    ) -> dict[str, list[tuple[str, str]]]:
        """Where each name is defined: name -> [(chunk id, path)], for the names that are;
        names defined in more than `max_sites` places come back with no sites (counted on the
        index alone, their rows are never read)."""
        if not names:
            return {}
        marks = ",".join("?" * len(names))
        with self._lock:
            counts = self._db.execute(
                f"SELECT name, count(*) FROM definitions WHERE name IN ({marks}) GROUP BY name",
                list(names),
            ).fetchall()
            sites: dict[str, list[tuple[str, str]]] = {
                name: [] for name, count in counts if count > max_sites
            }
            wanted = [name for name, count in counts if count <= max_sites]
            if wanted:
                marks = ",".join("?" * len(wanted))
                rows = self._db.execute(
                    f"SELECT name, chunk_id, path FROM definitions WHERE name IN ({marks})",
                    wanted,
                ).fetchall()
                for name, chunk_id, path in rows:
                    sites.setdefault(name, []).append((chunk_id, path))
        return sites

    def count(self, name: str) -> int:
        """How many definitions of `name` the index holds (read from the name index alone)."""
        with self._lock:
            (found,) = self._db.execute(
                "SELECT count(*) FROM definitions WHERE name = ?", (name,)
            ).fetchone()
        return int(found)

    def same_name_sites(self, name: str, path: str | None, max_sites: int) -> list[str]:
        """Chunks defining `name`, those of `path` first (in file order), then other files'; a
        name defined in more than `max_sites` places only where `path` defines it (counted on
        the index: a `__init__` defined thousands of times costs one count)."""
        query = (
            "SELECT d.chunk_id FROM definitions d JOIN chunks c ON c.id = d.chunk_id"
            " WHERE d.name = :name {where} ORDER BY d.path = :path DESC, d.path, c.start_line"
            " LIMIT :limit"
        )
        values = {"name": name, "path": path, "limit": max_sites}
        with self._lock:
            where = "AND d.path = :path" if self.count(name) > max_sites else ""
            rows = self._db.execute(query.format(where=where), values).fetchall()
        return [chunk_id for (chunk_id,) in rows]
