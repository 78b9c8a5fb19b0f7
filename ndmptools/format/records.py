"""The record stream: 1 KiB blocks grouped into records of N blocks.

The writer fills one record buffer and hands it to the medium in one write.
The reader serves blocks back and counts byte offsets for error messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ndmptools.errors import FormatError, MediaError
from ndmptools.format.constants import TP_BSIZE
from ndmptools.format.header import InodeInfo
from ndmptools.media.base import EndOfMedium, Medium, NotSupported

_ZERO_RECORD_CACHE: dict[int, bytes] = {}


@dataclass(frozen=True)
class SplitPoint:
    """Where a dump crosses to its next volume: what that volume's TS_TAPE header says."""

    volume: int
    tapea: int  # the header's own block number, also its c_firstrec
    inumber: int  # the inode whose blocks continue at the start of the volume
    inode: InodeInfo | None
    continued_blocks: int  # c_count: that inode's data blocks before the next header


@dataclass(frozen=True)
class Resume:
    """Where a restart picks up: the stream is rebuilt from ``start_tapea`` and written from ``blocks``."""

    start_tapea: int  # c_tapea of the header the rebuild starts with
    blocks: int  # the blocks already on media: the restart's volume header takes this number
    volume: int  # the last volume with blocks on media; the restart writes the next
    phantoms: tuple[int, ...] = ()  # c_tapea of volume headers the interrupted run wrote


