"""Extended attributes on media, as Linux dump 0.4b47 stores them (shared/FORMAT.md).

After an inode's data come one or more TS_INODE headers flagged
DR_EXTATTRIBUTES with c_extattributes EXT_XATTR; the data of each is an
ext4-style attribute area: a header, a table of entries ending in four zero
bytes, then the values. A name is stored as a namespace index and the rest
of the name; POSIX ACLs are stored in ext4's on-disk form (version 1), not
the form the kernel's xattr calls use (version 2).

Linux restore 0.4b47 reads an area of at most 4 KiB (XATTR_MAXSIZE) and
stops setting an area's attributes at the first index it does not know. So
the writer fills areas of up to 4 KiB, puts names in the ``system.``
namespace other than the two ACLs (an NFSv4 ACL, say) in areas of their own
after the others, and gives a value too big for 4 KiB an area of its own,
which only ndmptools restores (``AreaPlan.oversized`` says which). Linux
restore -C counts a file's attributes per area, so it agrees only when they
all fit one area, as they do on ext4 without the ea_inode feature.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from ndmptools.errors import FormatError
from ndmptools.format.constants import EXT_XATTR, TP_BSIZE

BLOCK_MAGIC = 0xEA020000  # an area copied from an attribute block, values offset from its start
INODE_MAGIC = 0xEA020001  # an area copied from inside an inode, values offset from its first entry
AREA_LIMIT = 4096  # the largest area Linux restore 0.4b47 reads

ACL_ACCESS = b"system.posix_acl_access"
ACL_DEFAULT = b"system.posix_acl_default"

# ext4's name indexes: the prefix each stands for. A POSIX ACL's index stands for its whole name.
INDEX_USER = 1
INDEX_ACL_ACCESS = 2
INDEX_ACL_DEFAULT = 3
INDEX_TRUSTED = 4
INDEX_LUSTRE = 5
INDEX_SECURITY = 6
INDEX_SYSTEM = 7  # ext4's index for other system.* names; Linux restore 0.4b47 does not know it
_PREFIXES = {
    INDEX_USER: b"user.",
    INDEX_TRUSTED: b"trusted.",
    INDEX_LUSTRE: b"lustre.",
    INDEX_SECURITY: b"security.",
    INDEX_SYSTEM: b"system.",
}
_WHOLE_NAMES = {INDEX_ACL_ACCESS: ACL_ACCESS, INDEX_ACL_DEFAULT: ACL_DEFAULT}
_KNOWN_TO_LINUX_RESTORE = {
    INDEX_USER,
    INDEX_ACL_ACCESS,
    INDEX_ACL_DEFAULT,
    INDEX_TRUSTED,
    INDEX_LUSTRE,
    INDEX_SECURITY,
}

_AREA_HEADER = struct.Struct("<IIII16x")  # magic, refcount, blocks, hash; checksum and reserved are zero
_ENTRY = struct.Struct("<BBHIII")  # name_len, name_index, value_offs, value_inum, value_size, hash
_END_OF_ENTRIES = 4

# POSIX ACL tags and forms.
ACL_USER_OBJ = 0x01
ACL_USER = 0x02
ACL_GROUP_OBJ = 0x04
ACL_GROUP = 0x08
ACL_MASK = 0x10
ACL_OTHER = 0x20
_NAMED_TAGS = (ACL_USER, ACL_GROUP)
_ACL_XATTR_VERSION = 2
_ACL_DISK_VERSION = 1
_ACL_ENTRY = struct.Struct("<HHI")  # tag, perm, id: every entry in the xattr form, named ones on disk
_ACL_SHORT = struct.Struct("<HH")  # tag, perm: an unnamed entry on disk
_ACL_HEADER = struct.Struct("<I")


def index_of(name: bytes) -> tuple[int, bytes]:
    """(name index, the rest of the name) for a full attribute name such as ``user.comment``."""
    if name == ACL_ACCESS:
        return INDEX_ACL_ACCESS, b""
    if name == ACL_DEFAULT:
        return INDEX_ACL_DEFAULT, b""
    for index, prefix in _PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return index, name[len(prefix) :]
    raise ValueError(f"no namespace for the attribute name {name!r}")


def full_name(index: int, suffix: bytes) -> bytes | None:
    """The attribute name an entry stands for; None for an index nobody defined."""
    whole = _WHOLE_NAMES.get(index)
    if whole is not None:
        return whole + suffix  # an ACL entry's own name is empty
    prefix = _PREFIXES.get(index)
    return None if prefix is None else prefix + suffix


# -- POSIX ACLs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AclEntry:
    tag: int
    perm: int
    id: int = 0xFFFFFFFF  # ACL_UNDEFINED_ID for the unnamed entries


def parse_acl(value: bytes) -> list[AclEntry]:
    """The entries of an ACL in the kernel's xattr form (version 2); FormatError when it is not one."""
    if len(value) < _ACL_HEADER.size or (len(value) - _ACL_HEADER.size) % _ACL_ENTRY.size:
        raise FormatError(f"an ACL of {len(value)} bytes is not whole entries")
    (version,) = _ACL_HEADER.unpack_from(value)
    if version != _ACL_XATTR_VERSION:
        raise FormatError(f"an ACL of version {version} (only version {_ACL_XATTR_VERSION} is known)")
    return [AclEntry(*e) for e in _ACL_ENTRY.iter_unpack(memoryview(value)[_ACL_HEADER.size :])]


