"""The symbol table restore -r keeps for a target between runs.

It is the target's directory tree as the last dump applied left it: each
directory's BSD directory data by inode number, which names every entry and
its inode. With it, the next incremental's deletions (inodes gone from its
TS_CLRI map), renames (a known inode under a new name) and hard-link changes
can be replayed. It lives in the state database, keyed by the target's path,
so the restored tree holds nothing but what was restored.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from dataclasses import dataclass, field

from ndmptools.state.db import StateDB

_MAGIC = b"NDST1"
_ENTRY = struct.Struct("<II")


@dataclass
class SymbolTable:
    first_date: int  # c_date of the level 0 the chain began with
    last_date: int  # c_date of the last dump applied
    last_level: int
    filesys: str
    directories: dict[int, bytes] = field(default_factory=dict)

    def encode_directories(self) -> bytes:
        parts = [_MAGIC]
        for ino, data in sorted(self.directories.items()):
            parts.append(_ENTRY.pack(ino, len(data)))
            parts.append(data)
        return zlib.compress(b"".join(parts), 3)

    @staticmethod
    def decode_directories(blob: bytes) -> dict[int, bytes]:
        raw = zlib.decompress(blob)
        if not raw.startswith(_MAGIC):
            raise ValueError("not a symbol table")
        directories, offset = {}, len(_MAGIC)
        while offset < len(raw):
            ino, length = _ENTRY.unpack_from(raw, offset)
            offset += _ENTRY.size
            directories[ino] = raw[offset : offset + length]
            offset += length
        return directories


class RestoreTargets:
    """Symbol tables by target directory."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    @staticmethod
    def _key(target: str) -> tuple[str, int, int]:
        path = os.path.realpath(target)
        st = os.stat(path)
        return path, st.st_dev, st.st_ino

    def load(self, target: str) -> tuple[SymbolTable | None, str | None]:
        """The table for ``target``, or (None, why there is none usable)."""
        try:
            path, device, inode = self._key(target)
        except OSError:
            return None, None
        row = self.db.conn.execute("SELECT * FROM restore_targets WHERE target = ?", (path,)).fetchone()
        if row is None:
            return None, None
        if (row["device"], row["inode"]) != (device, inode):
            return None, f"{path} is not the directory restored into before (it was replaced)"
        table = SymbolTable(
            row["first_date"],
            row["last_date"],
            row["last_level"],
            row["last_filesys"] or "",
            SymbolTable.decode_directories(row["symbol_table"]),
        )
        return table, None

    def save(self, target: str, table: SymbolTable) -> None:
        path, device, inode = self._key(target)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO restore_targets (target, device, inode, first_date, last_date, "
                "last_level, last_filesys, symbol_table, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    path,
                    device,
                    inode,
                    table.first_date,
                    table.last_date,
                    table.last_level,
                    table.filesys,
                    table.encode_directories(),
                    time.time(),
                ),
            )

    def forget(self, target: str) -> None:
        """Drop what is kept for ``target``: a new directory there may reuse the old one's inode."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM restore_targets WHERE target = ?", (os.path.realpath(target),))
