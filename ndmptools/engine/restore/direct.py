"""Direct access restore (DAR): a few paths read from their places on media, not the whole dump.

The file history of the dump (state/catalog.py) says which inodes the paths
need (the directories above and below them, the files) and the c_tapea of
each one's first header. With the volume starts the history keeps, a c_tapea
is a volume and a block on it; the reader seeks to the record holding that
block and finds the header there. Everything else is the usual restore:
stage 1 builds its tree from the directories read, stages 2-4 run as always.

The places are checked, never trusted: a header must carry the inode and the
dump date expected, or that entry is reported and left out, and nothing is
read from anywhere the dump's own headers do not vouch for.
"""

from __future__ import annotations

import os
import stat
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from ndmptools.engine.progress import RunContext
from ndmptools.engine.restore.catalog import MediaDirectories, show
from ndmptools.errors import FormatError, MediaError
from ndmptools.format.constants import NAMELEN, ROOTINO
from ndmptools.format.header import Header, InodeInfo
from ndmptools.format.reader import DumpReader, VolumeStart
from ndmptools.format.xattr import ReadAttributes, decode_areas
from ndmptools.state.catalog import CatalogEntry, FileCatalog
from ndmptools.state.history import DumpRecord, History


@dataclass(frozen=True)
class Place:
    """Where a header is: the volume, its tape file, the record and block on that volume."""

    volume: int
    file_number: int
    record: int
    block: int  # 1 KiB blocks from the start of the dump on this volume


def place_of(tapea: int, record: DumpRecord) -> Place:
    """The volume and record of c_tapea ``tapea`` in a dump, from the volume starts in its history."""
    media = record.media or {}
    starts = media.get("volume_starts") or [0]
    volume = max(1, bisect_right(starts, tapea))
    block = tapea - starts[volume - 1]
    numbers = media.get("file_numbers") or [media.get("file_number", 1)]
    file_number = numbers[volume - 1] if volume <= len(numbers) else 1
    per_record = record.blocking_factor or 1
    return Place(volume, file_number, block // per_record, block)


def dumps_of_media(history: History | None, volume: VolumeStart) -> list[DumpRecord]:
    """The completed dumps in ``history`` whose volume header this can be (c_filesys is cut)."""
    if history is None:
        return []
    header = volume.header
    return [
        r
        for r in history.by_date(header.date)
        if r.level == header.level
        and os.fsencode(r.dumped_path)[: NAMELEN - 1] == header.filesys
        and os.fsencode(r.host or "")[: NAMELEN - 1] == header.host
    ]


def history_of_media(history: History | None, volume: VolumeStart) -> DumpRecord | None:
    """The completed dump with a file history whose volume header this is (None: not known here)."""
    found = [r for r in dumps_of_media(history, volume) if r.file_history]
    return found[0] if len(found) == 1 else None


def normalize(path: str) -> bytes:
    """A PATH argument as the file history keeps it: relative, no '.', no empty parts."""
    parts = path.encode("utf-8", "surrogateescape").split(b"/")
    return b"/".join(p for p in parts if p not in (b"", b"."))


class DirectAccess:
    """One direct-access restore: what the paths need, and the reading of it at its places."""

    def __init__(
        self, reader: DumpReader, record: DumpRecord, catalog: FileCatalog, paths: tuple[str, ...]
    ) -> None:
        self.reader = reader
        self.record = record
        self.entries: list[CatalogEntry] = catalog.select(record.id, [normalize(p) for p in paths])
        self.tapea = {e.ino: e.tapea for e in self.entries}
        self.search_blocks = 2 * (record.blocking_factor or 64) + 2

    def _find(self, ino: int) -> tuple[Header | None, Place]:
        tapea = self.tapea[ino]
        place = place_of(tapea, self.record)
        self.reader.seek(place.volume, place.block)
        return self.reader.find_inode(ino, tapea, self.search_blocks), place

    def read_directories(self, volume: VolumeStart, run: RunContext) -> MediaDirectories:
        """Stage 1 of a direct-access restore: only the directories the paths need, from their places."""
        contents: dict[int, bytes] = {}
        infos: dict[int, InodeInfo] = {}
        attributes: dict[int, ReadAttributes] = {}
        for entry in self.entries:
            if not stat.S_ISDIR(entry.mode):
                continue
            header, place = self._find(entry.ino)
            if header is None or not header.inode.is_dir:
                run.warn(f"directory {show(entry.path)}: {_not_there(place)}; nothing under it is restored")
                continue
            data, complete = self.reader.read_small(header)
            areas = self.reader.read_attributes(header.inumber)
            if areas:
                attributes[header.inumber] = decode_areas(areas)
            if not complete:
                run.warn(f"directory {show(entry.path)} is incomplete on media; its entries may be missing")
            contents[header.inumber] = data
            infos[header.inumber] = header.inode
        if ROOTINO not in contents:
            raise FormatError("the root directory is not where the file history places it", 0)
        return MediaDirectories(volume, contents, infos, None, attributes)

    def file_headers(self, wanted: set[int], give_up) -> Iterator[Header]:
        """The headers of the inodes in ``wanted``, in media order; ``give_up(ino, why)`` for the rest."""
        for ino in sorted(wanted, key=lambda i: self.tapea.get(i, -1)):
            if ino not in self.tapea:
                give_up(ino, "not in the file history of this dump; not restored (try --no-direct)")
                continue
            try:
                header, place = self._find(ino)
            except (MediaError, FormatError) as err:
                give_up(ino, f"cannot reach its place on media: {err.message}; not restored")
                continue
            if header is None:
                give_up(ino, f"{_not_there(place)}; not restored (try --no-direct)")
                continue
            yield header


def _not_there(place: Place) -> str:
    return (
        f"not found where the file history places it (volume {place.volume}, "
        f"record {place.record} of tape file {place.file_number})"
    )


class GivenPlaces:
    """Direct access at places a DMA gives (NDMP's fh_info), not the local file history's.

    Stage 1 reads the directories in order (they come first on media) and
    says which inode each PATH is; the files are then read at their places.
    A place is checked like any other: the header there must be the inode's.
    """

    def __init__(self, reader: DumpReader, tapea: dict[int, int], blocking_factor: int) -> None:
        self.reader = reader
        self.tapea = tapea
        self.search_blocks = 2 * (blocking_factor or 64) + 2

    def file_headers(self, wanted: set[int], give_up) -> Iterator[Header]:
        """The headers of the inodes in ``wanted``, in media order; ``give_up(ino, why)`` for the rest."""
        for ino in sorted(wanted, key=lambda i: self.tapea.get(i, -1)):
            tapea = self.tapea.get(ino)
            if tapea is None:
                give_up(ino, "no place for it was given; not restored")
                continue
            try:
                self.reader.seek(1, tapea)
                header = self.reader.find_inode(ino, tapea, self.search_blocks)
            except (MediaError, FormatError) as err:
                give_up(ino, f"cannot reach its place on media: {err.message}; not restored")
                continue
            if header is None:
                give_up(ino, f"not found at the place given for it (block {tapea}); not restored")
                continue
            yield header