def format_acl(entries: Iterable[AclEntry]) -> bytes:
    """An ACL in the kernel's xattr form, the form setxattr takes."""
    return _ACL_HEADER.pack(_ACL_XATTR_VERSION) + b"".join(
        _ACL_ENTRY.pack(e.tag, e.perm, e.id) for e in entries
    )


def acl_to_disk(value: bytes) -> bytes:
    """An ACL from the kernel's xattr form to ext4's on-disk form, as Linux dump has it on media."""
    out = [_ACL_HEADER.pack(_ACL_DISK_VERSION)]
    for e in parse_acl(value):
        if e.tag in _NAMED_TAGS:
            out.append(_ACL_ENTRY.pack(e.tag, e.perm, e.id))
        else:
            out.append(_ACL_SHORT.pack(e.tag, e.perm))
    return b"".join(out)


def acl_from_disk(value: bytes) -> bytes:
    """An ACL from ext4's on-disk form (on media) to the kernel's xattr form (for setxattr)."""
    view = memoryview(value)
    if len(view) < _ACL_HEADER.size or _ACL_HEADER.unpack_from(view)[0] != _ACL_DISK_VERSION:
        raise FormatError("an ACL on media that is not in ext4's form (version 1)")
    entries = []
    pos = _ACL_HEADER.size
    while pos < len(view):
        if pos + _ACL_SHORT.size > len(view):
            raise FormatError("an ACL on media ends in the middle of an entry")
        tag, perm = _ACL_SHORT.unpack_from(view, pos)
        if tag in _NAMED_TAGS:
            if pos + _ACL_ENTRY.size > len(view):
                raise FormatError("an ACL on media ends in the middle of an entry")
            entries.append(AclEntry(*_ACL_ENTRY.unpack_from(view, pos)))
            pos += _ACL_ENTRY.size
        elif tag in (ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER):
            entries.append(AclEntry(tag, perm))
            pos += _ACL_SHORT.size
        else:
            raise FormatError(f"an ACL on media has an entry of unknown tag {tag:#x}")
    return format_acl(entries)