class RecordWriter:
    """Collects blocks into records of ``blocking_factor`` KiB, one write per record.

    At the end of a tape (the medium's early warning after a record, or a
    record refused with EndOfMedium) it writes a filemark, asks the medium for
    the next volume and starts it with the TS_TAPE header ``volume_header``
    makes; a refused record is written again after that header. To say which
    inode a volume starts in the middle of, the writer is told of every header
    (``write_header``) and counts the data blocks that follow it.

    A restart (``resume``) rebuilds the stream from an earlier inode and
    counts, without writing, every block the interrupted run put on media
    up to its checkpoint; the first block it has to write starts a volume.
    """

    def __init__(
        self,
        medium: Medium,
        blocking_factor: int,
        *,
        volume_header: Callable[[SplitPoint], bytes] | None = None,
        description: str = "the dump",
        resume: Resume | None = None,
    ) -> None:
        self.medium = medium
        self.record_size = blocking_factor * TP_BSIZE
        self._buf = bytearray(self.record_size)
        self._view = memoryview(self._buf)
        self._fill = 0
        self.blocks_written = 0  # c_tapea of the next block
        self.records_written = 0
        self.volume = 1
        self.locations = [medium.location()]  # where each volume starts
        self.volume_header = volume_header
        self.description = description
        # The inode whose data is being written, and how many of its data blocks are still to come;
        # the same at the start of the record in the buffer, for a record the medium refuses.
        self._state: tuple[int, InodeInfo | None, int] = (0, None, 0)
        self._record_start_state = self._state
        self.on_record: Callable[[], None] | None = None  # after each record the medium took
        self.on_volume: Callable[[], None] | None = None  # when a volume begins, before its header
        self.volume_starts: list[int] = []  # c_tapea of each continuation volume's TS_TAPE
        self._marks: list[tuple[int, dict]] = [(0, {"kind": "start"})]
        self._skip_to = 0
        self._phantoms: list[int] = []
        if resume is not None:
            self.blocks_written = resume.start_tapea
            self.volume = resume.volume
            self.volume_starts = list(resume.phantoms)
            self._phantoms = sorted(p for p in resume.phantoms if p >= resume.start_tapea)
            self._skip_to = resume.blocks
            self._marks = []
            self.locations = []
            self._skip_phantoms()
            if self.blocks_written >= self._skip_to:
                self._begin_restart_volume()

    @property
    def durable_blocks(self) -> int:
        """Blocks the medium has been handed, in whole records."""
        return self.blocks_written - self._fill // TP_BSIZE

    def mark(self, resume: dict) -> None:
        """Where a restart can rebuild the stream from: the header about to be written."""
        self._marks.append((self.blocks_written, resume))

    def resume_point(self) -> tuple[int, dict]:
        """(c_tapea, what) of the last mark at or before the durable end of the stream."""
        end = self.durable_blocks
        for tapea, what in reversed(self._marks):
            if tapea <= end:
                return tapea, what
        return 0, {"kind": "start"}

    @property
    def bytes_written(self) -> int:
        return self.blocks_written * TP_BSIZE

    def write_header(self, block: bytes, inumber: int, inode: InodeInfo | None, data_blocks: int) -> None:
        """A header block, followed by ``data_blocks`` data blocks (written with the other methods)."""
        if self.blocks_written < self._skip_to:
            self._state = (inumber, inode, data_blocks)
            self._skip(1, counts_as_data=False)
            return
        if self._fill == 0:
            self._record_start_state = self._state
        self._state = (inumber, inode, data_blocks)
        self._append(memoryview(block), counts_as_data=False)

    def write_blocks(self, data: bytes | bytearray | memoryview) -> None:
        """Append whole data blocks; ``len(data)`` must be a multiple of TP_BSIZE."""
        view = memoryview(data)
        if len(view) % TP_BSIZE:
            raise ValueError("data must be whole tape blocks")
        if self.blocks_written < self._skip_to:
            skipped = self._skip(len(view) // TP_BSIZE, counts_as_data=True)
            view = view[skipped * TP_BSIZE :]
        self._append(view, counts_as_data=True)

    def _append(self, view: memoryview, counts_as_data: bool) -> None:
        pos = 0
        length = len(view)
        while pos < length:
            if self._fill == 0 and counts_as_data:
                self._record_start_state = self._state
            take = min(self.record_size - self._fill, length - pos)
            self._view[self._fill : self._fill + take] = view[pos : pos + take]
            self._advance(take, counts_as_data)
            pos += take

    def _advance(self, nbytes: int, counts_as_data: bool) -> None:
        self._fill += nbytes
        self.blocks_written += nbytes // TP_BSIZE
        if counts_as_data:
            inumber, inode, left = self._state
            self._state = (inumber, inode, max(0, left - nbytes // TP_BSIZE))
        if self._fill == self.record_size:
            self._flush()

    def _skip(self, blocks: int, counts_as_data: bool) -> int:
        """Count up to ``blocks`` blocks the interrupted run wrote already; returns how many."""
        done = 0
        while done < blocks and self.blocks_written < self._skip_to:
            self._skip_phantoms()
            step = min(blocks - done, self._skip_to - self.blocks_written)
            if self._phantoms:
                step = min(step, self._phantoms[0] - self.blocks_written)
            self.blocks_written += step
            done += step
            self._skip_phantoms()
        if counts_as_data:
            inumber, inode, left = self._state
            self._state = (inumber, inode, max(0, left - done))
        if self.blocks_written >= self._skip_to:
            self._begin_restart_volume()
        return done

    def _skip_phantoms(self) -> None:
        """A volume header the interrupted run wrote here took a block number of its own."""
        while self._phantoms and self._phantoms[0] == self.blocks_written:
            self.blocks_written += 1
            self._phantoms.pop(0)

    def _begin_restart_volume(self) -> None:
        self._skip_to = 0
        self._phantoms = []
        self.volume += 1
        self.locations.append(self.medium.location())
        if self.on_volume is not None:
            self.on_volume()
        inumber, inode, left = self._state
        split = SplitPoint(self.volume, self.blocks_written, inumber, inode, left)
        self.volume_starts.append(split.tapea)
        self._record_start_state = self._state
        self._append(memoryview(self.volume_header(split)), counts_as_data=False)

    def write_file_data(self, fd: int, offset: int, length: int) -> int:
        """Copy ``length`` bytes of ``fd`` from ``offset`` straight into records.

        The copy is padded with zeros to whole blocks. Returns how many bytes
        the file really had: fewer means it shrank while being read, and the
        missing part went to media as zeros.
        """
        padded = -(-length // TP_BSIZE) * TP_BSIZE
        got_total = 0
        if self.blocks_written < self._skip_to:  # a restart: on media already
            skipped = self._skip(padded // TP_BSIZE, counts_as_data=True) * TP_BSIZE
            padded -= skipped
            offset += skipped
            got_total = min(skipped, length)
            length -= got_total
        remaining = padded
        file_left = length
        while remaining:
            if self._fill == 0:
                self._record_start_state = self._state
            take = min(self.record_size - self._fill, remaining)
            want = min(take, file_left)
            got = 0
            while got < want:
                n = os.preadv(fd, [self._view[self._fill + got : self._fill + want]], offset + got)
                if n == 0:
                    break
                got += n
            if got < take:
                self._view[self._fill + got : self._fill + take] = _zeros(take - got)
            offset += got
            got_total += got
            file_left -= want
            if got < want:
                file_left = 0  # the file ended early: the rest is zeros
            remaining -= take
            self._advance(take, counts_as_data=True)
        return got_total

    def finish(self, make_end_block) -> None:
        """Fill the last record with end blocks (at least one); ``make_end_block(tapea)``."""
        while True:
            self.write_header(make_end_block(self.blocks_written), 0, None, 0)
            if self._fill == 0 and not self._skip_to:
                break

    def _flush(self) -> None:
        try:
            self.medium.write_record(self._view)
        except EndOfMedium:
            refused = bytes(self._view)
            self._fill = 0
            self.blocks_written -= len(refused) // TP_BSIZE
            moved = self.blocks_written  # marks from here on move one block down the new volume
            self._marks = [(t + 1 if t >= moved else t, what) for t, what in self._marks]
            self._start_next_volume(self._record_start_state)
            self._replay(refused)
            return
        self._fill = 0
        self.records_written += 1
        if len(self._marks) > 64:
            self._trim_marks()
        if self.on_record is not None:
            self.on_record()
        if self.medium.early_warning:
            self._start_next_volume(self._state)

    def _trim_marks(self) -> None:
        end = self.durable_blocks
        keep = 0
        for i, (tapea, _) in enumerate(self._marks):
            if tapea <= end:
                keep = i
        del self._marks[:keep]

    def _start_next_volume(self, state: tuple[int, InodeInfo | None, int]) -> None:
        if self.volume_header is None:
            raise MediaError(f"{self.medium.name}: end of the medium")
        self.medium.write_filemark()
        if not self.medium.next_volume(self.volume + 1, self.description):
            raise MediaError(
                f"{self.medium.name}: end of tape, and no volume {self.volume + 1} to "
                "continue on (a library needs more cartridges, a drive an operator)"
            )
        self.volume += 1
        self.locations.append(self.medium.location())
        if self.on_volume is not None:
            self.on_volume()
        inumber, inode, left = state
        split = SplitPoint(self.volume, self.blocks_written, inumber, inode, left)
        self.volume_starts.append(split.tapea)
        self._record_start_state = state
        self._append(memoryview(self.volume_header(split)), counts_as_data=False)

    def _replay(self, refused: bytes) -> None:
        """The blocks of a refused record, again, on the new volume; they were counted already."""
        saved = self._state
        view = memoryview(refused)
        pos = 0
        while pos < len(view):
            take = min(self.record_size - self._fill, len(view) - pos)
            self._view[self._fill : self._fill + take] = view[pos : pos + take]
            self._state = saved
            self._advance(take, counts_as_data=False)
            pos += take
        self._state = saved


def _zeros(n: int) -> bytes:
    z = _ZERO_RECORD_CACHE.get(n)
    if z is None:
        z = bytes(n)
        if len(_ZERO_RECORD_CACHE) < 64:
            _ZERO_RECORD_CACHE[n] = z
    return z


class BlockReader:
    """Blocks from a medium, across its volumes, with the byte offset of each for messages.

    At the end of a volume in the middle of a dump, ``on_volume_end`` (set by
    the dump reader) loads the next volume and ``on_volume_start`` checks its
    TS_TAPE header, which the blocks then continue after (minus any blocks the
    header says were repeated from the end of the previous volume).
    """

    STREAM_READ_SIZE = 1 << 20
    SEEK_READ_SIZE = 32 << 10
    TAPE_READ_SIZE = 256 * TP_BSIZE + TP_BSIZE  # one more block tells a too-large record

    def __init__(self, medium: Medium) -> None:
        self.medium = medium
        self._chunk = memoryview(b"")
        self._pos = 0
        self._chunk_start = 0  # offset of self._chunk[0] on the current volume
        self.at_end = False
        self.volume = 1
        self.first_record_size: int | None = None  # of the current volume, on a tape
        self._blocks_before_volume = 0
        self._truncated_at: int | None = None  # where a stream ended mid-block
        self.on_volume_end: Callable[[], bool] | None = None
        self.on_volume_start: Callable[[memoryview, int], int] | None = None
        self.reads = 0  # read calls on the medium: records, on a tape
        self._stream_read_size = self.SEEK_READ_SIZE  # small at first and after a seek, then growing
        self.bytes_from_medium = 0

    @property
    def offset(self) -> int:
        """Byte offset of the next block on the current volume."""
        return self._chunk_start + self._pos

    @property
    def blocks_read(self) -> int:
        """Blocks delivered so far over all volumes (Linux restore's tpblksread)."""
        return self._blocks_before_volume + self.offset // TP_BSIZE

    def _read_chunk(self) -> bytes:
        if self.medium.keeps_records:
            size = self.TAPE_READ_SIZE
        else:
            size = self._stream_read_size
            self._stream_read_size = min(2 * size, self.STREAM_READ_SIZE)
        data = self.medium.read_record(size)
        self.reads += 1
        self.bytes_from_medium += len(data)
        if data and self.medium.keeps_records and self._chunk_start == 0:
            self.first_record_size = len(data)
        return data

    def _refill(self) -> bool:
        if self.at_end:
            return False
        self._chunk_start += len(self._chunk)
        data = self._read_chunk()
        if not data:
            return self._change_volume()
        if len(data) % TP_BSIZE:
            whole = len(data) - len(data) % TP_BSIZE
            if not self.medium.keeps_records:
                # A stream ends here mid-block: keep the whole blocks, then fail on the tail.
                self._chunk = memoryview(data)[:whole]
                self._pos = 0
                self._truncated_at = self._chunk_start + whole
                if whole:
                    return True
                raise FormatError("media ends in the middle of a block (truncated?)", self._chunk_start)
            raise FormatError(f"record of {len(data)} bytes is not whole 1 KiB blocks", self._chunk_start)
        self._chunk = memoryview(data)
        self._pos = 0
        return True

    def _change_volume(self) -> bool:
        self._chunk = memoryview(b"")
        self._pos = 0
        if self.on_volume_end is None or not self.on_volume_end():
            self.at_end = True
            return False
        blocks_before = self._blocks_before_volume + self._chunk_start // TP_BSIZE
        self._blocks_before_volume = blocks_before
        self.volume += 1
        self._chunk_start = 0
        self.first_record_size = None
        data = self._read_chunk()
        if len(data) < TP_BSIZE:
            raise FormatError(f"volume {self.volume} does not start with a dump header", 0)
        self._chunk = memoryview(data)
        self._pos = TP_BSIZE
        repeated = self.on_volume_start(self._chunk[:TP_BSIZE], blocks_before) if self.on_volume_start else 0
        if repeated:
            self.skip_blocks(repeated)
        return True

    def read_block(self) -> memoryview | None:
        """The next block, or None at the clean end of the medium."""
        if self._pos >= len(self._chunk) and not self._next_chunk():
            return None
        block = self._chunk[self._pos : self._pos + TP_BSIZE]
        self._pos += TP_BSIZE
        return block

    def read_blocks(self, count: int) -> list[memoryview]:
        """Up to ``count`` blocks as contiguous pieces; fewer only at the end of the medium."""
        pieces = []
        while count > 0:
            if self._pos >= len(self._chunk) and not self._next_chunk():
                break
            take = min(count * TP_BSIZE, len(self._chunk) - self._pos)
            pieces.append(self._chunk[self._pos : self._pos + take])
            self._pos += take
            count -= take // TP_BSIZE
        return pieces

    def skip_blocks(self, count: int) -> int:
        """Skip up to ``count`` blocks; returns how many were there."""
        skipped = 0
        while count > 0:
            if self._pos >= len(self._chunk) and not self._next_chunk():
                break
            take = min(count * TP_BSIZE, len(self._chunk) - self._pos)
            self._pos += take
            count -= take // TP_BSIZE
            skipped += take // TP_BSIZE
        return skipped

    def seek(self, block: int, record_size: int) -> None:
        """Go to 1 KiB block ``block`` of the current volume: read on to it when it is near
        ahead (or the medium cannot seek), else seek to its record and skip to it there."""
        here = self.offset // TP_BSIZE
        ahead = block - here
        if ahead >= 0 and (ahead * TP_BSIZE <= len(self._chunk) - self._pos + self.medium.seek_distance):
            self.skip_blocks(ahead)
            return
        try:
            start = self.medium.seek_block(block, record_size)
        except NotSupported:
            if ahead < 0:
                raise
            self.skip_blocks(ahead)
            return
        self._chunk = memoryview(b"")
        self._pos = 0
        self._chunk_start = start * TP_BSIZE
        self._stream_read_size = self.SEEK_READ_SIZE  # a file or two may be all that is wanted here
        self.at_end = False
        self.skip_blocks(block - start)

    def go_to_volume(self, volume: int) -> None:
        """Leave the rest of this volume unread and load the next ones up to ``volume``."""
        while self.volume < volume:
            self._chunk_start += len(self._chunk)
            if not self._change_volume():
                raise FormatError(f"the dump ends before its volume {volume}", self.offset)

    def _next_chunk(self) -> bool:
        if self._truncated_at is not None:
            raise FormatError("media ends in the middle of a block (truncated?)", self._truncated_at)
        return self._refill()
