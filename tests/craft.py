"""Hand-made dumps for what a real dump program never writes: unsafe names, lies, damage."""

from __future__ import annotations

import copy
import io
import stat

from ndmptools.format.bitmap import InodeMap
from ndmptools.format.constants import (
    DR_EXTATTRIBUTES,
    DT_DIR,
    DT_LNK,
    DT_REG,
    EXT_XATTR,
    ROOTINO,
    TP_BSIZE,
    RecordType,
)
from ndmptools.format.dirent import pack_directory
from ndmptools.format.header import HeaderPacker, InodeInfo
from ndmptools.format.records import RecordWriter
from ndmptools.format.xattr import plan_areas
from ndmptools.media.base import MediumBase

T = 1_700_000_000_000_000_000


class _Sink(MediumBase):
    name = "memory"

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write_record(self, record) -> None:
        self.buffer.write(record)


def directory(ino: int, parent: int, *entries: tuple[int, int, bytes]) -> tuple[int, InodeInfo, bytes]:
    data = pack_directory([(ino, DT_DIR, b"."), (parent, DT_DIR, b".."), *entries])
    return ino, InodeInfo(mode=stat.S_IFDIR | 0o755, nlink=2, size=len(data), mtime_ns=T, atime_ns=T), data


def regular(ino: int, data: bytes, mode: int = 0o644) -> tuple[int, InodeInfo, bytes]:
    return ino, InodeInfo(mode=stat.S_IFREG | mode, nlink=1, size=len(data), mtime_ns=T, atime_ns=T), data


def symlink(ino: int, target: bytes) -> tuple[int, InodeInfo, bytes]:
    return ino, InodeInfo(mode=stat.S_IFLNK | 0o777, nlink=1, size=len(target), mtime_ns=T), target


def craft(
    inodes: list[tuple[int, InodeInfo, bytes]],
    blocking_factor: int = 10,
    attributes: dict[int, list[tuple[bytes, bytes]]] | None = None,
) -> bytes:
    """A dump of exactly these inodes, directories first, as Linux dump would order them.

    ``attributes`` gives inodes extended attributes (areas as the dump plans them), which a
    file system here may not hold (an NFSv4 ACL).
    """
    maxino = max(ino for ino, _, _ in inodes) + 1
    packer = HeaderPacker(
        date=1_700_000_000,
        ddate=0,
        level=0,
        label=b"crafted",
        filesys=b"/crafted",
        dev=b"/dev/null",
        host=b"test",
        ntrec=blocking_factor,
    )
    sink = _Sink()
    w = RecordWriter(sink, blocking_factor)
    w.write_blocks(packer.volume_header(0))
    used = InodeMap()
    used.add_range(ROOTINO, maxino - 1)
    for kind, ino in ((RecordType.CLRI, maxino - 1), (RecordType.BITS, ROOTINO)):
        data = used.to_media(maxino)
        w.write_blocks(packer.map_header(kind, ino, len(data), w.blocks_written))
        w.write_blocks(data)
    ordered = sorted(inodes, key=lambda i: (not stat.S_ISDIR(i[1].mode), i[0]))
    for ino, info, data in ordered:
        padded = data + bytes(-len(data) % TP_BSIZE)
        w.write_blocks(
            packer.inode_header(
                RecordType.INODE, ino, info, b"\x01" * (len(padded) // TP_BSIZE), w.blocks_written
            )
        )
        w.write_blocks(padded)
        for area in plan_areas((attributes or {}).get(ino, [])).areas:
            area_info = copy.copy(info)
            area_info.size = len(area)
            present = b"\x01" * (len(area) // TP_BSIZE)
            w.write_blocks(
                packer.inode_header(
                    RecordType.INODE,
                    ino,
                    area_info,
                    present,
                    w.blocks_written,
                    flags=DR_EXTATTRIBUTES,
                    extattributes=EXT_XATTR,
                )
            )
            w.write_blocks(area)
    w.finish(lambda tapea: packer.end_header(tapea, maxino - 1))
    return sink.buffer.getvalue()


__all__ = ["DT_DIR", "DT_LNK", "DT_REG", "craft", "directory", "regular", "symlink"]
