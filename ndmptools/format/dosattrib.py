"""The DOS attributes Samba keeps in the extended attribute ``user.DOSATTRIB``.

With ``store dos attributes`` (the default since Samba 4.9) smbd keeps a
file's Windows attributes, and its creation time, in ``user.DOSATTRIB``;
with vfs_streams_xattr each alternate data stream is an attribute
``user.DosStream.NAME:$DATA``. Both are ordinary user attributes and go to
media like any other; this module only reads the first, for listings.

The value (Samba's librpc/idl/xattr.idl, ``xattr_DOSATTRIB``, written by
hand in librpc/ndr/ndr_xattr.c) is a NUL-terminated ASCII string, ``0x20``
say, which is all that Samba 3.0 wrote; newer Samba follows it with an NDR
blob, little-endian: u16 version at the next even offset, u16 version again
(the union's switch), then, at the next multiple of 4, the version's fields:

====  ==========================================================================
1     u32 attrib, u32 ea_size, u64 size, u64 alloc_size, NTTIME create, change
2     u32 flags, u32 attrib, u32 ea_size, u64 size, u64 alloc_size, NTTIME create,
      change, write, then a name (old, read only)
3     u32 valid_flags, u32 attrib, u32 ea_size, u64 size, u64 alloc_size,
      NTTIME create_time, NTTIME change_time
4     u32 valid_flags, u32 attrib, NTTIME itime, NTTIME create_time
5     u32 valid_flags, u32 attrib, NTTIME create_time (what Samba writes today)
====  ==========================================================================

From version 4 on the string is empty (a lone NUL). ``valid_flags`` says
which fields count: 0x1 the attributes, 0x10 the creation time. An NTTIME
counts 100 ns from 1601-01-01 (0: none). The value comes from a file system
that anyone may have written to, so ``parse_dosattrib`` takes any bytes and
never raises.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

DOSATTRIB_NAME = b"user.DOSATTRIB"
STREAM_PREFIX = b"user.DosStream."  # + the stream's name, ":$DATA" with Samba's default stream type

VALID_ATTRIB = 0x1
VALID_CREATE_TIME = 0x10

_NTTIME_UNIX_EPOCH = 116_444_736_000_000_000  # 1970-01-01 in 100 ns units from 1601-01-01
_NTTIME_NONE = (0, 0xFFFFFFFFFFFFFFFF)

# Windows' FILE_ATTRIBUTE_* bits, with the letters Windows Explorer's Attributes column shows.
FILE_ATTRIBUTE_LETTERS = (
    (0x0001, "R"),  # read-only
    (0x0002, "H"),  # hidden
    (0x0004, "S"),  # system
    (0x0010, "D"),  # directory
    (0x0020, "A"),  # archive
    (0x0080, "N"),  # normal (no other attribute)
    (0x0100, "T"),  # temporary
    (0x0200, "P"),  # sparse file
    (0x0400, "L"),  # reparse point
    (0x0800, "C"),  # compressed
    (0x1000, "O"),  # offline
    (0x2000, "I"),  # not content indexed
    (0x4000, "E"),  # encrypted
)

_U16 = struct.Struct("<H")
# Per version: the layout after the switch, the index of the attributes in it, of the creation
# time, and of valid_flags (None: the version has none, every field counts).
_LAYOUTS: dict[int, tuple[struct.Struct, int, int, int | None]] = {
    1: (struct.Struct("<IIQQQQ"), 0, 4, None),
    2: (struct.Struct("<IIIQQQQQ"), 1, 5, None),
    3: (struct.Struct("<IIIQQQQ"), 1, 5, 0),
    4: (struct.Struct("<IIQQ"), 1, 3, 0),
    5: (struct.Struct("<IIQ"), 1, 2, 0),
}


@dataclass(frozen=True, slots=True)
class DosAttributes:
    """What one ``user.DOSATTRIB`` value says; ``problem`` when not all of it could be read."""

    attributes: int | None  # the FILE_ATTRIBUTE_* bits; None: the value holds none that counts
    create_time_ns: int | None = None  # the Windows creation time, ns since 1970; None: not in the value
    version: int | None = None  # of the NDR blob; None: the hex string alone (Samba 3.0)
    problem: str | None = None

    @property
    def letters(self) -> str:
        return attribute_letters(self.attributes or 0)


def attribute_letters(attributes: int) -> str:
    """The attribute bits as letters, ``RHA`` for read-only, hidden, archive (bits without a letter: none)."""
    return "".join(letter for bit, letter in FILE_ATTRIBUTE_LETTERS if attributes & bit)


def nttime_to_ns(value: int) -> int | None:
    """An NTTIME as ns since 1970 (earlier times are negative); None for 0 and for all ones (none)."""
    if value in _NTTIME_NONE:
        return None
    return (value - _NTTIME_UNIX_EPOCH) * 100


_HEX = re.compile(rb"\s*(?:0[xX])?([0-9a-fA-F]{1,8})\s*")


def _hex_attributes(text: bytes) -> int | None:
    """The number in Samba's string (``0x20``, as ``%x`` reads it); None when it is empty or no number."""
    found = _HEX.fullmatch(text)
    return int(found.group(1), 16) if found else None


def parse_dosattrib(value: bytes) -> DosAttributes:
    """The DOS attributes and creation time in a ``user.DOSATTRIB`` value (any bytes: never raises)."""
    value = bytes(value)
    end = value.find(b"\0")
    text = value if end < 0 else value[:end]
    from_hex = _hex_attributes(text)
    if end < 0 or end + 1 >= len(value):
        # Samba 3.0: the string alone (a string without its NUL is read the same way).
        problem = None if from_hex is not None else f"no DOS attributes in {_shown(text)}"
        return DosAttributes(from_hex, problem=problem)
    pos = end + 1
    pos += pos & 1
    if pos + 4 > len(value):
        return DosAttributes(from_hex, problem="a DOS attribute blob cut short")
    (version,) = _U16.unpack_from(value, pos)
    (switch,) = _U16.unpack_from(value, pos + 2)
    if switch != version:
        return DosAttributes(from_hex, problem=f"a DOS attribute blob of version {version} switched {switch}")
    layout = _LAYOUTS.get(version)
    if layout is None:
        return DosAttributes(from_hex, version=version, problem=f"a DOS attribute blob of version {version}")
    shape, attrib_at, create_at, valid_at = layout
    pos = (pos + 4 + 3) & ~3
    if pos + shape.size > len(value):
        return DosAttributes(from_hex, version=version, problem="a DOS attribute blob cut short")
    fields = shape.unpack_from(value, pos)
    valid = fields[valid_at] if valid_at is not None else VALID_ATTRIB | VALID_CREATE_TIME
    # Samba writes the string too for versions 1-3; where the blob has no valid attributes, it counts.
    attributes = fields[attrib_at] if valid & VALID_ATTRIB else from_hex
    create = nttime_to_ns(fields[create_at]) if valid & VALID_CREATE_TIME else None
    return DosAttributes(attributes, create, version)


def _shown(text: bytes) -> str:
    return repr(text[:16].decode("ascii", "backslashreplace")) + ("..." if len(text) > 16 else "")


def stream_count(names: list[bytes] | tuple[bytes, ...]) -> int:
    """How many alternate data streams (``user.DosStream.*`` attributes) these attribute names hold."""
    return sum(1 for name in names if name.startswith(STREAM_PREFIX) and len(name) > len(STREAM_PREFIX))
