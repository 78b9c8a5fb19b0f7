"""The file history (HIST=Y): every entry of a dump, with where it is on media.

Two tables keep it small: ``catalog_names`` holds each name (a path relative
to the dump's root, as raw bytes) and its media inode, ``catalog_inodes`` each
inode once (hard links share it) with its type, size, mtime and the c_tapea of
its first header. A name counts only when its inode is in the dump: a name
row without an inode row (an unchanged entry of an incremental's directory, a
file that vanished) is never listed.

Rows are written in batches while the dump runs, with INSERT OR REPLACE so
that a restart, which rebuilds part of the stream, writes the same rows again
without harm. A failed dump's rows are dropped with it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ndmptools.state.db import StateDB


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    path: bytes
    ino: int
    mode: int
    size: int
    mtime_ns: int
    tapea: int


_SELECT = (
    "SELECT n.path, n.ino, i.mode, i.size, i.mtime_ns, i.tapea FROM catalog_names n "
    "JOIN catalog_inodes i ON i.dump_id = n.dump_id AND i.ino = n.ino "
)


def _entry(row) -> CatalogEntry:
    return CatalogEntry(bytes(row[0]), row[1], row[2], row[3], row[4], row[5])


def _under(path: bytes) -> tuple[bytes, bytes]:
    """The BLOB range of every path below ``path`` ('/' is 0x2f, so '0' bounds it)."""
    return path + b"/", path + b"0"


def pattern_matcher(pattern: str):
    """A shell pattern as ``chain find`` means it, matching raw path bytes.

    A pattern with no '/' is matched against the last component (as
    ``find -name``); one with '/' against the whole path from the dump's root,
    where '*' also crosses '/'. Matching is case-sensitive.
    """
    raw = pattern.encode("utf-8", "surrogateescape").strip(b"/")
    whole = b"/" in raw
    regex = re.compile(fnmatch.translate(raw.decode("latin-1")).encode("latin-1"), re.DOTALL)

    def matches(path: bytes) -> bool:
        return bool(regex.match(path if whole else path.rsplit(b"/", 1)[-1]))

    return matches


class FileCatalog:
    """Reading and writing the file history of the dumps in one state database."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def add(
        self,
        dump_id: int,
        names: Iterable[tuple[bytes, int]],
        inodes: Iterable[tuple[int, int, int, int, int]],
    ) -> None:
        """One batch: names as (path, ino), inodes as (ino, mode, size, mtime_ns, tapea)."""
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO catalog_names (dump_id, path, ino) VALUES (?, ?, ?)",
                ((dump_id, path, ino) for path, ino in names),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO catalog_inodes (dump_id, ino, mode, size, mtime_ns, tapea) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                ((dump_id, *row) for row in inodes),
            )

    def drop(self, dump_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM catalog_names WHERE dump_id = ?", (dump_id,))
            conn.execute("DELETE FROM catalog_inodes WHERE dump_id = ?", (dump_id,))

    def entries(self, dump_id: int) -> Iterator[CatalogEntry]:
        """Every entry of a dump, in media order (directories first, as pass III wrote them)."""
        cursor = self.db.conn.execute(_SELECT + "WHERE n.dump_id = ? ORDER BY i.tapea, n.path", (dump_id,))
        for row in cursor:
            yield _entry(row)

    def select(self, dump_id: int, paths: Iterable[bytes]) -> list[CatalogEntry]:
        """The entries at ``paths``, everything below them, and the directories above them."""
        wanted: dict[bytes, CatalogEntry] = {}
        conn = self.db.conn
        for path in paths:
            parts = path.split(b"/") if path else []
            ancestors = [b"/".join(parts[:i]) for i in range(len(parts))]
            for name in [*ancestors, path]:
                row = conn.execute(_SELECT + "WHERE n.dump_id = ? AND n.path = ?", (dump_id, name)).fetchone()
                if row is not None:
                    wanted[bytes(row[0])] = _entry(row)
            low, high = _under(path) if path else (b"", b"\xff" * 8)
            cursor = conn.execute(
                _SELECT + "WHERE n.dump_id = ? AND n.path >= ? AND n.path < ?", (dump_id, low, high)
            )
            for row in cursor:
                wanted.setdefault(bytes(row[0]), _entry(row))
        return sorted(wanted.values(), key=lambda e: (e.tapea, e.path))

    def find(self, dump_ids: list[int], pattern: str) -> Iterator[tuple[int, CatalogEntry]]:
        """(dump id, entry) of every entry matching ``pattern`` in those dumps, in dump then path order."""
        matches = pattern_matcher(pattern)
        for dump_id in dump_ids:
            cursor = self.db.conn.execute(_SELECT + "WHERE n.dump_id = ? ORDER BY n.path", (dump_id,))
            for row in cursor:
                if matches(bytes(row[0])):
                    yield dump_id, _entry(row)

    def count(self, dump_id: int) -> int:
        row = self.db.conn.execute(
            "SELECT COUNT(*) FROM catalog_names n JOIN catalog_inodes i "
            "ON i.dump_id = n.dump_id AND i.ino = n.ino WHERE n.dump_id = ?",
            (dump_id,),
        ).fetchone()
        return row[0]
