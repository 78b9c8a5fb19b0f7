"""What ``restore -t --long`` says of an entry beyond its path, inode, type and size.

From the media: the inode's mode, owner, times and chattr flags, and from its
extended attributes whether it has a POSIX ACL (``ls``'s ``+``), the DOS
attributes Samba keeps in ``user.DOSATTRIB`` and how many alternate data
streams it keeps in ``user.DosStream.*``. From the file history: what the
catalog keeps (mode, owner, times, flags), the rest unknown (None).

Owners are the numbers on media: the tape may come from a host whose names
are not this one's. The names this system gives those numbers (who owns the
entry once restored here) come alongside, for --json.
"""

from __future__ import annotations

import grp
import pwd
import stat
from dataclasses import dataclass
from functools import lru_cache

from ndmptools.engine.metadata import flag_letters
from ndmptools.errors import FormatError
from ndmptools.format.dosattrib import DOSATTRIB_NAME, DosAttributes, parse_dosattrib, stream_count
from ndmptools.format.header import InodeInfo
from ndmptools.format.xattr import (
    ACL_ACCESS,
    ACL_DEFAULT,
    ACL_GROUP,
    ACL_MASK,
    ACL_USER,
    ReadAttributes,
    parse_acl,
)
from ndmptools.state.catalog import CatalogEntry

_EXTENDED_TAGS = (ACL_USER, ACL_GROUP, ACL_MASK)  # what an ACL has that the permission bits cannot say


@dataclass(frozen=True, slots=True)
class EntryDetails:
    """The long listing's fields of one entry; None where the source does not know."""

    mode: int
    uid: int | None
    gid: int | None
    mtime_ns: int
    birth_ns: int | None
    flags: int | None
    acl: bool | None = None  # a POSIX ACL beyond the permission bits, or a default ACL
    dos: DosAttributes | None = None  # None: no user.DOSATTRIB (or not known)
    streams: int | None = None  # user.DosStream.* attributes

    @property
    def ls_mode(self) -> str:
        """The mode as ``ls -l`` shows it, ``+`` for an ACL included."""
        return stat.filemode(self.mode) + ("+" if self.acl else "")

    @property
    def flag_letters(self) -> str | None:
        return None if self.flags is None else flag_letters(self.flags)

    def as_dict(self) -> dict:
        dos = self.dos
        return {
            "mode": self.mode,
            "ls_mode": self.ls_mode,
            "acl": self.acl,
            "uid": self.uid,
            "gid": self.gid,
            "user": user_name(self.uid),
            "group": group_name(self.gid),
            "mtime": self.mtime_ns // 1_000_000_000,
            "mtime_ns": self.mtime_ns,
            "birth_ns": self.birth_ns,
            "flags": self.flags,
            "flag_letters": self.flag_letters,
            "dos": None
            if dos is None
            else {
                "attributes": dos.attributes,
                "letters": dos.letters,
                "create_time_ns": dos.create_time_ns,
                "version": dos.version,
                "problem": dos.problem,
            },
            "streams": self.streams,
        }


def has_extended_acl(attributes: ReadAttributes) -> bool:
    """What ``ls`` marks with ``+``: a default ACL, or an access ACL beyond the mode's three entries."""
    if attributes.value(ACL_DEFAULT) is not None:
        return True
    access = attributes.value(ACL_ACCESS)
    if access is None:
        return False
    try:
        return any(entry.tag in _EXTENDED_TAGS for entry in parse_acl(access))
    except FormatError:
        return True  # there, if not readable: the entry has one


def media_details(info: InodeInfo, attributes: ReadAttributes | None) -> EntryDetails:
    """The long listing of an inode on media, with what its attribute areas held (None: none)."""
    acl, dos, streams = False, None, 0
    if attributes is not None and attributes.attributes:
        acl = has_extended_acl(attributes)
        value = attributes.value(DOSATTRIB_NAME)
        dos = None if value is None else parse_dosattrib(value)
        streams = stream_count([name for name, _ in attributes.attributes])
    return EntryDetails(
        info.mode, info.uid, info.gid, info.mtime_ns, info.birth_ns, info.flags, acl, dos, streams
    )


def catalog_details(entry: CatalogEntry) -> EntryDetails:
    """The long listing of an entry of the file history: its attributes are not kept there."""
    return EntryDetails(entry.mode, entry.uid, entry.gid, entry.mtime_ns, entry.birth_ns, entry.flags)


@lru_cache(maxsize=1024)
def user_name(uid: int | None) -> str | None:
    """The name this system gives ``uid``; None when it has none."""
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


@lru_cache(maxsize=1024)
def group_name(gid: int | None) -> str | None:
    """The name this system gives ``gid``; None when it has none."""
    if gid is None:
        return None
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return None
