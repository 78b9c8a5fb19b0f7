"""The record stream: 1 KiB blocks grouped into records of N blocks.

The writer fills one record buffer and hands it to the medium in one write.
The reader serves blocks back and counts byte offsets for error messages.
"""

from __future__ import annotations

import os

from ndmptools.errors import FormatError
from ndmptools.format.constants import TP_BSIZE
from ndmptools.media.base import Medium

_ZERO_RECORD_CACHE: dict[int, bytes] = {}


class RecordWriter:
    """Collects blocks into records of ``blocking_factor`` KiB, one write per record."""

    def __init__(self, medium: Medium, blocking_factor: int) -> None:
        self.medium = medium
        self.record_size = blocking_factor * TP_BSIZE
        self._buf = bytearray(self.record_size)
        self._view = memoryview(self._buf)
        self._fill = 0
        self.blocks_written = 0  # c_tapea of the next block
        self.records_written = 0

    @property
    def bytes_written(self) -> int:
        return self.blocks_written * TP_BSIZE

    @property
    def room_in_record(self) -> int:
        """Blocks left in the current record before it goes to the medium."""
        return (self.record_size - self._fill) // TP_BSIZE

    def write_blocks(self, data: bytes | bytearray | memoryview) -> None:
        """Append whole blocks; ``len(data)`` must be a multiple of TP_BSIZE."""
        view = memoryview(data)
        length = len(view)
        if length % TP_BSIZE:
            raise ValueError("data must be whole tape blocks")
        pos = 0
        while pos < length:
            take = min(self.record_size - self._fill, length - pos)
            self._view[self._fill : self._fill + take] = view[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == self.record_size:
                self._flush()
        self.blocks_written += length // TP_BSIZE

    def write_file_data(self, fd: int, offset: int, length: int) -> int:
        """Copy ``length`` bytes of ``fd`` from ``offset`` straight into records.

        The copy is padded with zeros to whole blocks. Returns how many bytes
        the file really had: fewer means it shrank while being read, and the
        missing part went to media as zeros.
        """
        padded = -(-length // TP_BSIZE) * TP_BSIZE
        got_total = 0
        remaining = padded
        file_left = length
        while remaining:
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
            self._fill += take
            remaining -= take
            if self._fill == self.record_size:
                self._flush()
        self.blocks_written += padded // TP_BSIZE
        return got_total

    def finish(self, make_end_block) -> None:
        """Fill the last record with end blocks (at least one); ``make_end_block(tapea)``."""
        while True:
            self.write_blocks(make_end_block(self.blocks_written))
            if self._fill == 0:
                break

    def _flush(self) -> None:
        self.medium.write_record(self._view)
        self._fill = 0
        self.records_written += 1


def _zeros(n: int) -> bytes:
    z = _ZERO_RECORD_CACHE.get(n)
    if z is None:
        z = bytes(n)
        if len(_ZERO_RECORD_CACHE) < 64:
            _ZERO_RECORD_CACHE[n] = z
    return z


class BlockReader:
    """Blocks from a medium, with the byte offset of each for error messages."""

    STREAM_READ_SIZE = 1 << 20
    TAPE_READ_SIZE = 256 * TP_BSIZE + TP_BSIZE  # one more block tells a too-large record

    def __init__(self, medium: Medium) -> None:
        self.medium = medium
        self._chunk = memoryview(b"")
        self._pos = 0
        self._chunk_start = 0  # media offset of self._chunk[0]
        self.at_end = False
        self.record_sizes: set[int] = set()
        self._truncated_at: int | None = None  # where a stream ended mid-block

    @property
    def offset(self) -> int:
        """Byte offset of the next block on the medium."""
        return self._chunk_start + self._pos

    def _refill(self) -> bool:
        if self.at_end:
            return False
        self._chunk_start += len(self._chunk)
        size = self.TAPE_READ_SIZE if self.medium.keeps_records else self.STREAM_READ_SIZE
        data = self.medium.read_record(size)
        if not data:
            self.at_end = True
            self._chunk = memoryview(b"")
            self._pos = 0
            return False
        if self.medium.keeps_records:
            self.record_sizes.add(len(data))
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

    def _next_chunk(self) -> bool:
        if self._truncated_at is not None:
            raise FormatError("media ends in the middle of a block (truncated?)", self._truncated_at)
        return self._refill()
