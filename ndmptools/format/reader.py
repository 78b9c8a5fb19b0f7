"""Read a dump back: the volume header, the maps, then one inode after another.

The reader is built to meet damaged media: a header that fails its checksum
makes it skip forward to the next good header of the same dump (as Linux
restore resyncs), and reports how much it skipped; the end of the data in
the middle of anything is a FormatError with the byte offset. Every step
consumes input, so no input can make it loop.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ndmptools.errors import FormatError, MediaError
from ndmptools.format.bitmap import InodeMap
from ndmptools.format.constants import (
    DR_COMPRESSED,
    DR_EXTATTRIBUTES,
    TP_BSIZE,
    TP_NINDIR,
    RecordType,
)
from ndmptools.format.header import Header, looks_like_header, unpack_header
from ndmptools.format.records import BlockReader
from ndmptools.media.base import Medium

_RUNS = re.compile(rb"\x00+|[^\x00]+")
MAX_MAP_BLOCKS = (2**32 // 8) // TP_BSIZE  # 32-bit inode numbers: at most 512 MiB of map
MAX_IN_MEMORY_DATA = 256 << 20  # directories, symlinks and attribute blocks are read whole


class DataSink(Protocol):
    """Where an inode's data goes: pieces of data and holes, by file offset."""

    def data(self, offset: int, pieces: list[memoryview]) -> None: ...

    def hole(self, offset: int, length: int) -> None: ...


class BytesSink:
    """Collects data in memory (directories, symlink targets), holes as zeros."""

    def __init__(self, limit: int) -> None:
        self.buffer = bytearray()
        self.limit = limit

    def data(self, offset: int, pieces: list[memoryview]) -> None:
        self._extend_to(offset)
        for piece in pieces:
            self.buffer += piece
        del self.buffer[self.limit :]

    def hole(self, offset: int, length: int) -> None:
        self._extend_to(min(offset + length, self.limit))

    def _extend_to(self, offset: int) -> None:
        if offset > len(self.buffer):
            self.buffer += bytes(offset - len(self.buffer))


class NullSink:
    def data(self, offset: int, pieces: list[memoryview]) -> None:
        pass

    def hole(self, offset: int, length: int) -> None:
        pass


@dataclass
class VolumeStart:
    """TS_TAPE and the two maps that open a dump."""

    header: Header
    in_use: InodeMap  # TS_CLRI: inodes that existed when the dump was taken
    dumped: InodeMap  # TS_BITS: inodes whose data is on this dump
    maxino: int


