"""Pack and unpack the 1 KiB header block (union u_spcl) and its checksum."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ndmptools.errors import FormatError
from ndmptools.format.constants import (
    CHECKSUM,
    DR_NEWHEADER,
    DR_NEWINODEFMT,
    DT_BLK,
    DT_CHR,
    DT_DIR,
    DT_FIFO,
    DT_LNK,
    DT_REG,
    DT_SOCK,
    DT_UNKNOWN,
    LBLSIZE,
    NAMELEN,
    NDMPTOOLS_SPARE_MAGIC,
    NFS_MAGIC,
    OFS_MAGIC,
    SPARE_BIRTH,
    SPARE_PROJECT,
    TP_BSIZE,
    TP_NINDIR,
    RecordType,
)

# Layout, offsets in bytes (shared/FORMAT.md):
#   0 c_type c_date c_ddate c_volume c_tapea c_inumber c_magic c_checksum
#  32 c_dinode: mode nlink ouid ogid size atime mtime ctime db[12] ib[3]
#               flags blocks gen uid gid spare[2]
# 160 c_count  164 c_addr[512]  676 c_label[16]  692 c_level  696 c_filesys[64]
# 760 c_dev[64]  824 c_host[64]  888 c_flags c_firstrec c_ntrec c_extattributes
# 904 c_spare[30]
_LAYOUT = struct.Struct("<iiiiIIii HhHHQ IIIIII 15I IIIII 8x i 512s 16s i 64s 64s 64s iiii 30I")
assert _LAYOUT.size == TP_BSIZE
_WORDS = struct.Struct("<256I")
CHECKSUM_OFFSET = 28


def _word_sum(block: bytes | bytearray | memoryview) -> int:
    """The sum of the block's 256 little-endian 32-bit words (not reduced mod 2**32)."""
    return sum(_WORDS.unpack(block))


_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFREG = 0o100000
_S_IFLNK = 0o120000
_S_IFCHR = 0o020000
_S_IFBLK = 0o060000
_S_IFIFO = 0o010000
_S_IFSOCK = 0o140000

_DTYPE_BY_FMT = {
    _S_IFDIR: DT_DIR,
    _S_IFREG: DT_REG,
    _S_IFLNK: DT_LNK,
    _S_IFCHR: DT_CHR,
    _S_IFBLK: DT_BLK,
    _S_IFIFO: DT_FIFO,
    _S_IFSOCK: DT_SOCK,
}


def dtype_of_mode(mode: int) -> int:
    """The directory-entry type that goes with an inode mode."""
    return _DTYPE_BY_FMT.get(mode & _S_IFMT, DT_UNKNOWN)


def encode_rdev(major: int, minor: int) -> int:
    """A device number as the kernel's 32-bit new_encode_dev, which Linux restore's mknod reads."""
    return ((minor & 0xFF) | ((major & 0xFFF) << 8) | ((minor & ~0xFF) << 12)) & 0xFFFFFFFF


def decode_rdev(word: int) -> tuple[int, int]:
    """(major, minor) from a new_encode_dev word (the old 16-bit encoding is a subset)."""
    return (word & 0xFFF00) >> 8, (word & 0xFF) | ((word >> 12) & 0xFFF00)


@dataclass(slots=True)
class InodeInfo:
    """What a header says about an inode (c_dinode), with times in nanoseconds."""

    mode: int = 0
    nlink: int = 0
    size: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    rdev_major: int = 0
    rdev_minor: int = 0
    flags: int = 0
    blocks: int = 0
    generation: int = 0
    uid: int = 0
    gid: int = 0
    birth_ns: int | None = None  # creation time, where the file system keeps one (ndmptools' c_spare)
    project_id: int | None = None  # the project (quota) id, where the file system has them (c_spare)

    @property
    def file_type(self) -> int:
        return self.mode & _S_IFMT

    @property
    def is_dir(self) -> bool:
        return self.mode & _S_IFMT == _S_IFDIR

    @property
    def is_regular(self) -> bool:
        return self.mode & _S_IFMT == _S_IFREG

    @property
    def is_symlink(self) -> bool:
        return self.mode & _S_IFMT == _S_IFLNK

    @property
    def is_device(self) -> bool:
        return self.mode & _S_IFMT in (_S_IFCHR, _S_IFBLK)


