"""The file history (HIST=Y): every entry of a dump, with where it is on media.

It is kept as the dump already has it, so that keeping it costs the dump
next to nothing. ``catalog_dirs`` holds each directory once: its path
(relative to the dump's root, raw bytes), its inode's type, size, mtime,
c_tapea and data blocks, its entries as written on media (BSD
``struct direct``: inode, type, name), and its birth time, chattr flags,
owner and group. ``catalog_inodes`` holds every other inode in batches: one
row per batch of ascending inode numbers, the same of each (but the
entries) packed in a fixed-width row (``InodeRows``). Hard links are one
inode under several names. What a dump by ndmptools before schema 6 kept
has no birth time, flags or owner: they read as None.

A name counts only when its inode is on the dump: a name whose inode has no
row (an unchanged entry of an incremental's directory, a file that vanished)
is never listed. Reading pays for the compactness: a path is found through
its directory's row, and a search parses every directory of the dump.

A restart writes the inodes from its resume inode again, with new places;
``forget_inodes_from`` drops what the catalog holds from there on first. A
failed dump's rows are dropped with it.
"""

from __future__ import annotations

import fnmatch
import re
import sqlite3
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise

from ndmptools.format.constants import DIRBLKSIZ
from ndmptools.format.dirent import DirEntry, parse_directory
from ndmptools.state.db import StateDB


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    path: bytes
    ino: int
    mode: int
    size: int
    mtime_ns: int
    tapea: int
    blocks: int  # 1 KiB data blocks it has on media (holes are none); a directory or symlink counts its own
    birth_ns: int | None = None  # creation time; None: the file system has none, or the catalog is older
    flags: int | None = None  # chattr flags; None: the catalog is older than they are
    uid: int | None = None
    gid: int | None = None


# An inode as the catalog keeps it: (ino, mode, size, mtime_ns, tapea, blocks, birth_ns, flags, uid, gid).
InodeRow = tuple[int, int, int, int, int, int, int | None, int | None, int | None, int | None]
# A directory: (path, ino, mode, size, mtime_ns, tapea, blocks, entries as on media,
# birth_ns, flags, uid, gid).
DirectoryRow = tuple[bytes, int, int, int, int, int, int, bytes, int | None, int, int, int]

# Fixed-width rows, so that packing one costs a single struct call while dumping: 46 bytes, or 58
# once a batch holds a size, a place or a block count past 32 bits. A birth time of 0 is none.
_NARROW = struct.Struct("<IHIqIIqIII")
_WIDE = struct.Struct("<IHQqQQqIII")
_NARROW_MAX = 0xFFFFFFFF
# Before schema 6: no birth time, flags or owner (26 and 38 bytes); read, never written.
_OLD_NARROW = struct.Struct("<IHIqII")
_OLD_WIDE = struct.Struct("<IHQqQQ")
_LAYOUTS = {b"N": _NARROW, b"W": _WIDE, b"n": _OLD_NARROW, b"w": _OLD_WIDE}
_OLD_LAYOUTS = (b"n", b"w")
_UNKNOWN = (None, None, None, None)  # birth, flags, uid, gid of a row from before schema 6


class InodeRows:
    """One batch of inodes, in ascending order, packed as they come (the blob of a catalog_inodes row).

    ``add`` is on a dump's path once per file, so it does little more than
    one struct call; when the batch holds ``batch`` inodes, ``on_full`` is
    called (to write it out and ``clear`` it).
    """

    __slots__ = ("_batch", "_limit", "_on_full", "_pack", "_room", "data", "wide")

    def __init__(self, batch: int = 0, on_full: Callable[[], None] | None = None) -> None:
        self._batch = batch if on_full is not None else 0
        self._on_full = on_full
        self.clear()

    def clear(self) -> None:
        self.data = bytearray(b"N")  # the blob as it goes to the database: its layout, then the rows
        self.wide = False
        self._pack = _NARROW.pack
        self._limit = _NARROW_MAX  # a size or a place past it widens the batch
        self._room = self._batch or -1  # inodes until on_full; -1: never

    def add(self, ino: int, info, tapea: int, blocks: int) -> None:
        """The next inode as the dump writes it: ``info`` is its InodeInfo (a birth time None is 0)."""
        size = info.size
        if (size | tapea | blocks) > self._limit:
            self._widen()
        birth = info.birth_ns or 0
        self.data += self._pack(
            ino, info.mode, size, info.mtime_ns, tapea, blocks, birth, info.flags, info.uid, info.gid
        )
        self._room -= 1
        if not self._room:
            self._on_full()

    def append(
        self,
        ino: int,
        mode: int,
        size: int,
        mtime_ns: int,
        tapea: int,
        blocks: int,
        birth_ns: int | None,
        flags: int,
        uid: int,
        gid: int,
    ) -> None:
        if (size | tapea | blocks) > self._limit:
            self._widen()
        self.data += self._pack(ino, mode, size, mtime_ns, tapea, blocks, birth_ns or 0, flags, uid, gid)

    def _widen(self) -> None:
        rows = _NARROW.iter_unpack(memoryview(self.data)[1:])
        self.data = bytearray(b"W" + b"".join(_WIDE.pack(*row) for row in rows))
        self.wide = True
        self._pack = _WIDE.pack
        self._limit = 1 << 64

    def __len__(self) -> int:
        return (len(self.data) - 1) // (_WIDE if self.wide else _NARROW).size

    def first_and_last(self) -> tuple[int, int]:
        layout = _WIDE if self.wide else _NARROW
        last = len(self.data) - layout.size
        return layout.unpack_from(self.data, 1)[0], layout.unpack_from(self.data, last)[0]

    def blob(self) -> bytearray:
        return self.data


