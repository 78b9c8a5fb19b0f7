"""Birth time through statx(2), which Python 3.11's os module does not offer."""

from __future__ import annotations

import ctypes
import os
import struct

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
STATX_BTIME = 0x800


class _Timestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("reserved", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    _fields_ = [
        ("stx_mask", ctypes.c_uint32),
        ("stx_blksize", ctypes.c_uint32),
        ("stx_attributes", ctypes.c_uint64),
        ("stx_nlink", ctypes.c_uint32),
        ("stx_uid", ctypes.c_uint32),
        ("stx_gid", ctypes.c_uint32),
        ("stx_mode", ctypes.c_uint16),
        ("spare0", ctypes.c_uint16),
        ("stx_ino", ctypes.c_uint64),
        ("stx_size", ctypes.c_uint64),
        ("stx_blocks", ctypes.c_uint64),
        ("stx_attributes_mask", ctypes.c_uint64),
        ("stx_atime", _Timestamp),
        ("stx_btime", _Timestamp),
        ("stx_ctime", _Timestamp),
        ("stx_mtime", _Timestamp),
        ("stx_rdev_major", ctypes.c_uint32),
        ("stx_rdev_minor", ctypes.c_uint32),
        ("stx_dev_major", ctypes.c_uint32),
        ("stx_dev_minor", ctypes.c_uint32),
        ("spare", ctypes.c_uint64 * 14),
    ]


_libc = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once: by glibc's soname, else as ctypes finds it.

    ctypes.util.find_library runs ``ldconfig -p`` in a child process (some
    5 ms, every time it is called); glibc's name needs no search.
    """
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            from ctypes.util import find_library  # only where glibc's soname is not there

            _libc = ctypes.CDLL(find_library("c"), use_errno=True)
    return _libc


def birth_time_ns(path: str | bytes, dir_fd: int = AT_FDCWD) -> int | None:
    """When the file was created, where the file system records it; None where it does not.

    An empty ``path`` means the open file ``dir_fd`` itself.
    """
    c = _libc or libc()
    if not hasattr(c, "statx"):
        return None
    buffer = _Statx()
    flags = AT_SYMLINK_NOFOLLOW | (AT_EMPTY_PATH if not path else 0)
    if c.statx(dir_fd, os.fsencode(path), flags, STATX_BTIME, ctypes.byref(buffer)) != 0:
        return None
    if not buffer.stx_mask & STATX_BTIME:
        return None
    return buffer.stx_btime.tv_sec * 1_000_000_000 + buffer.stx_btime.tv_nsec


STATX_ATTR_NODUMP = 0x40  # chattr +d, as statx reports it (FS_NODUMP_FL has the same value)
AT_STATX_DONT_SYNC = 0x4000


def inode_attributes(path: str | bytes, dir_fd: int = AT_FDCWD) -> int:
    """The statx attribute bits of an entry, not following a symlink (0 where they cannot be read).

    One call answers for every kind of entry: a device or FIFO need not be
    opened, as FS_IOC_GETFLAGS would need, to learn whether it is nodump.
    """
    c = _libc or libc()
    if not hasattr(c, "statx"):
        return 0
    buffer = _Statx()
    flags = AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC
    if c.statx(dir_fd, os.fsencode(path), flags, 0, ctypes.byref(buffer)) != 0:
        return 0
    return buffer.stx_attributes & buffer.stx_attributes_mask


STATX_BASIC_STATS = 0x7FF
# struct statx up to stx_dev_minor (include/uapi/linux/stat.h): mask, blksize, attributes, nlink,
# uid, gid, mode, spare, ino, size, blocks, attributes_mask, then atime, btime, ctime, mtime
# (s64 seconds, u32 nanoseconds, s32 reserved each) and rdev/dev major and minor.
_STATX_LAYOUT = struct.Struct("<IIQIIIHHQQQQ" + "qIi" * 4 + "IIII")
_STATX_SIZE = 256  # the kernel's struct statx, spare words included


class FileStat:
    """What fstat gives that a dump uses, and the birth time, from one statx call."""

    __slots__ = (
        "birth_ns",
        "st_atime_ns",
        "st_blocks",
        "st_ctime_ns",
        "st_gid",
        "st_mode",
        "st_mtime_ns",
        "st_nlink",
        "st_rdev",
        "st_size",
        "st_uid",
    )


def fstat_with_birth(fd: int) -> FileStat | None:
    """fstat(fd) and the birth time in one system call; None where statx is missing or fails.

    A dump stats every file it opens: statx answers both questions that
    fstat and birth_time_ns would ask separately.
    """
    c = _libc or libc()
    if not hasattr(c, "statx"):
        return None
    buffer = ctypes.create_string_buffer(_STATX_SIZE)
    if c.statx(fd, b"", AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME, buffer) != 0:
        return None
    v = _STATX_LAYOUT.unpack_from(buffer)
    # v: 0 mask, 3 nlink, 4 uid, 5 gid, 6 mode, 9 size, 10 blocks, 12-14 atime, 15-17 btime,
    # 18-20 ctime, 21-23 mtime, 24-25 rdev major/minor.
    if v[0] & STATX_BASIC_STATS != STATX_BASIC_STATS:
        return None  # the file system left out something fstat would have told
    st = FileStat()
    st.st_mode, st.st_nlink, st.st_uid, st.st_gid = v[6], v[3], v[4], v[5]
    st.st_size, st.st_blocks = v[9], v[10]
    st.st_atime_ns = v[12] * 1_000_000_000 + v[13]
    st.st_ctime_ns = v[18] * 1_000_000_000 + v[19]
    st.st_mtime_ns = v[21] * 1_000_000_000 + v[22]
    st.st_rdev = os.makedev(v[24], v[25])
    st.birth_ns = v[15] * 1_000_000_000 + v[16] if v[0] & STATX_BTIME else None
    return st
