"""The seed's check before a restore writes anything: room for the data plus 100 MiB, and inodes.

What a restore needs is known after stage 1: the inodes exactly (a directory
or a non-directory inode each; more names of one inode cost none), the data's
size from the dump's file history when there is one, else from the size of
the medium for a whole dump (its data and headers: near enough, since a file
takes whole blocks on disk and holes take nothing in either place). Without
either the data's size is unknown until it is read, and only the inodes are
checked; the run says so. FORCE=Y skips the check: the restore then stops
cleanly when the target fills up (see Restorer).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from ndmptools.engine.errors import TargetError
from ndmptools.engine.progress import human_bytes

HEADROOM = 100 * 1024 * 1024  # the seed's margin on top of the data


@dataclass(frozen=True)
class Need:
    """What a restore will write: ``data_bytes`` (None: unknown) and ``inodes``."""

    data_bytes: int | None
    inodes: int
    basis: str  # how data_bytes was found, for messages

    @property
    def bytes_with_headroom(self) -> int | None:
        return None if self.data_bytes is None else self.data_bytes + HEADROOM


@dataclass(frozen=True)
class Free:
    """What the target's file system has left for this user."""

    bytes: int | None  # None: the file system sets no limit it tells (ramfs)
    inodes: int | None  # None: the file system sets no limit (btrfs reports none)
    block_size: int
    checked_at: str  # the existing directory the numbers are of


def free_at(target: str) -> Free:
    """The free space and inodes of the file system the target is (or will be) on."""
    place = os.path.abspath(target)
    while not os.path.isdir(place):
        parent = os.path.dirname(place)
        if parent == place:
            break
        place = parent
    try:
        vfs = os.statvfs(place)
    except OSError as err:
        raise TargetError(f"cannot restore into {target}: {err.strerror}") from None
    if vfs.f_flag & os.ST_RDONLY:
        raise TargetError(f"cannot restore into {target}: {place} is on a read-only file system")
    room = vfs.f_bavail * vfs.f_frsize if vfs.f_blocks else None  # ramfs counts no blocks: no limit
    inodes = vfs.f_favail if vfs.f_files else None
    return Free(room, inodes, vfs.f_bsize or 4096, place)


def on_disk(size: int, media_blocks: int | None, block_size: int) -> int:
    """Bytes a regular file takes once restored: its data blocks (no holes), in whole blocks."""
    data = size if media_blocks is None else min(size, media_blocks * 1024)
    return -(-data // block_size) * block_size


def data_from_entries(entries: Iterable, block_size: int) -> int:
    """The room the file history's entries (state.catalog.CatalogEntry) take, each inode once."""
    return data_from_inodes(((e.ino, e.mode, e.size, e.blocks) for e in entries), block_size)


def data_from_inodes(inodes: Iterable[tuple[int, int, int, int]], block_size: int) -> int:
    """The room (ino, mode, size, media blocks) inodes take, each inode once."""
    seen: set[int] = set()
    total = 0
    for ino, mode, size, blocks in inodes:
        if ino in seen:
            continue
        seen.add(ino)
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
            total += on_disk(size, blocks, block_size)
    return total


def check(target: str, need: Need, free: Free) -> None:
    """Refuse, with both sides' numbers, a restore that will not fit."""
    short = []
    wanted = need.bytes_with_headroom
    if wanted is not None and free.bytes is not None and wanted > free.bytes:
        data = human_bytes(need.data_bytes or 0)
        short.append(
            f"{human_bytes(wanted)} (the data, {data} {need.basis}, plus {human_bytes(HEADROOM)}) "
            f"and it has {human_bytes(free.bytes)} free"
        )
    if free.inodes is not None and need.inodes > free.inodes:
        short.append(f"{need.inodes:,} inodes and it has {free.inodes:,} free")
    if short:
        raise TargetError(
            f"not enough room to restore into {target}: the restore needs "
            + "; it needs ".join(short)
            + " (--force restores what fits and stops when it is full)"
        )