def pack_inodes(rows: Iterable[InodeRow]) -> bytes:
    """The blob of a batch of inodes in ascending order."""
    batch = InodeRows()
    for row in rows:
        batch.append(*row)
    return bytes(batch.blob())


def _stored_rows(blob: bytes) -> tuple[bytes, struct.Struct, list[tuple]]:
    """A batch's layout tag, its layout and its rows as stored, in ascending inode order."""
    tag = bytes(blob[:1])
    layout = _LAYOUTS[tag]
    rows = list(layout.iter_unpack(memoryview(blob)[1:]))
    if any(a[0] >= b[0] for a, b in pairwise(rows)):  # a writer's bug must not hide inodes
        rows = sorted({row[0]: row for row in rows}.values())
    return tag, layout, rows


def unpack_inodes(blob: bytes) -> list[InodeRow]:
    """The inodes of a batch, in ascending order; what an older layout lacks is None."""
    tag, _, rows = _stored_rows(blob)
    if tag in _OLD_LAYOUTS:
        return [(*row, *_UNKNOWN) for row in rows]
    return [row if row[6] else (*row[:6], None, *row[7:]) for row in rows]


class _Inodes:
    """The non-directory inodes of one dump, a batch read when a lookup needs it.

    Only the last batch read is kept: lookups come in inode order, so memory
    holds one batch however big the dump.
    """

    def __init__(self, conn: sqlite3.Connection, dump_id: int) -> None:
        self.conn = conn
        self.dump_id = dump_id
        rows = conn.execute(
            "SELECT first_ino, last_ino FROM catalog_inodes WHERE dump_id = ? ORDER BY first_ino", (dump_id,)
        ).fetchall()
        self.firsts = [r[0] for r in rows]
        self.lasts = [r[1] for r in rows]
        self._index = -1
        self._inos: list[int] = []
        self._rows: list[InodeRow] = []

    def _batch(self, index: int) -> tuple[list[int], list[InodeRow]]:
        if index != self._index:
            (blob,) = self.conn.execute(
                "SELECT inodes FROM catalog_inodes WHERE dump_id = ? AND first_ino = ?",
                (self.dump_id, self.firsts[index]),
            ).fetchone()
            self._rows = unpack_inodes(blob)
            self._inos = [row[0] for row in self._rows]
            self._index = index
        return self._inos, self._rows

    def get(self, ino: int) -> InodeRow | None:
        """The row (InodeRow) of ``ino``, or None: not on this dump."""
        index = bisect_right(self.firsts, ino) - 1
        if index < 0 or ino > self.lasts[index]:
            return None
        inos, rows = self._batch(index)
        at = bisect_left(inos, ino)
        return rows[at] if at < len(inos) and inos[at] == ino else None


_DIRECTORY_COLUMNS = "path, ino, mode, size, mtime_ns, tapea, blocks, entries, birth_ns, flags, uid, gid"


def _directory_entry(row) -> CatalogEntry:
    return CatalogEntry(bytes(row[0]), *row[1:7], *row[8:12])


def _join(base: bytes, name: bytes) -> bytes:
    return base + b"/" + name if base else name


def _directory_entries(row) -> list[DirEntry]:
    """The entries of a directory row (its blocks, with the zeros at their end put back)."""
    blob = row[7]
    entries, _ = parse_directory(blob + bytes(-len(blob) % DIRBLKSIZ))
    return entries