class DumpReader:
    """A dump read front to back."""

    def __init__(self, medium: Medium, warn: Callable[[str], None]) -> None:
        self.medium = medium
        self.blocks = BlockReader(medium)
        self.blocks.on_volume_end = self._load_next_volume
        self.blocks.on_volume_start = self._check_next_volume
        self.warn = warn
        self.volume: VolumeStart | None = None
        self._pending: Header | None = None
        self._pending_offset = 0
        self.ended = False
        self.last_offset = 0  # byte offset of the last header read

    # -- the start of a volume ----------------------------------------------------

    def read_volume_start(self) -> VolumeStart:
        """TS_TAPE, TS_CLRI and TS_BITS; anything else first means this is not a dump."""
        offset = self.blocks.offset
        try:
            block = self.blocks.read_block()
        except FormatError:
            raise FormatError("not a dump: the input is shorter than one header block", 0) from None
        if block is None:
            raise FormatError("not a dump: the input is empty", 0)
        try:
            tape = unpack_header(block, offset)
        except FormatError as err:
            raise FormatError(f"not a dump: {err.message}") from None
        if tape.type != RecordType.TAPE:
            raise FormatError("not a dump: the first header is not a volume header", offset)
        if tape.flags & DR_COMPRESSED:
            raise FormatError("compressed dumps (dump -z/-j/-y) are not supported", offset)
        if tape.volume != 1:
            raise FormatError(f"this is volume {tape.volume} of a dump; start with volume 1", offset)
        self._check_record_size(tape)
        in_use, maxino = self._read_map(RecordType.CLRI, "the map of inodes in use (TS_CLRI)")
        dumped, _ = self._read_map(RecordType.BITS, "the map of dumped inodes (TS_BITS)")
        self.volume = VolumeStart(tape, in_use, dumped, maxino)
        return self.volume

    def _read_map(self, map_type: int, what: str) -> tuple[InodeMap, int]:
        header = self._next_header()
        if header is None or header.type != map_type:
            raise FormatError(f"{what} is missing", self.last_offset)
        data = bytearray()
        maxino = 0
        while True:
            if not 0 <= header.count <= MAX_MAP_BLOCKS:
                raise FormatError(f"{what} has an impossible size", self.last_offset)
            maxino += header.count * TP_BSIZE * 8 + (1 if not data else 0)
            data += self._read_exact(header.count)
            nxt = self._next_header()
            if nxt is not None and nxt.type == RecordType.ADDR:
                header = nxt  # a map longer than one header (Linux restore allows it)
                continue
            self._push_back(nxt)
            return InodeMap(data), maxino

    def _check_record_size(self, tape: Header) -> None:
        """On a tape, records must be the size the volume header announces."""
        found = self.blocks.first_record_size
        if found is not None and tape.ntrec > 0 and found != tape.ntrec * TP_BSIZE:
            raise FormatError(
                f"record-size mismatch on volume {tape.volume}: its header announces records of "
                f"{tape.ntrec} KiB but the medium holds records of {found} bytes",
                0,
            )

    # -- volumes ----------------------------------------------------------------------------

    def describe(self) -> str:
        header = self.volume.header if self.volume else None
        if header is None:
            return "the dump"
        taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(header.date))
        return f"the dump of {header.filesys.decode(errors='replace')} taken {taken}"

    def _load_next_volume(self) -> bool:
        """The medium ended inside the dump: load the next volume, or say which one is missing."""
        if self.volume is None or self.ended:
            return False
        needed = self.blocks.volume + 1
        if not self.medium.next_volume(needed, self.describe()):
            raise MediaError(
                f"{self.describe()} continues on volume {needed}, and {self.medium.name} has no next "
                "volume (give it with another -f, more cartridges, or a tape)"
            )
        return True

    def _check_next_volume(self, block: memoryview, blocks_before: int) -> int:
        """The TS_TAPE of a continuation volume: same dump, right number. Returns repeated blocks."""
        needed = self.blocks.volume
        try:
            header = unpack_header(block, 0)
        except FormatError as err:
            raise FormatError(f"volume {needed} is not part of a dump: {err.message}") from None
        first = self.volume.header
        if header.type != RecordType.TAPE:
            raise FormatError(f"volume {needed} does not start with a volume header", 0)
        if (header.date, header.ddate) != (first.date, first.ddate):
            raise FormatError(f"the volume loaded belongs to another dump, not to {self.describe()}", 0)
        if header.volume != needed:
            raise FormatError(f"volume {header.volume} was loaded but volume {needed} comes next", 0)
        self._check_record_size(header)
        # Linux dump may repeat blocks of a record it was not sure had reached the last volume.
        return max(0, blocks_before - header.firstrec) if header.firstrec > 0 else 0

    # -- headers --------------------------------------------------------------------

    def _push_back(self, header: Header | None) -> None:
        self._pending = header

    def _next_header(self) -> Header | None:
        """The next good header; bad blocks are skipped (with a warning) up to one of this dump."""
        if self._pending is not None:
            header, self._pending = self._pending, None
            return header
        offset = self.blocks.offset
        block = self.blocks.read_block()
        if block is None:
            return None
        try:
            header = unpack_header(block, offset)
            self.last_offset = offset
            return header
        except FormatError:
            pass
        start = offset
        skipped = 1
        while True:
            offset = self.blocks.offset
            block = self.blocks.read_block()
            if block is None:
                self.warn(f"skipped {skipped} unreadable blocks from byte {start} to the end")
                return None
            if looks_like_header(block):
                header = unpack_header(block, offset)
                if self.volume is None or header.date == self.volume.header.date:
                    self.warn(f"skipped {skipped} unreadable blocks at byte {start}")
                    self.last_offset = offset
                    return header
            skipped += 1

    def _read_exact(self, count: int) -> bytes:
        """``count`` blocks whatever c_addr says (maps and attribute blocks)."""
        pieces = self.blocks.read_blocks(count)
        data = b"".join(pieces)
        if len(data) < count * TP_BSIZE:
            raise FormatError("the dump ends in the middle of a map or attribute block", self.blocks.offset)
        return data

    # -- inodes ---------------------------------------------------------------------

    def next_inode(self) -> Header | None:
        """The next TS_INODE header (attribute headers excluded), or None at TS_END.

        Stray TS_ADDR headers (the tail of a file whose header was lost) are
        skipped with their data, as Linux restore does.
        """
        while True:
            header = self._next_header()
            if header is None:
                raise FormatError("the dump ends without its end marker (truncated?)", self.blocks.offset)
            if header.type == RecordType.END:
                self.ended = True
                return None
            if header.type == RecordType.INODE and not header.flags & DR_EXTATTRIBUTES:
                return header
            if header.type in (RecordType.INODE, RecordType.ADDR):
                self._skip_addressed(header)
                continue
            if header.type == RecordType.TAPE:
                raise FormatError(
                    "a volume header in the middle of the dump: multi-volume dumps "
                    "must be read volume by volume",
                    self.last_offset,
                )
            self.warn(f"unexpected {_type_name(header.type)} header at byte {self.last_offset}; skipped")

    # -- direct access ---------------------------------------------------------------

    def seek(self, volume: int, block: int) -> None:
        """Go to 1 KiB block ``block`` of volume ``volume`` (never back to an earlier volume)."""
        if self.volume is None:
            raise FormatError("the volume start must be read before seeking", 0)
        if volume < self.blocks.volume:
            raise MediaError(f"cannot go back from volume {self.blocks.volume} to volume {volume}")
        self._pending = None
        self.ended = False
        self.blocks.go_to_volume(volume)
        record_size = max(1, self.volume.header.ntrec) * TP_BSIZE
        self.blocks.seek(block, record_size)

    def find_inode(self, inumber: int, tapea: int, search_blocks: int) -> Header | None:
        """The TS_INODE header of ``inumber``, expected at c_tapea ``tapea`` from here on.

        Reads block by block, quietly (a block that is no header is data, not
        damage, when the position is a guess), for at most ``search_blocks``
        blocks, and gives up at a header of this dump past ``tapea``.
        """
        date = self.volume.header.date
        for _ in range(search_blocks):
            offset = self.blocks.offset
            block = self.blocks.read_block()
            if block is None:
                return None
            if not looks_like_header(block):
                continue
            try:
                header = unpack_header(block, offset)
            except FormatError:
                continue
            if header.date != date:
                continue
            if (
                header.type == RecordType.INODE
                and header.inumber == inumber
                and not header.flags & DR_EXTATTRIBUTES
            ):
                self.last_offset = offset
                return header
            if 1 < (header.tapea - tapea) & 0xFFFFFFFF < 1 << 31:  # past it (c_tapea is 32 bits)
                return None
        return None

    def _skip_addressed(self, header: Header) -> None:
        if not 0 <= header.count <= TP_NINDIR:
            return
        if header.flags & DR_EXTATTRIBUTES:
            self.blocks.skip_blocks(header.count)
        else:
            self.blocks.skip_blocks(len(header.addr) - header.addr.count(0))

    def read_data(self, header: Header, sink: DataSink) -> bool:
        """Feed the inode's data to ``sink``, following TS_ADDR continuations.

        Returns False when the data is incomplete: a continuation header was
        lost. The end of the medium raises FormatError.
        """
        size = header.inode.size
        inumber = header.inumber
        offset = 0
        while True:
            if not 0 <= header.count <= TP_NINDIR:
                raise FormatError("impossible c_count in a header", self.last_offset)
            position = 0
            for run in _RUNS.finditer(header.addr):
                length = run.end() - run.start()
                nbytes = length * TP_BSIZE
                start = offset + position
                if header.addr[run.start()]:
                    if start >= size:
                        self._skip_present(length)
                    else:
                        pieces = self.blocks.read_blocks(length)
                        if sum(len(p) for p in pieces) < nbytes:
                            raise FormatError(
                                "the dump ends in the middle of a file's data", self.blocks.offset
                            )
                        sink.data(start, _trim(pieces, size - start))
                elif start < size:
                    sink.hole(start, min(nbytes, size - start))
                position += nbytes
            offset += header.count * TP_BSIZE
            if offset >= size:
                return True
            nxt = self._next_header()
            if nxt is not None and nxt.type == RecordType.ADDR and nxt.inumber == inumber:
                header = nxt
                continue
            self._push_back(nxt)
            return False

    def _skip_present(self, count: int) -> None:
        if self.blocks.skip_blocks(count) < count:
            raise FormatError("the dump ends in the middle of a file's data", self.blocks.offset)

    def skip_data(self, header: Header) -> bool:
        return self.read_data(header, NullSink())

    def read_small(self, header: Header) -> tuple[bytes, bool]:
        """The whole data of a directory or symlink, and whether it was complete."""
        limit = min(header.inode.size, MAX_IN_MEMORY_DATA)
        sink = BytesSink(limit)
        complete = self.read_data(header, sink)
        data = bytes(sink.buffer)
        if len(data) < limit:
            data += bytes(limit - len(data))
        return data, complete and header.inode.size <= MAX_IN_MEMORY_DATA

    def read_attributes(self, inumber: int) -> list[tuple[int, bytes]]:
        """The extended-attribute blocks that follow an inode: (c_extattributes, data) pairs."""
        found = []
        while True:
            header = self._next_header()
            if (
                header is None
                or header.type != RecordType.INODE
                or not header.flags & DR_EXTATTRIBUTES
                or header.inumber != inumber
                or not 0 <= header.count <= TP_NINDIR
            ):
                self._push_back(header)
                return found
            data = self._read_exact(header.count)  # every attribute block is on media
            found.append((header.extattributes, data[: max(0, min(header.inode.size, len(data)))]))


def _trim(pieces: list[memoryview], limit: int) -> list[memoryview]:
    """Cut the pieces so that they hold at most ``limit`` bytes."""
    total = 0
    for i, piece in enumerate(pieces):
        if total + len(piece) >= limit:
            return [*pieces[:i], piece[: limit - total]]
        total += len(piece)
    return pieces


def _type_name(record_type: int) -> str:
    try:
        return "TS_" + RecordType(record_type).name
    except ValueError:
        return f"type-{record_type}"