@dataclass(slots=True)
class Header:
    """One header block. ``addr`` holds the first ``count`` c_addr bytes (1 data, 0 hole)."""

    type: int
    date: int = 0
    ddate: int = 0
    volume: int = 1
    tapea: int = 0
    inumber: int = 0
    inode: InodeInfo = field(default_factory=InodeInfo)
    count: int = 0
    addr: bytes = b""
    label: bytes = b""
    level: int = 0
    filesys: bytes = b""
    dev: bytes = b""
    host: bytes = b""
    flags: int = 0
    firstrec: int = 0
    ntrec: int = 0
    extattributes: int = 0
    raw_addr: bytes = b""  # the whole 512-byte c_addr/c_inos area, as read


def _split_time(ns: int) -> tuple[int, int, int]:
    """(seconds, microseconds, nanoseconds under the microsecond) of a time in ns."""
    sec, rest = divmod(ns, 1_000_000_000)
    usec, sub = divmod(rest, 1000)
    return sec, usec, sub


def _clamp_seconds(sec: int) -> int:
    return 0 if sec < 0 else (0xFFFFFFFF if sec > 0xFFFFFFFF else sec)


def pack_header(h: Header) -> bytes:
    """The 1 KiB block for ``h``, magic and checksum included."""
    return _pack_block(
        h.type,
        h.date,
        h.ddate,
        h.volume,
        h.tapea,
        h.inumber,
        h.inode,
        h.count,
        h.raw_addr if h.raw_addr else h.addr,
        h.label,
        h.level,
        h.filesys,
        h.dev,
        h.host,
        h.flags,
        h.firstrec,
        h.ntrec,
        h.extattributes,
    )


def _pack_block(
    c_type: int,
    date: int,
    ddate: int,
    volume: int,
    tapea: int,
    inumber: int,
    ino: InodeInfo,
    count: int,
    addr: bytes,
    label: bytes,
    level: int,
    filesys: bytes,
    dev: bytes,
    host: bytes,
    flags: int,
    firstrec: int,
    ntrec: int,
    extattributes: int,
) -> bytes:
    """pack_header's work, from the fields themselves: a dump packs one per inode, no Header built."""
    a_sec, a_usec, a_sub = _split_time(ino.atime_ns)
    m_sec, m_usec, m_sub = _split_time(ino.mtime_ns)
    c_sec, c_usec, c_sub = _split_time(ino.ctime_ns)
    mode = ino.mode
    db = _NO_DB
    if mode & _S_IFMT in (_S_IFCHR, _S_IFBLK):
        db = (encode_rdev(ino.rdev_major, ino.rdev_minor), *_NO_DB[1:])
    spare = _NO_SPARE
    present = 0
    birth_ns = ino.birth_ns
    if (birth_ns is not None and birth_ns >= 0) or ino.project_id is not None or a_sub or m_sub or c_sub:
        spare = [0] * 30
        if birth_ns is not None and birth_ns >= 0:
            present |= SPARE_BIRTH
            b_sec, b_nsec = divmod(birth_ns, 1_000_000_000)
            spare[5], spare[6] = _clamp_seconds(b_sec), b_nsec
        if ino.project_id is not None:
            present |= SPARE_PROJECT
            spare[7] = ino.project_id & 0xFFFFFFFF
        spare[0], spare[1], spare[2], spare[3], spare[4] = NDMPTOOLS_SPARE_MAGIC, a_sub, m_sub, c_sub, present
    uid, gid = ino.uid, ino.gid
    block = _LAYOUT.pack(
        c_type,
        date,
        ddate,
        volume,
        tapea & 0xFFFFFFFF,
        inumber & 0xFFFFFFFF,
        NFS_MAGIC,
        0,
        mode & 0xFFFF,
        min(ino.nlink, 0x7FFF),
        uid & 0xFFFF,
        gid & 0xFFFF,
        ino.size,
        _clamp_seconds(a_sec),
        a_usec,
        _clamp_seconds(m_sec),
        m_usec,
        _clamp_seconds(c_sec),
        c_usec,
        *db,
        ino.flags & 0xFFFFFFFF,
        min(ino.blocks, 0xFFFFFFFF),
        ino.generation & 0xFFFFFFFF,
        uid & 0xFFFFFFFF,
        gid & 0xFFFFFFFF,
        count,
        addr,
        label[: LBLSIZE - 1],
        level,
        filesys[: NAMELEN - 1],
        dev[: NAMELEN - 1],
        host[: NAMELEN - 1],
        flags,
        firstrec,
        ntrec,
        extattributes,
        *spare,
    )
    # The checksum word is 0 in ``block``: the one that makes the words sum to CHECKSUM goes in its place.
    checksum = (CHECKSUM - _word_sum(block)) & 0xFFFFFFFF
    return block[:CHECKSUM_OFFSET] + checksum.to_bytes(4, "little") + block[CHECKSUM_OFFSET + 4 :]