def acl_entry_count(value: bytes) -> int:
    """How many entries an ACL in the xattr form has (without parsing them)."""
    return max(0, (len(value) - _ACL_HEADER.size) // _ACL_ENTRY.size)


# -- areas -------------------------------------------------------------------------------------


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _entry_hash(suffix: bytes, value: bytes) -> int:
    """ext4's hash of an entry: its name, then its value as 32-bit words."""
    h = 0
    for c in suffix:
        h = ((h << 5) ^ (h >> 27) ^ c) & 0xFFFFFFFF
    if value:
        padded = value + bytes(-len(value) % 4)
        for (word,) in struct.iter_unpack("<I", padded):
            h = ((h << 16) ^ (h >> 16) ^ word) & 0xFFFFFFFF
    return h


def _area_hash(hashes: list[int]) -> int:
    h = 0
    for e in hashes:
        h = ((h << 16) ^ (h >> 16) ^ e) & 0xFFFFFFFF
    return h


def _stored(name: bytes, value: bytes) -> tuple[int, bytes, bytes]:
    """(index, suffix, value as on media) of one attribute."""
    index, suffix = index_of(name)
    if index in (INDEX_ACL_ACCESS, INDEX_ACL_DEFAULT):
        value = acl_to_disk(value)
    return index, suffix, value


def _entry_room(suffix: bytes, value: bytes) -> int:
    return _ENTRY.size + _pad4(len(suffix)) + _pad4(len(value))


def pack_area(stored: list[tuple[int, bytes, bytes]]) -> bytes:
    """One attribute area (block form), padded to whole tape blocks, from (index, suffix, value)."""
    table = _AREA_HEADER.size + sum(_ENTRY.size + _pad4(len(s)) for _, s, _ in stored) + _END_OF_ENTRIES
    entries, values, hashes = [], [], []
    offset = table
    for index, suffix, value in stored:
        if offset > 0xFFFF:
            raise ValueError("an attribute value beyond what a 16-bit offset reaches")
        h = _entry_hash(suffix, value)
        hashes.append(h)
        entries.append(_ENTRY.pack(len(suffix), index, offset if value else 0, 0, len(value), h))
        entries.append(suffix + bytes(_pad4(len(suffix)) - len(suffix)))
        values.append(value + bytes(_pad4(len(value)) - len(value)))
        offset += _pad4(len(value))
    body = b"".join([_AREA_HEADER.pack(BLOCK_MAGIC, 1, 1, _area_hash(hashes)), *entries, bytes(4), *values])
    return body + bytes(-len(body) % TP_BSIZE)


EMPTY_AREA = pack_area([])


@dataclass
class AreaPlan:
    """The areas one inode's attributes go to media in, and what other restorers may refuse."""

    areas: list[bytes] = field(default_factory=list)
    oversized: list[bytes] = field(default_factory=list)  # names in an area over AREA_LIMIT
    unknown_elsewhere: list[bytes] = field(default_factory=list)  # names whose index Linux restore lacks


def plan_areas(attributes: Iterable[tuple[bytes, bytes]]) -> AreaPlan:
    """The areas for ``attributes`` (full names, values as getxattr gives them, ACLs included).

    Each area holds what fits in 4 KiB, in the order given; names Linux
    restore has no index for come after those, in areas of their own; a value
    that fits no 4 KiB area has one to itself, at the very end, followed by
    an empty area: Linux restore 0.4b47 skips one header too many after an
    area it finds too big, and that must not be the next file's.
    """
    plan = AreaPlan()
    known: list[tuple[int, bytes, bytes, bytes]] = []
    others: list[tuple[int, bytes, bytes, bytes]] = []
    oversized: list[bytes] = []
    room_in_area = AREA_LIMIT - _AREA_HEADER.size - _END_OF_ENTRIES
    for name, value in attributes:
        index, suffix, stored = _stored(name, value)
        if _entry_room(suffix, stored) > room_in_area:
            oversized.append(pack_area([(index, suffix, stored)]))
            plan.oversized.append(name)
        elif index in _KNOWN_TO_LINUX_RESTORE:
            known.append((index, suffix, stored, name))
        else:
            others.append((index, suffix, stored, name))
        if index not in _KNOWN_TO_LINUX_RESTORE:
            plan.unknown_elsewhere.append(name)
    for group in (known, others):
        current: list[tuple[int, bytes, bytes]] = []
        room = room_in_area
        for index, suffix, stored, _ in group:
            need = _entry_room(suffix, stored)
            if need > room and current:
                plan.areas.append(pack_area(current))
                current, room = [], room_in_area
            current.append((index, suffix, stored))
            room -= need
        if current:
            plan.areas.append(pack_area(current))
    for area in oversized:
        plan.areas += [area, EMPTY_AREA]
    return plan


@dataclass
class ReadAttributes:
    """What one inode's areas held: (full name, value for setxattr) pairs, and what was not usable."""

    attributes: list[tuple[bytes, bytes]] = field(default_factory=list)
    unknown_indexes: list[int] = field(default_factory=list)
    elsewhere: int = 0  # values kept outside the area (ext4's ea_inode), which Linux dump does not copy
    other_kinds: int = 0  # inode extensions that are not extended attributes (Mac OS Finder data)
    damaged: int = 0  # areas that could not be read

    def value(self, name: bytes) -> bytes | None:
        for found, value in self.attributes:
            if found == name:
                return value
        return None


def unpack_area(data: bytes | memoryview, into: ReadAttributes | None = None) -> ReadAttributes:
    """The attributes of one area, block or in-inode form; FormatError when it is damaged."""
    found = into if into is not None else ReadAttributes()
    view = memoryview(data)
    if len(view) < 4:
        raise FormatError("an attribute area shorter than its magic number")
    (magic,) = struct.unpack_from("<I", view)
    if magic == BLOCK_MAGIC:
        pos, value_base = _AREA_HEADER.size, 0
    elif magic == INODE_MAGIC:
        pos, value_base = 4, 4
    else:
        raise FormatError(f"an attribute area with the magic number {magic:#010x}")
    while True:
        if pos + _END_OF_ENTRIES > len(view):
            raise FormatError("an attribute area whose entries run past its end")
        if not any(view[pos : pos + _END_OF_ENTRIES]):
            return found
        if pos + _ENTRY.size > len(view):
            raise FormatError("an attribute area whose entries run past its end")
        name_len, index, value_offs, value_inum, value_size, _ = _ENTRY.unpack_from(view, pos)
        suffix = bytes(view[pos + _ENTRY.size : pos + _ENTRY.size + name_len])
        if len(suffix) < name_len:
            raise FormatError("an attribute area whose entries run past its end")
        pos += _ENTRY.size + _pad4(name_len)
        name = full_name(index, suffix)
        if name is None:
            found.unknown_indexes.append(index)
            continue
        if index == INDEX_SYSTEM and suffix == b"data":
            continue  # ext4's inline data, which Linux dump copies with the in-inode area: no attribute
        if value_inum:
            found.elsewhere += 1
            continue
        start = value_base + value_offs
        value = bytes(view[start : start + value_size])
        if len(value) < value_size:
            raise FormatError(f"the value of {name!r} runs past the end of its attribute area")
        if index in (INDEX_ACL_ACCESS, INDEX_ACL_DEFAULT):
            value = acl_from_disk(value)
        found.attributes.append((name, value))


def decode_areas(found: Iterable[tuple[int, bytes]]) -> ReadAttributes:
    """The attributes of an inode from what ``DumpReader.read_attributes`` gave: (c_extattributes, data).

    Areas of another kind (Mac OS Finder data) are counted in ``other_kinds``;
    a damaged area is counted in ``damaged`` and the rest still read.
    """
    result = ReadAttributes()
    for kind, data in found:
        if kind != EXT_XATTR:
            result.other_kinds += 1
            continue
        try:
            unpack_area(data, result)
        except FormatError:
            result.damaged += 1
    return result
