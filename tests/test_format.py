"""The on-media format, byte by byte: headers, directories, maps and records."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndmptools.errors import FormatError
from ndmptools.format.bitmap import InodeMap
from ndmptools.format.constants import CHECKSUM, DIRBLKSIZ, NFS_MAGIC, TP_BSIZE, RecordType
from ndmptools.format.dirent import entry_size, pack_directory, parse_directory
from ndmptools.format.header import (
    Header,
    InodeInfo,
    decode_rdev,
    encode_rdev,
    pack_header,
    unpack_header,
)
from ndmptools.format.records import BlockReader, RecordWriter
from ndmptools.media.base import MediumBase

ns_time = st.integers(min_value=0, max_value=(2**32 - 1) * 10**9 + 999_999_999)


@given(
    mode=st.sampled_from([0o100644, 0o040755, 0o120777, 0o104755, 0o010600, 0o140755]),
    size=st.integers(0, 2**63 - 1),
    atime=ns_time,
    mtime=ns_time,
    ctime=ns_time,
    uid=st.integers(0, 2**32 - 1),
    gid=st.integers(0, 2**32 - 1),
    nlink=st.integers(0, 32767),
    flags=st.integers(0, 2**32 - 1),
    inumber=st.integers(0, 2**32 - 1),
    tapea=st.integers(0, 2**32 - 1),
    count=st.integers(0, 512),
    data=st.data(),
)
def test_header_round_trip(
    mode, size, atime, mtime, ctime, uid, gid, nlink, flags, inumber, tapea, count, data
):
    addr = data.draw(st.binary(min_size=count, max_size=count).map(lambda b: bytes(x & 1 for x in b)))
    info = InodeInfo(
        mode=mode,
        nlink=nlink,
        size=size,
        atime_ns=atime,
        mtime_ns=mtime,
        ctime_ns=ctime,
        flags=flags,
        uid=uid,
        gid=gid,
    )
    header = Header(
        type=RecordType.INODE,
        date=1_700_000_000,
        volume=1,
        tapea=tapea,
        inumber=inumber,
        inode=info,
        count=count,
        addr=addr,
        label=b"lbl",
        level=0,
        filesys=b"/fs",
        dev=b"/dev/x",
        host=b"h",
        flags=2,
        ntrec=64,
    )
    block = pack_header(header)
    assert len(block) == TP_BSIZE
    assert sum(struct.unpack("<256I", block)) % 2**32 == CHECKSUM
    back = unpack_header(block)
    assert back.inode == info
    assert (back.inumber, back.tapea, back.count, back.addr) == (inumber, tapea, count, addr)
    assert (back.label, back.filesys, back.dev, back.host, back.ntrec) == (
        b"lbl",
        b"/fs",
        b"/dev/x",
        b"h",
        64,
    )


def test_field_offsets_are_linux_dumps():
    info = InodeInfo(
        mode=0o100600,
        nlink=3,
        size=0x1_0000_0005,
        atime_ns=1_000_000_002_000,
        mtime_ns=7 * 10**9,
        uid=70000,
        gid=80000,
        flags=0x80000,
    )
    block = pack_header(
        Header(
            type=RecordType.INODE,
            date=11,
            ddate=12,
            volume=13,
            tapea=14,
            inumber=15,
            inode=info,
            count=2,
            addr=b"\1\0",
            label=b"L",
            level=5,
            filesys=b"F",
            dev=b"D",
            host=b"H",
            flags=2,
            firstrec=7,
            ntrec=32,
            extattributes=3,
        )
    )
    assert struct.unpack_from("<iiiiIIi", block, 0) == (2, 11, 12, 13, 14, 15, NFS_MAGIC)
    assert struct.unpack_from("<HhHHQ", block, 32) == (
        0o100600,
        3,
        70000 & 0xFFFF,
        80000 & 0xFFFF,
        0x1_0000_0005,
    )
    assert struct.unpack_from("<II", block, 48) == (1000, 2)  # atime: seconds, microseconds
    assert struct.unpack_from("<I", block, 56) == (7,)
    assert struct.unpack_from("<I", block, 132) == (0x80000,)  # di_flags
    assert struct.unpack_from("<II", block, 144) == (70000, 80000)  # 32-bit uid and gid
    assert struct.unpack_from("<i", block, 160) == (2,)
    assert block[164:166] == b"\1\0"
    assert block[676:677] == b"L" and struct.unpack_from("<i", block, 692) == (5,)
    assert block[696:697] == b"F" and block[760:761] == b"D" and block[824:825] == b"H"
    assert struct.unpack_from("<iiii", block, 888) == (2, 7, 32, 3)


def test_device_numbers_use_the_encoding_linux_restore_reads():
    assert encode_rdev(4, 5) == 1029  # the old 16-bit form, as Debian dump writes from ext4
    assert encode_rdev(259, 300) == 1114924  # ext4's i_block[1] form, as seen in a Debian image
    for major, minor in [(0, 0), (1, 3), (4095, 0xFFFFF), (259, 300)]:
        assert decode_rdev(encode_rdev(major, minor)) == (major, minor)
    info = InodeInfo(mode=0o020644, rdev_major=259, rdev_minor=300)
    assert unpack_header(pack_header(Header(type=2, inode=info))).inode.rdev_minor == 300


def test_any_damaged_byte_fails_the_checksum():
    block = pack_header(Header(type=RecordType.INODE, inumber=7, inode=InodeInfo(mode=0o100644, size=9)))
    for position in range(0, TP_BSIZE, 7):
        damaged = bytearray(block)
        damaged[position] ^= 0x5A
        with pytest.raises(FormatError):
            unpack_header(bytes(damaged), 4096)


@pytest.mark.parametrize(
    ("magic", "words"),
    [
        (60011, "old-format"),
        (int.from_bytes((60012).to_bytes(4, "big"), "little"), "big-endian"),
        (1, "magic"),
    ],
)
def test_foreign_headers_are_named(magic, words):
    block = bytearray(pack_header(Header(type=RecordType.TAPE)))
    block[24:28] = magic.to_bytes(4, "little")
    with pytest.raises(FormatError, match=words) as err:
        unpack_header(bytes(block), 2048)
    assert "at byte 2048" in str(err.value)


names = st.binary(min_size=1, max_size=255).filter(lambda n: b"/" not in n and b"\0" not in n)


@given(st.lists(st.tuples(st.integers(1, 2**32 - 1), st.integers(0, 14), names), max_size=200))
def test_directories_round_trip_and_never_cross_512_bytes(entries):
    data = pack_directory(entries)
    assert len(data) % DIRBLKSIZ == 0
    parsed, problems = parse_directory(data)
    assert problems == []
    assert [(e.ino, e.dtype, e.name) for e in parsed] == [tuple(e) for e in entries]
    offset = 0
    while offset < len(data):  # every record stays within its 512-byte chunk
        reclen = struct.unpack_from("<H", data, offset + 4)[0]
        assert reclen >= entry_size(data[offset + 7])
        assert offset // DIRBLKSIZ == (offset + reclen - 1) // DIRBLKSIZ
        offset += reclen


@settings(max_examples=300)
@given(st.binary(max_size=4096))
def test_parsing_garbage_directories_terminates(data):
    entries, _ = parse_directory(data)
    for entry in entries:
        assert entry.ino != 0 and len(entry.name) <= 255


@given(st.integers(1, 5000), st.integers(0, 5000))
def test_inode_map_ranges(first, extra):
    last = first + extra
    m = InodeMap()
    m.add_range(first, last)
    assert list(m) == list(range(first, last + 1))
    assert first in m and last in m and (first - 1) not in m and (last + 1) not in m


def test_map_size_follows_linux_dump():
    # Linux dump: roundup(howmany(maxino, 8), TP_BSIZE); restore: maxino = c_count * 8192 + 1
    assert len(InodeMap().to_media(16385)) == 3 * TP_BSIZE
    assert len(InodeMap().to_media(8192)) == TP_BSIZE
    assert len(InodeMap().to_media(8193)) == 2 * TP_BSIZE


class _Recorder(MediumBase):
    name = "recorder"

    def __init__(self) -> None:
        self.records: list[bytes] = []

    def write_record(self, record) -> None:
        self.records.append(bytes(record))


def test_one_write_per_record_and_end_blocks_fill_the_last():
    medium = _Recorder()
    writer = RecordWriter(medium, 4)
    writer.write_blocks(b"\1" * TP_BSIZE * 5)
    writer.finish(lambda tapea: tapea.to_bytes(4, "little") + bytes(TP_BSIZE - 4))
    assert [len(r) for r in medium.records] == [4 * TP_BSIZE, 4 * TP_BSIZE]
    last = medium.records[1]
    assert [int.from_bytes(last[i * TP_BSIZE : i * TP_BSIZE + 4], "little") for i in range(1, 4)] == [5, 6, 7]


def test_a_file_that_shrinks_while_read_is_padded_and_reported(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"a" * 1500)
    medium = _Recorder()
    writer = RecordWriter(medium, 4)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = writer.write_file_data(fd, 0, 3000)  # the file was 3000 bytes when stat'ed
    finally:
        os.close(fd)
    writer.finish(lambda tapea: bytes(TP_BSIZE))
    assert got == 1500
    data = medium.records[0]
    assert data[:1500] == b"a" * 1500 and data[1500 : 3 * TP_BSIZE] == bytes(3 * TP_BSIZE - 1500)


def test_reader_reports_the_offset_of_a_torn_block(tmp_path):
    class Stream(MediumBase):
        name = "s"

        def __init__(self, data):
            self.data = data

        def read_record(self, size):
            chunk, self.data = self.data[:size], self.data[size:]
            return chunk

    reader = BlockReader(Stream(b"x" * (3 * TP_BSIZE + 100)))
    assert len(reader.read_blocks(3)[0]) == 3 * TP_BSIZE
    with pytest.raises(FormatError, match="at byte 3072"):
        reader.read_block()


# -- extended attribute areas --------------------------------------------------------------------


def _acl(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


ACL_SAMPLE = _acl(
    (1, 6, 0xFFFFFFFF), (2, 6, 1000), (4, 4, 0xFFFFFFFF), (0x10, 6, 0xFFFFFFFF), (0x20, 4, 0xFFFFFFFF)
)


def test_acls_go_to_media_in_ext4_form_and_come_back():
    from ndmptools.format.xattr import acl_from_disk, acl_to_disk

    disk = acl_to_disk(ACL_SAMPLE)
    assert disk[:4] == struct.pack("<I", 1) and len(disk) == 4 + 4 * 4 + 8  # four short, one named
    assert acl_from_disk(disk) == ACL_SAMPLE


def test_attribute_areas_round_trip_and_split_at_4_kib():
    from ndmptools.format.xattr import AREA_LIMIT, EMPTY_AREA, decode_areas, plan_areas

    attributes = [
        (b"system.posix_acl_access", ACL_SAMPLE),
        (b"user.DOSATTRIB", b"0x20\0"),
        *((f"user.n{i}".encode(), bytes([i]) * 900) for i in range(6)),
        (b"system.nfs4_acl", b"\0\0\0\1opaque"),
        (b"trusted.big", b"x" * 9000),
    ]
    plan = plan_areas(attributes)
    assert plan.oversized == [b"trusted.big"] and plan.unknown_elsewhere == [b"system.nfs4_acl"]
    assert all(len(area) <= AREA_LIMIT for area in plan.areas[:-2])
    assert plan.areas[-1] == EMPTY_AREA  # after the oversized area, for Linux restore's extra skip
    assert struct.unpack_from("<I", plan.areas[0])[0] == 0xEA020000
    found = decode_areas((3, area) for area in plan.areas)
    order = [name for name, _ in found.attributes]
    assert order.index(b"system.nfs4_acl") > max(order.index(f"user.n{i}".encode()) for i in range(6))
    assert sorted(found.attributes) == sorted(attributes)


def test_a_damaged_attribute_area_is_counted_not_fatal():
    from ndmptools.format.xattr import decode_areas, plan_areas

    good = plan_areas([(b"user.a", b"1")]).areas[0]
    truncated = good[:40]
    found = decode_areas([(3, b"\0" * 1024), (3, truncated), (3, good), (1, b"finder info")])
    assert found.attributes == [(b"user.a", b"1")]
    assert found.damaged == 2 and found.other_kinds == 1


def test_the_in_inode_form_linux_dump_writes_is_read():
    from ndmptools.format.xattr import unpack_area

    # user.x = "abc": the value 24 bytes after the first entry, past the entry and the end marker
    entry = struct.pack("<BBHIII", 1, 1, 24, 0, 3, 0) + b"x\0\0\0"
    area = struct.pack("<I", 0xEA020001) + entry + bytes(4) + b"abc"
    assert unpack_area(area).attributes == [(b"user.x", b"abc")]


def test_birth_time_and_project_id_ride_in_c_spare():
    from ndmptools.format.header import Header, InodeInfo, pack_header, unpack_header

    info = InodeInfo(mode=0o100644, birth_ns=1_700_000_000_123_456_789, project_id=42)
    back = unpack_header(pack_header(Header(type=2, inode=info))).inode
    assert (back.birth_ns, back.project_id) == (1_700_000_000_123_456_789, 42)
    plain = unpack_header(pack_header(Header(type=2, inode=InodeInfo(mode=0o100644)))).inode
    assert (plain.birth_ns, plain.project_id) == (None, None)


def test_ext4_inline_data_in_an_in_inode_area_is_no_attribute():
    """Linux dump copies ext4's in-inode area whole, and system.data there is the file's data."""
    from ndmptools.format.xattr import unpack_area

    entry = struct.pack("<BBHIII", 4, 7, 24, 0, 0, 0) + b"data"
    area = struct.pack("<I", 0xEA020001) + entry + bytes(4)
    assert unpack_area(area).attributes == []