_NO_DB = (0,) * 15
_NO_SPARE = (0,) * 30


def set_checksum(block: bytearray) -> None:
    """Make the 256 words of ``block`` sum to CHECKSUM (mod 2**32)."""
    struct.pack_into("<I", block, CHECKSUM_OFFSET, 0)
    total = _word_sum(block)
    struct.pack_into("<I", block, CHECKSUM_OFFSET, (CHECKSUM - total) & 0xFFFFFFFF)


def checksum_ok(block: bytes | memoryview) -> bool:
    return _word_sum(block) & 0xFFFFFFFF == CHECKSUM


def looks_like_header(block: bytes | memoryview) -> bool:
    """True when ``block`` has the new-format magic and a valid checksum."""
    return int.from_bytes(block[24:28], "little") == NFS_MAGIC and checksum_ok(block)


def unpack_header(block: bytes | memoryview, offset: int = 0) -> Header:
    """Parse one header block; ``offset`` (its byte position on media) goes into errors."""
    if len(block) != TP_BSIZE:
        raise FormatError("short header block", offset)
    v = _LAYOUT.unpack(block)  # any 1 KiB unpacks: the magic and the checksum are judged next
    if v[6] != NFS_MAGIC:
        magic = v[6]
        if magic == OFS_MAGIC:
            raise FormatError("old-format (pre-4.4BSD) dump headers are not supported", offset)
        if int.from_bytes(block[24:28], "big", signed=True) == NFS_MAGIC:
            raise FormatError("big-endian dump images are not supported", offset)
        raise FormatError("no dump header here (bad magic number)", offset)
    if _word_sum(block) & 0xFFFFFFFF != CHECKSUM:
        raise FormatError("dump header checksum mismatch", offset)
    # v: 0-7 c_type..c_checksum; 8-18 mode, nlink, ouid, ogid, size, a/m/c sec+usec; 19-33 db;
    # 34-38 flags, blocks, gen, uid, gid; 39 count, 40 addr, 41 label, 42 level, 43-45 filesys,
    # dev, host; 46-49 c_flags, firstrec, ntrec, extattributes; 50-79 spare.
    a_sub = m_sub = c_sub = present = 0
    if v[50] == NDMPTOOLS_SPARE_MAGIC:
        a_sub, m_sub, c_sub, present = min(v[51], 999), min(v[52], 999), min(v[53], 999), v[54]
    mode = v[8]
    inode = InodeInfo(
        mode=mode,
        nlink=max(v[9], 0),
        size=v[12],
        atime_ns=(v[13] * 1_000_000 + min(v[14], 999_999)) * 1000 + a_sub,
        mtime_ns=(v[15] * 1_000_000 + min(v[16], 999_999)) * 1000 + m_sub,
        ctime_ns=(v[17] * 1_000_000 + min(v[18], 999_999)) * 1000 + c_sub,
        flags=v[34],
        blocks=v[35],
        generation=v[36],
        uid=v[37],
        gid=v[38],
        birth_ns=v[55] * 1_000_000_000 + min(v[56], 999_999_999) if present & SPARE_BIRTH else None,
        project_id=v[57] if present & SPARE_PROJECT else None,
    )
    if mode & _S_IFMT in (_S_IFCHR, _S_IFBLK):
        # Linux dump copies ext4's i_block: the device is in word 0 (old
        # encoding) or, for large numbers, in word 1 (new encoding).
        inode.rdev_major, inode.rdev_minor = decode_rdev(v[19] or v[20])
    count = v[39]
    raw_addr = v[40]
    label, filesys, dev, host = _names(v[41], v[43], v[44], v[45])
    return Header(
        type=v[0],
        date=v[1],
        ddate=v[2],
        volume=v[3],
        tapea=v[4],
        inumber=v[5],
        inode=inode,
        count=count,
        addr=raw_addr[:count] if 0 <= count <= TP_NINDIR else b"",
        label=label,
        level=v[42],
        filesys=filesys,
        dev=dev,
        host=host,
        flags=v[46],
        firstrec=v[47],
        ntrec=v[48],
        extattributes=v[49],
        raw_addr=raw_addr,
    )


