"""Inode metadata between the file system and media: capture on dump, apply on restore.

Capture turns a stat result into the InodeInfo the format packs, and reads
what stat does not give: chattr flags, the project id, the birth time and
the extended attributes (POSIX ACLs among them). Apply sets them on a
restored entry, through a file descriptor where there is one so that nothing
is ever resolved through a symbolic link, in the one order that works:
owner first (chown drops set-id bits and security.capability), then the
extended attributes and ACLs, then mode and times, and the chattr flags
last of all, once nothing more has to be written to the entry.

Extended attributes leave out restoremarks.MARK_XATTR both ways: it says a
restore is writing the file now, which is never true of a file on media.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from ndmptools.engine.restoremarks import MARK_XATTR
from ndmptools.engine.statx import FileStat
from ndmptools.format.constants import MAX_INODE_TIME
from ndmptools.format.header import InodeInfo

FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long) on 64-bit Linux; the kernel fills an int
FS_IOC_SETFLAGS = 0x40086602  # _IOW('f', 2, long)
FS_IOC_FSGETXATTR = 0x801C581F  # _IOR('X', 31, struct fsxattr)
FS_IOC_FSSETXATTR = 0x401C5820  # _IOW('X', 32, struct fsxattr)
_FSXATTR = struct.Struct("<IIIII8x")  # xflags, extsize, nextents, projid, cowextsize

# The chattr flags a restore sets: those chattr(1) itself changes. The others (extents, inline data,
# an indexed directory, ...) describe how the file system stores the inode, and setting them would
# ask it to convert the file, or fail.
FS_SECRM_FL = 0x1
FS_UNRM_FL = 0x2
FS_COMPR_FL = 0x4
FS_SYNC_FL = 0x8
FS_IMMUTABLE_FL = 0x10
FS_APPEND_FL = 0x20
FS_NODUMP_FL = 0x40
FS_NOATIME_FL = 0x80
FS_NOCOMP_FL = 0x400
FS_JOURNAL_DATA_FL = 0x4000
FS_NOTAIL_FL = 0x8000
FS_DIRSYNC_FL = 0x10000
FS_TOPDIR_FL = 0x20000
FS_NOCOW_FL = 0x800000
FS_PROJINHERIT_FL = 0x20000000
RESTORED_FLAGS = (
    FS_SECRM_FL
    | FS_UNRM_FL
    | FS_COMPR_FL
    | FS_SYNC_FL
    | FS_IMMUTABLE_FL
    | FS_APPEND_FL
    | FS_NODUMP_FL
    | FS_NOATIME_FL
    | FS_NOCOMP_FL
    | FS_JOURNAL_DATA_FL
    | FS_NOTAIL_FL
    | FS_DIRSYNC_FL
    | FS_TOPDIR_FL
    | FS_NOCOW_FL
    | FS_PROJINHERIT_FL
)
# Flags that only take on an empty file: set before the data goes in.
EARLY_FLAGS = FS_NOCOW_FL | FS_COMPR_FL | FS_NOCOMP_FL
# chattr's letters, in lsattr's order, for listings.
FLAG_LETTERS = (
    (FS_SECRM_FL, "s"),
    (FS_UNRM_FL, "u"),
    (FS_SYNC_FL, "S"),
    (FS_DIRSYNC_FL, "D"),
    (FS_IMMUTABLE_FL, "i"),
    (FS_APPEND_FL, "a"),
    (FS_NODUMP_FL, "d"),
    (FS_NOATIME_FL, "A"),
    (FS_COMPR_FL, "c"),
    (FS_NOCOMP_FL, "m"),
    (FS_JOURNAL_DATA_FL, "j"),
    (FS_NOTAIL_FL, "t"),
    (FS_TOPDIR_FL, "T"),
    (FS_NOCOW_FL, "C"),
    (FS_PROJINHERIT_FL, "P"),
)
_MARK = os.fsencode(MARK_XATTR)


_FLAGS_BUFFER = bytes(8)


def read_inode_flags(fd: int) -> int:
    """The chattr flags of an open file or directory (0 where the file system has none).

    Linux dump stores them in di_flags and Linux restore -C compares them, so
    they are captured even before ndmptools restores them.
    """
    try:
        raw = fcntl.ioctl(fd, FS_IOC_GETFLAGS, _FLAGS_BUFFER)
    except OSError:
        return 0
    return struct.unpack_from("<I", raw)[0]


def set_inode_flags(fd: int, flags: int) -> None:
    """Give an open file or directory the chattr flags of ``flags`` that a restore sets.

    The flags it has that a restore does not set are kept; nothing is called
    when there is nothing to change (the common case costs one ioctl).
    """
    current = read_inode_flags(fd)
    wanted = (current & ~RESTORED_FLAGS) | (flags & RESTORED_FLAGS)
    if wanted != current:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("<Q", wanted))


def flag_letters(flags: int) -> str:
    """The chattr flags as lsattr shows them, without the dashes: ``ia`` for immutable, append-only."""
    return "".join(letter for bit, letter in FLAG_LETTERS if flags & bit)


def read_project_id(fd: int) -> int | None:
    """The project id of an open file or directory; None where it has none (or it is 0, the default)."""
    try:
        raw = fcntl.ioctl(fd, FS_IOC_FSGETXATTR, _FSXATTR_BUFFER)
    except OSError:
        return None
    return _FSXATTR.unpack(raw)[3] or None


_FSXATTR_BUFFER = bytes(_FSXATTR.size)  # ioctl copies an immutable buffer: one serves every call


def set_project_id(fd: int, project_id: int) -> None:
    """Give an open file or directory a project id (the file system must have them: ext4 -O project, XFS)."""
    raw = bytearray(fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(_FSXATTR.size)))
    xflags, extsize, nextents, current, cow = _FSXATTR.unpack(raw)
    if current != project_id:
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR, _FSXATTR.pack(xflags, extsize, nextents, project_id, cow))


def xattr_path(dir_fd: int, name: bytes) -> bytes:
    """A path to entry ``name`` of an open directory that the *xattr calls take without following it.

    The kernel's link for the descriptor leads to the directory itself; the
    last component is never followed (follow_symlinks=False).
    """
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def read_xattrs(where: int | bytes) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """The extended attributes of an open file (fd) or of a path not followed, and why not all.

    Names come back as bytes, values as getxattr gives them (POSIX ACLs in
    the kernel's xattr form); a file system without them has none. The
    restore mark is left out.
    """
    follow = not isinstance(where, bytes)
    try:
        names = os.listxattr(where, follow_symlinks=follow)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.ENOENT):
            return [], None
        return [], f"cannot list its extended attributes: {err.strerror}"
    found = []
    problem = None
    for text in names:
        name = os.fsencode(text)
        if name == _MARK:
            continue
        try:
            found.append((name, os.getxattr(where, name, follow_symlinks=follow)))
        except OSError as err:
            if err.errno == errno.ENODATA:
                continue  # removed since it was listed
            problem = f"cannot read its extended attribute {text}: {err.strerror}"
    return found, problem


def inode_info_from_stat(
    st: os.stat_result | FileStat, *, size: int | None = None, flags: int = 0
) -> InodeInfo:
    """What goes on media for an inode with this stat (or statx); ``size`` overrides st_size (directories)."""
    mode = st.st_mode
    info = InodeInfo(
        flags=flags,
        mode=mode,
        nlink=st.st_nlink,
        size=st.st_size if size is None else size,
        atime_ns=st.st_atime_ns,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        blocks=st.st_blocks,
        uid=st.st_uid,
        gid=st.st_gid,
    )
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.rdev_major = os.major(st.st_rdev)
        info.rdev_minor = os.minor(st.st_rdev)
    return info


_TIME_LIMIT_NS = (MAX_INODE_TIME + 1) * 1_000_000_000


def times_fit_format(info: InodeInfo) -> bool:
    """The format keeps unsigned 32-bit seconds (1970 to 2106); other times get clamped."""
    limit = _TIME_LIMIT_NS
    return 0 <= info.atime_ns < limit and 0 <= info.mtime_ns < limit and 0 <= info.ctime_ns < limit


RESTORES_OWNERS = os.geteuid() == 0  # only root may give files away
