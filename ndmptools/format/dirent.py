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
    """Directory data for ``(ino, dtype, name)`` entries, in DIRBLKSIZ chunks."""
    out = bytearray()
    prev = -1  # offset of the previous entry, to stretch it over a chunk's tail
    pack_head = _ENTRY_HEAD.pack_into
    for ino, dtype, name in entries:
        size = entry_size(len(name))
        room = DIRBLKSIZ - len(out) % DIRBLKSIZ
        if size > room and prev >= 0:
            _stretch(out, prev, room)
            out.extend(bytes(room))
        prev = len(out)
        out.extend(bytes(size))
        pack_head(out, prev, ino, size, dtype, len(name))
        out[prev + 8 : prev + 8 + len(name)] = name
    tail = -len(out) % DIRBLKSIZ
    if tail and prev >= 0:
        _stretch(out, prev, tail)
        out.extend(bytes(tail))
    return bytes(out)


def _stretch(buf: bytearray, offset: int, extra: int) -> None:
    reclen = int.from_bytes(buf[offset + 4 : offset + 6], "little")
    buf[offset + 4 : offset + 6] = (reclen + extra).to_bytes(2, "little")


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
    while loc + 8 <= size:
        ino, reclen, dtype, namlen = unpack_head(data, loc)
        room = DIRBLKSIZ - (loc % DIRBLKSIZ)
        if reclen & 3 or reclen > room or reclen < entry_size(namlen) or loc + reclen > size:
            problems.append(DirectoryProblem(loc, "mangled directory entry"))
            loc += room
            continue
        if ino:
            name = bytes(data[loc + 8 : loc + 8 + namlen])
            entries.append(DirEntry(ino, dtype, name))
        loc += reclen
    return entries, problems
