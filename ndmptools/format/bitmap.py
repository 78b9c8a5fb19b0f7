"""Inode maps (TS_CLRI and TS_BITS): bit N-1 of the map stands for inode N."""

from __future__ import annotations

from ndmptools.format.constants import TP_BSIZE


class InodeMap:
    """A growable set of inode numbers kept as the on-media bitmap."""

    __slots__ = ("_bits",)

    def __init__(self, data: bytes | bytearray = b"") -> None:
        self._bits = bytearray(data)

    def add(self, ino: int) -> None:
        index = (ino - 1) >> 3
        if index >= len(self._bits):
            self._bits.extend(bytes(index + 1 - len(self._bits)))
        self._bits[index] |= 1 << ((ino - 1) & 7)

    def add_range(self, first: int, last: int) -> None:
        """Add every inode from ``first`` to ``last`` inclusive."""
        for ino in range(first, min(last, ((first + 7) & ~7)) + 1):
            self.add(ino)
        lo = (first + 7) & ~7  # first inode of a whole byte: inode 8k+1
        whole_first_byte = lo >> 3
        whole_end_byte = last >> 3  # bytes before this one are entirely <= last
        if whole_end_byte > whole_first_byte:
            if whole_end_byte > len(self._bits):
                self._bits.extend(bytes(whole_end_byte - len(self._bits)))
            self._bits[whole_first_byte:whole_end_byte] = b"\xff" * (whole_end_byte - whole_first_byte)
        for ino in range(max(first, whole_end_byte * 8 + 1), last + 1):
            self.add(ino)

    def __contains__(self, ino: int) -> bool:
        index = (ino - 1) >> 3
        return 0 <= index < len(self._bits) and bool(self._bits[index] >> ((ino - 1) & 7) & 1)

    def __iter__(self):
        bits = self._bits
        for index, byte in enumerate(bits):
            if byte:
                for bit in range(8):
                    if byte >> bit & 1:
                        yield index * 8 + bit + 1

    def __len__(self) -> int:
        return sum(bin(b).count("1") for b in self._bits)

    def to_media(self, maxino: int) -> bytes:
        """The map padded to whole tape blocks, sized for inodes below ``maxino``.

        Linux dump sizes maps as roundup(howmany(maxino, 8), TP_BSIZE); restore
        derives its own maxino as c_count * TP_BSIZE * 8 + 1.
        """
        mapsize = -(-maxino // 8)
        mapsize = -(-mapsize // TP_BSIZE) * TP_BSIZE
        data = bytes(self._bits[:mapsize])
        return data + bytes(mapsize - len(data))