def _names(row) -> Iterator[tuple[bytes, int]]:
    """(path, ino) of every name in a directory row but '.' and '..'."""
    base = bytes(row[0])
    entries = _directory_entries(row)
    for entry in entries:
        if entry.name != b"." and entry.name != b"..":
            yield _join(base, entry.name), entry.ino


def _under(path: bytes) -> tuple[bytes, bytes]:
    """The BLOB range of every path below ``path`` ('/' is 0x2f, so '0' bounds it)."""
    return path + b"/", path + b"0"


class PathPattern:
    """A shell pattern as ``chain find`` means it, matching raw path bytes.

    A pattern with no '/' is matched against the last component (as
    ``find -name``); one with '/' against the whole path from the dump's root,
    where '*' also crosses '/'. Matching is case-sensitive.
    """

    def __init__(self, pattern: str) -> None:
        raw = pattern.encode("utf-8", "surrogateescape").strip(b"/")
        self.whole_path = b"/" in raw
        self.regex = re.compile(fnmatch.translate(raw.decode("latin-1")).encode("latin-1"), re.DOTALL)

    def __call__(self, path: bytes) -> bool:
        return bool(self.regex.match(path if self.whole_path else path.rsplit(b"/", 1)[-1]))


def drop_rows(conn: sqlite3.Connection, dump_id: int) -> None:
    """Delete a dump's file history inside the caller's transaction."""
    conn.execute("DELETE FROM catalog_dirs WHERE dump_id = ?", (dump_id,))
    conn.execute("DELETE FROM catalog_inodes WHERE dump_id = ?", (dump_id,))


