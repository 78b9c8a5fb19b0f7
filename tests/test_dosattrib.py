"""Samba's user.DOSATTRIB, read for listings: each version of its value, and any bytes at all.

The values are laid out by hand here from Samba's librpc/idl/xattr.idl and
the NDR rules its ndr_xattr.c follows (a u16 at an even offset, the
version's fields from the next multiple of 4), not with the parser's own
tables, so that a wrong table cannot agree with itself.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from ndmptools.format.dosattrib import attribute_letters, nttime_to_ns, parse_dosattrib, stream_count

# 2024-01-01 00:00:00 UTC: 1,704,067,200 s after 1970, as 100 ns units after 1601-01-01.
NEW_YEAR_NS = 1_704_067_200 * 10**9
NEW_YEAR_NTTIME = 1_704_067_200 * 10**7 + 116_444_736_000_000_000


def samba3_string(attributes: int) -> bytes:
    """What Samba 3.0 wrote: the hex string and its NUL, nothing after."""
    return b"0x%x\0" % attributes


def version3(attributes: int, create: int, valid: int = 0x11) -> bytes:
    """Samba 4.0-4.8: "0x.." NUL, then at even offset version 3 twice, fields from a multiple of 4."""
    text = b"0x%x\0" % attributes  # "0x20\0": 5 bytes, so one byte pads to 6
    head = text + bytes(len(text) % 2) + struct.pack("<HH", 3, 3)
    head += bytes(-len(head) % 4)
    # valid_flags, attrib, ea_size, size, alloc_size, create_time, change_time
    return head + struct.pack("<III", valid, attributes, 0) + struct.pack("<QQQQ", 0, 0, create, 0)


def version4(attributes: int, create: int) -> bytes:
    """An empty string (a lone NUL), one byte of padding, 4 twice, valid_flags, attrib, itime, create."""
    return b"\0\0" + struct.pack("<HH", 4, 4) + bytes(2) + struct.pack("<IIQQ", 0x11, attributes, 7, create)


def version5(attributes: int, create: int, valid: int = 0x11) -> bytes:
    """What Samba writes today: NUL, pad, 5 twice, pad, valid_flags, attrib, create_time."""
    return b"\0\0" + struct.pack("<HH", 5, 5) + bytes(2) + struct.pack("<IIQ", valid, attributes, create)


def test_the_hand_laid_values_have_the_lengths_samba_gives_them():
    assert len(version3(0x20, NEW_YEAR_NTTIME)) == 56  # create_time at offset 40
    assert version3(0x20, NEW_YEAR_NTTIME)[40:48] == struct.pack("<Q", NEW_YEAR_NTTIME)
    assert len(version4(0x20, NEW_YEAR_NTTIME)) == 32
    assert len(version5(0x20, NEW_YEAR_NTTIME)) == 24


def test_the_string_alone_as_samba_3_wrote_it():
    found = parse_dosattrib(samba3_string(0x21))
    assert (found.attributes, found.letters, found.version, found.problem) == (0x21, "RA", None, None)
    assert found.create_time_ns is None
    assert parse_dosattrib(b"0x21").attributes == 0x21  # without its NUL, read all the same
    assert parse_dosattrib(b"0X2\0").letters == "H"


def test_version_3_has_the_attributes_and_the_creation_time():
    found = parse_dosattrib(version3(0x22, NEW_YEAR_NTTIME))
    assert (found.attributes, found.letters, found.version) == (0x22, "HA", 3)
    assert found.create_time_ns == NEW_YEAR_NS and found.problem is None


def test_version_3_without_a_valid_creation_time_has_none():
    found = parse_dosattrib(version3(0x20, NEW_YEAR_NTTIME, valid=0x1))
    assert found.attributes == 0x20 and found.create_time_ns is None


def test_versions_4_and_5_have_an_empty_string():
    four = parse_dosattrib(version4(0x10, NEW_YEAR_NTTIME))
    five = parse_dosattrib(version5(0x2010, NEW_YEAR_NTTIME))
    assert (four.attributes, four.version, four.create_time_ns) == (0x10, 4, NEW_YEAR_NS)
    assert (five.attributes, five.letters, five.version, five.create_time_ns) == (
        0x2010,
        "DI",
        5,
        NEW_YEAR_NS,
    )


def test_a_creation_time_of_zero_is_none_and_the_attributes_count_only_when_valid():
    assert parse_dosattrib(version5(0x20, 0)).create_time_ns is None
    assert parse_dosattrib(version5(0x20, NEW_YEAR_NTTIME, valid=0x10)).attributes is None


def test_what_cannot_be_read_says_so_and_keeps_what_could():
    cut = version3(0x21, NEW_YEAR_NTTIME)[:30]
    found = parse_dosattrib(cut)
    assert found.attributes == 0x21 and found.version == 3 and "cut short" in found.problem  # the string
    unknown = parse_dosattrib(b"0x20\0\0" + struct.pack("<HH", 9, 9) + bytes(16))
    assert unknown.attributes == 0x20 and unknown.version == 9 and unknown.problem
    mismatched = parse_dosattrib(b"\0\0" + struct.pack("<HH", 5, 4) + bytes(20))
    assert mismatched.attributes is None and mismatched.problem
    for garbage in (b"", b"\0", b"zz\0", b"0x\0", b"-1\0", b"0x1_0\0", b"0x123456789\0", b"\xff" * 40):
        found = parse_dosattrib(garbage)
        assert found.attributes is None and found.problem, garbage


@given(st.binary(max_size=80))
def test_any_bytes_give_an_answer_never_an_exception(value):
    found = parse_dosattrib(value)
    assert found.attributes is None or 0 <= found.attributes <= 0xFFFFFFFF
    assert isinstance(found.letters, str)


@given(st.binary(max_size=60))
def test_any_tail_after_a_real_start_gives_an_answer(tail):
    for start in (b"0x20\0", b"\0\0" + struct.pack("<HH", 5, 5), b"0x20\0\0" + struct.pack("<HH", 3, 3)):
        parse_dosattrib(start + tail)


def test_letters_and_times():
    assert attribute_letters(0x1 | 0x2 | 0x4 | 0x10 | 0x20) == "RHSDA"
    assert attribute_letters(0x100 | 0x200 | 0x400 | 0x800 | 0x1000 | 0x4000) == "TPLCOE"
    assert attribute_letters(0x8 | 0x40 | 0x10000) == ""  # volume label, device, virtual: no letter
    assert nttime_to_ns(116_444_736_000_000_000) == 0
    assert nttime_to_ns(116_444_736_000_000_000 - 10**7) == -(10**9)  # a second before 1970
    assert nttime_to_ns(0) is None and nttime_to_ns(2**64 - 1) is None


def test_streams_are_counted_by_samba_s_prefix():
    names = [b"user.DosStream.x:$DATA", b"user.DosStream.Zone.Identifier:$DATA", b"user.DOSATTRIB"]
    assert stream_count([*names, b"user.DosStream.", b"user.dosstream.y:$DATA", b"user.DosStreams"]) == 2
