"""Inode metadata between the file system and media: capture on dump, apply on restore.

Capture turns a stat result into the InodeInfo the format packs. Apply sets
owner, mode and times on a restored entry, through a file descriptor where
there is one so that nothing is ever resolved through a symbolic link.

Extended attributes, once they are captured and applied here, must leave
out restoremarks.MARK_XATTR both ways: it says a restore is writing the file
now, which is never true of a file on media.
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct

from ndmptools.format.constants import MAX_INODE_TIME
from ndmptools.format.header import InodeInfo

FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long) on 64-bit Linux; the kernel fills an int


def read_inode_flags(fd: int) -> int:
    """The chattr flags of an open file or directory (0 where the file system has none).

    Linux dump stores them in di_flags and Linux restore -C compares them, so
    they are captured even before ndmptools restores them.
    """
    try:
        raw = fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8)
    except OSError:
        return 0
    return struct.unpack_from("<I", raw)[0]


def inode_info_from_stat(st: os.stat_result, *, size: int | None = None, flags: int = 0) -> InodeInfo:
    """What goes on media for an inode with this stat; ``size`` overrides st_size (directories)."""
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
    return all(0 <= t < _TIME_LIMIT_NS for t in (info.atime_ns, info.mtime_ns, info.ctime_ns))


RESTORES_OWNERS = os.geteuid() == 0  # only root may give files away


def apply_to_fd(fd: int, info: InodeInfo) -> None:
    """Owner, then mode (chown clears set-id bits), then times, on an open file or directory."""
    if RESTORES_OWNERS:
        os.fchown(fd, info.uid, info.gid)
    os.fchmod(fd, stat.S_IMODE(info.mode))
    os.utime(fd, ns=(info.atime_ns, info.mtime_ns))


def apply_to_name(dir_fd: int, name: bytes, info: InodeInfo) -> None:
    """Owner, mode and times of an entry without a descriptor: a symlink, device, FIFO or socket.

    Nothing follows a symbolic link: a symlink gets owner and times only, and
    the mode of a node is set by name only after lstat shows it is not a link.
    """
    if RESTORES_OWNERS:
        os.chown(name, info.uid, info.gid, dir_fd=dir_fd, follow_symlinks=False)
    if not info.is_symlink:
        if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            raise OSError(f"{name!r} turned into a symbolic link")
        os.chmod(name, stat.S_IMODE(info.mode), dir_fd=dir_fd)
    os.utime(name, ns=(info.atime_ns, info.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