class FileCatalog:
    """Reading and writing the file history of the dumps in one state database."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    # -- writing -----------------------------------------------------------------------

    def add(self, dump_id: int, directories: Iterable[DirectoryRow], inodes: InodeRows | None = None) -> None:
        """One batch: directories as they were written, the other inodes as the dump packed them."""
        with self.db.transaction() as conn:
            # The zeros that pad a directory's last block go: two rows of a common size then fit a page.
            conn.executemany(
                f"INSERT OR REPLACE INTO catalog_dirs (dump_id, {_DIRECTORY_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((dump_id, *row[:7], row[7].rstrip(b"\0"), *row[8:12]) for row in directories),
            )
            if inodes:
                conn.execute(
                    "INSERT OR REPLACE INTO catalog_inodes (dump_id, first_ino, last_ino, inodes) "
                    "VALUES (?, ?, ?, ?)",
                    (dump_id, *inodes.first_and_last(), inodes.blob()),
                )

    def forget_inodes_from(self, dump_id: int, ino: int) -> None:
        """Drop the places of inodes ``ino`` and above: a restart writes them again, elsewhere."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM catalog_inodes WHERE dump_id = ? AND first_ino >= ?", (dump_id, ino))
            row = conn.execute(
                "SELECT first_ino, inodes FROM catalog_inodes WHERE dump_id = ? AND last_ino >= ?",
                (dump_id, ino),
            ).fetchone()
            if row is None:
                return
            tag, layout, rows = _stored_rows(row[1])  # kept in its own layout: an old one stays old
            kept = [inode for inode in rows if inode[0] < ino]
            conn.execute(
                "UPDATE catalog_inodes SET last_ino = ?, inodes = ? WHERE dump_id = ? AND first_ino = ?",
                (kept[-1][0], tag + b"".join(layout.pack(*inode) for inode in kept), dump_id, row[0]),
            )

    def drop(self, dump_id: int) -> None:
        with self.db.transaction() as conn:
            drop_rows(conn, dump_id)

    # -- reading -----------------------------------------------------------------------

    def _directories(self, dump_id: int, where: str = "", params: tuple = ()) -> list:
        return self.db.conn.execute(
            f"SELECT {_DIRECTORY_COLUMNS} FROM catalog_dirs WHERE dump_id = ? {where} ORDER BY path",
            (dump_id, *params),
        ).fetchall()

    def _resolve(self, dump_id: int, names: Iterable[tuple[bytes, int]], found: dict[bytes, CatalogEntry]):
        """Add to ``found`` each (path, ino) of a non-directory whose inode is on the dump."""
        inodes = _Inodes(self.db.conn, dump_id)
        for path, ino in sorted(names, key=lambda name: name[1]):
            inode = inodes.get(ino)
            if inode is not None:
                found[path] = CatalogEntry(path, *inode)

    def _entries(self, dump_id: int, directories: list) -> dict[bytes, CatalogEntry]:
        """The entries of these directory rows: themselves, and every name in them on the dump."""
        found = {bytes(row[0]): _directory_entry(row) for row in directories}
        directory_inos = {row[1] for row in directories}
        names = [name for row in directories for name in _names(row) if name[1] not in directory_inos]
        self._resolve(dump_id, names, found)
        return found

    def entries(self, dump_id: int) -> Iterator[CatalogEntry]:
        """Every entry of a dump, in media order (c_tapea, then path).

        The directories come first, as pass III wrote them; the other inodes
        follow in inode order, which is pass IV's. Only the names are held in
        memory, and one batch of inodes, however big the dump.
        """
        directories = self._directories(dump_id)
        yield from sorted((_directory_entry(row) for row in directories), key=lambda e: (e.tapea, e.path))
        directory_inos = {row[1] for row in directories}
        names = [(ino, path) for row in directories for path, ino in _names(row) if ino not in directory_inos]
        names.sort()
        inodes = _Inodes(self.db.conn, dump_id)
        for ino, path in names:
            inode = inodes.get(ino)
            if inode is not None:
                yield CatalogEntry(path, *inode)

    def inode_sizes(self, dump_id: int) -> Iterator[tuple[int, int, int, int]]:
        """(ino, mode, size, blocks) of every inode of a dump, each once, without building a path.

        What a whole restore writes, for its check for room: entries() would
        parse every directory and join every name only to be summed.
        """
        conn = self.db.conn
        yield from conn.execute(
            "SELECT ino, mode, size, blocks FROM catalog_dirs WHERE dump_id = ?", (dump_id,)
        )
        for (blob,) in conn.execute(
            "SELECT inodes FROM catalog_inodes WHERE dump_id = ? ORDER BY first_ino", (dump_id,)
        ):
            for row in unpack_inodes(blob):
                yield row[0], row[1], row[2], row[5]

    def select(self, dump_id: int, paths: Iterable[bytes]) -> list[CatalogEntry]:
        """The entries at ``paths``, everything below them, and the directories above them."""
        wanted: dict[bytes, CatalogEntry] = {}
        names: list[tuple[bytes, int]] = []
        for path in paths:
            parts = path.split(b"/") if path else []
            above = [b"/".join(parts[:i]) for i in range(len(parts))]
            marks = ",".join("?" * (len(above) + 1))
            rows = self._directories(dump_id, f"AND path IN ({marks})", (*above, path))
            for row in rows:
                wanted[bytes(row[0])] = _directory_entry(row)
            itself = [row for row in rows if bytes(row[0]) == path]
            if itself:  # a directory: it and everything below it
                if path:
                    below = itself + self._directories(dump_id, "AND path >= ? AND path < ?", _under(path))
                else:
                    below = self._directories(dump_id)
                wanted.update(self._entries(dump_id, below))
                continue
            parent = b"/".join(parts[:-1])
            for row in rows:
                if bytes(row[0]) == parent:
                    names += [(p, ino) for p, ino in _names(row) if p == path]
        # A directory's inode is never among the others: a name of one not on the dump finds nothing.
        self._resolve(dump_id, [(p, ino) for p, ino in names if p not in wanted], wanted)
        return sorted(wanted.values(), key=lambda e: (e.tapea, e.path))

    def find(self, dump_ids: list[int], pattern: str) -> Iterator[tuple[int, CatalogEntry]]:
        """(dump id, entry) of every entry matching ``pattern`` in those dumps, in dump then path order."""
        matches = PathPattern(pattern)
        match_name = None if matches.whole_path else matches.regex.match
        for dump_id in dump_ids:
            directories = self._directories(dump_id)
            directory_inos = {row[1] for row in directories}
            found = {bytes(row[0]): _directory_entry(row) for row in directories if matches(bytes(row[0]))}
            candidates = []
            for row in directories:
                base = bytes(row[0])
                for entry in _directory_entries(row):
                    name, ino = entry.name, entry.ino
                    if ino in directory_inos or name == b"." or name == b"..":
                        continue
                    if match_name is not None:
                        if match_name(name):
                            candidates.append((_join(base, name), ino))
                    else:
                        path = _join(base, name)
                        if matches(path):
                            candidates.append((path, ino))
            self._resolve(dump_id, candidates, found)
            for path in sorted(found):
                yield dump_id, found[path]

    def count(self, dump_id: int) -> int:
        return sum(1 for _ in self.entries(dump_id))
