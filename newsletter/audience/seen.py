"""The addresses an import has met so far, kept in a temporary SQLite file: memory stays flat
however long the file."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path


class SeenAddresses:
    """Addresses already met in this file, kept on disk so memory stays flat."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="newsletter-import-")
        self.db = sqlite3.connect(Path(self._dir.name) / "seen.db")
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, line INTEGER)")

    def earlier(self, keys: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(keys), 900):
            chunk = keys[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for key, line in self.db.execute(
                f"SELECT key, line FROM seen WHERE key IN ({marks})", chunk
            ):
                found[key] = line
        return found

    def add(self, rows: list[tuple[str, int]]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", rows)

    def close(self) -> None:
        self.db.close()
        self._dir.cleanup()