_last_names: tuple[tuple[bytes, ...], tuple[bytes, ...]] = ((), ())


def _names(*raw: bytes) -> tuple[bytes, ...]:
    """c_label, c_filesys, c_dev and c_host up to their NULs: every header of a dump repeats them."""
    global _last_names
    seen, parsed = _last_names
    if raw != seen:
        parsed = tuple(field.split(b"\0", 1)[0] for field in raw)
        _last_names = (raw, parsed)
    return parsed


_PACKER_FIELDS = ("date", "ddate", "level", "label", "filesys", "dev", "host", "ntrec", "volume")


class HeaderPacker:
    """Packs the headers of one dump: the fields every header shares are set once."""

    def __init__(
        self,
        *,
        date: int,
        ddate: int,
        level: int,
        label: bytes,
        filesys: bytes,
        dev: bytes,
        host: bytes,
        ntrec: int,
        volume: int = 1,
    ) -> None:
        self._common = dict(
            date=date,
            ddate=ddate,
            volume=volume,
            level=level,
            label=label,
            filesys=filesys,
            dev=dev,
            host=host,
            ntrec=ntrec,
        )
        # For inode_header, once per inode: the shared fields in _pack_block's order.
        self._date, self._ddate, self._volume, self._level = date, ddate, volume, level
        self._label, self._filesys, self._dev, self._host, self._ntrec = label, filesys, dev, host, ntrec

    def fields(self) -> dict:
        """The shared fields, as the constructor takes them (a restart packs the same headers)."""
        return {k: v for k, v in self._common.items() if k in _PACKER_FIELDS}

    def volume_header(
        self,
        tapea: int,
        *,
        volume: int = 1,
        inumber: int = 0,
        inode: InodeInfo | None = None,
        continued_blocks: int = 1,
    ) -> bytes:
        """TS_TAPE: starts every volume.

        On a continuation volume, c_firstrec is the header's own block number
        and c_inumber/c_dinode/c_count name the inode whose ``continued_blocks``
        data blocks come first, as Linux dump writes them.
        """
        common = dict(self._common, volume=volume)
        return pack_header(
            Header(
                type=RecordType.TAPE,
                tapea=tapea,
                inumber=inumber,
                inode=inode or InodeInfo(),
                count=continued_blocks,
                flags=DR_NEWHEADER | DR_NEWINODEFMT,
                firstrec=tapea,
                **common,
            )
        )

    def map_header(self, map_type: int, inumber: int, map_bytes: int, tapea: int) -> bytes:
        """TS_CLRI or TS_BITS announcing ``map_bytes`` (whole blocks) of bitmap."""
        return pack_header(
            Header(
                type=map_type,
                tapea=tapea,
                inumber=inumber,
                inode=InodeInfo(size=map_bytes),
                count=map_bytes // TP_BSIZE,
                flags=DR_NEWINODEFMT,
                **self._common,
            )
        )

    def inode_header(
        self,
        record_type: int,
        inumber: int,
        inode: InodeInfo,
        addr: bytes,
        tapea: int,
        flags: int = 0,
        extattributes: int = 0,
    ) -> bytes:
        """TS_INODE or TS_ADDR for ``inumber`` with ``len(addr)`` c_addr entries."""
        return _pack_block(
            record_type,
            self._date,
            self._ddate,
            self._volume,
            tapea,
            inumber,
            inode,
            len(addr),
            addr,
            self._label,
            self._level,
            self._filesys,
            self._dev,
            self._host,
            DR_NEWINODEFMT | flags,
            0,
            self._ntrec,
            extattributes,
        )

    def end_header(self, tapea: int, inumber: int) -> bytes:
        """TS_END: repeated to fill the last record."""
        return pack_header(
            Header(type=RecordType.END, tapea=tapea, inumber=inumber, flags=DR_NEWINODEFMT, **self._common)
        )
