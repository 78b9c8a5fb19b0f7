"""BSD ``struct direct`` directory blocks, as Linux dump writes directories.

An entry is d_ino (u32), d_reclen (u16), d_type (u8), d_namlen (u8) and the
name, NUL-terminated and padded to 4 bytes. Entries never cross a 512-byte
boundary (DIRBLKSIZ): the last entry of each chunk is stretched to its end.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from ndmptools.format.constants import DIRBLKSIZ

_ENTRY_HEAD = struct.Struct("<IHBB")
MAX_NAME_LENGTH = 255  # d_namlen is one byte


class DirEntry(NamedTuple):
    ino: int
    dtype: int
    name: bytes


def entry_size(name_length: int) -> int:
    """DIRSIZ: the bytes an entry needs for a name of this length."""
    return 8 + ((name_length + 1 + 3) & ~3)


def pack_directory(entries: Iterable[tuple[int, int, bytes]]) -> bytes:
    """Directory data for ``(ino, dtype, name)`` entries, in DIRBLKSIZ chunks.

    Built as a list of pieces joined once (every directory of a dump is packed
    in pass I): an entry is its head, its name and the NULs after it; the last
    entry of a chunk gets its head packed again, stretched over the chunk's tail.
    """
    parts: list[bytes] = []
    pack = _ENTRY_HEAD.pack
    used = 0  # bytes of the current chunk
    last = -1  # where in ``parts`` the previous entry's head is
    last_ino = last_size = last_dtype = last_length = 0
    for ino, dtype, name in entries:
        length = len(name)
        size = 8 + ((length + 4) & ~3)
        if used + size > DIRBLKSIZ and last >= 0:
            room = DIRBLKSIZ - used
            parts[last] = pack(last_ino, last_size + room, last_dtype, last_length)
            parts.append(bytes(room))
            used = 0
        last = len(parts)
        last_ino, last_size, last_dtype, last_length = ino, size, dtype, length
        parts.append(pack(ino, size, dtype, length))
        parts.append(name)
        parts.append(_NULS[: size - 8 - length])
        used += size
    tail = -used % DIRBLKSIZ
    if tail and last >= 0:
        parts[last] = pack(last_ino, last_size + tail, last_dtype, last_length)
        parts.append(bytes(tail))
    return b"".join(parts)


_NULS = bytes(4)


class DirectoryProblem(NamedTuple):
    offset: int
    reason: str


def parse_directory(data: bytes | memoryview) -> tuple[list[DirEntry], list[DirectoryProblem]]:
    """All entries of directory data, and what was wrong with the entries skipped.

    A mangled entry makes the rest of its 512-byte chunk unreadable (as in
    Linux restore); the next chunk is read again. Nothing here can loop forever.
    """
    entries: list[DirEntry] = []
    problems: list[DirectoryProblem] = []
    size = len(data)
    loc = 0
    unpack_head = _ENTRY_HEAD.unpack_from
    # DirEntry(...) would run NamedTuple's Python-level __new__ for every entry of every directory.
    make = tuple.__new__
    while loc + 8 <= size:
        ino, reclen, dtype, namlen = unpack_head(data, loc)
        room = DIRBLKSIZ - (loc % DIRBLKSIZ)
        # 8 + ((namlen + 4) & ~3) is entry_size(namlen), inlined
        if reclen & 3 or reclen > room or reclen < 8 + ((namlen + 4) & ~3) or loc + reclen > size:
            problems.append(DirectoryProblem(loc, "mangled directory entry"))
            loc += room
            continue
        if ino:
            start = loc + 8
            entries.append(make(DirEntry, (ino, dtype, bytes(data[start : start + namlen]))))
        loc += reclen
    return entries, problems
