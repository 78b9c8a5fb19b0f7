"""Trees to dump: one with every kind of entry the foundation covers, and random ones.

Building needs root for device nodes and foreign owners, as the tests run.
"""

from __future__ import annotations

import os
import random
import socket

GiB = 1 << 30
MiB = 1 << 20

# (atime, mtime) in ns; the microsecond and the nanoseconds under it both matter
T_OLD = (315_532_800_123_456_789, 315_532_801_987_654_321)  # 1980
T_NS = (1_700_000_000_111_222_333, 1_700_000_001_444_555_666)
T_FUTURE = (4_000_000_000_000_000_001, 4_000_000_000_999_999_999)  # 2096


def _write(path: str, data: bytes, mode: int = 0o644, times=T_NS, owner=None) -> None:
    with open(path, "wb") as f:
        f.write(data)
    if owner:
        os.chown(path, *owner)
    os.chmod(path, mode)
    os.utime(path, ns=times)


def _sparse(path: str, size: int, pieces: list[tuple[int, bytes]], times=T_NS) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces:
            f.seek(offset)
            f.write(data)
    os.utime(path, ns=times)


def build_sample_tree(
    root: str,
    *,
    huge_sparse: bool = True,
    special_names: bool = True,
    sockets: bool = True,
    longest_name: int = 255,
    huge_minor: int = 1_000_000,
    linked_symlink: bool = True,
) -> str:
    """Every entry type, mode, owner and time shape the foundation must keep.

    Debian's restore 0.4b47 mangles names of 253 bytes and more, even from its
    own dumps, and passes the device word to mknod() as a signed int, so
    minors of 2**19 and above fail there; its interop tests ask for less.
    """
    rnd = random.Random(42)
    os.makedirs(root)
    j = lambda *p: os.path.join(root, *p)  # noqa: E731
    for d in ("dir", "dir/sub", "dir/sub/deeper/and/deeper", "empty", "many", "sticky", "private"):
        os.makedirs(j(d), exist_ok=True)
    _write(j("empty-file"), b"")
    _write(j("one-byte"), b"x")
    _write(j("block-1023"), rnd.randbytes(1023))
    _write(j("block-1024"), rnd.randbytes(1024))
    _write(j("block-1025"), rnd.randbytes(1025), mode=0o600)
    _write(j("dir", "medium"), rnd.randbytes(100_000), owner=(1234, 5678))
    _write(j("dir", "sub", "three-headers"), rnd.randbytes(3 * MiB + 17), owner=(100_000, 100_001))
    _write(j("dir", "sub", "deeper", "and", "deeper", "leaf"), b"deep\n", times=T_OLD)
    _write(j("future"), b"2096\n", times=T_FUTURE)
    _write(j("setuid"), b"#!/bin/sh\n", mode=0o4755)
    _write(j("setgid"), b"#!/bin/sh\n", mode=0o2755, owner=(0, 100))
    _write(j("no-permissions"), b"secret\n", mode=0o000)
    for i in range(300):  # several 512-byte directory chunks
        _write(j("many", f"entry-with-a-longish-name-{i:04d}"), str(i).encode())
    _sparse(j("sparse-middle"), 8 * MiB, [(0, b"head" * 1024), (5 * MiB + 1000, b"middle")])
    _sparse(j("sparse-leading-hole"), 3 * MiB, [(2 * MiB + 5, b"late data")])
    _sparse(j("sparse-trailing-hole"), 6 * MiB + 333, [(0, rnd.randbytes(10_000))])
    _sparse(j("all-hole"), 2 * MiB, [])
    if huge_sparse:
        _sparse(
            j("over-4GiB"),
            5 * GiB + 123,
            [(4 * GiB + 512 * 1024 + 7, b"beyond 4 GiB"), (5 * GiB + 100, b"tail")],
        )
    os.symlink("empty-file", j("link-short"))
    os.symlink("x" * 200 + "/target", j("link-long-dangling"))
    os.symlink("/etc/passwd", j("link-absolute"))
    os.symlink("dir/sub", j("link-to-dir"))
    os.utime(j("link-short"), ns=T_OLD, follow_symlinks=False)
    _write(j("dir", "hard-a"), b"three names\n", mode=0o640, owner=(42, 43))
    os.link(j("dir", "hard-a"), j("dir", "sub", "hard-b"))
    os.link(j("dir", "hard-a"), j("hard-c"))
    _write(j("empty-hard-1"), b"")
    os.link(j("empty-hard-1"), j("dir", "empty-hard-2"))
    if linked_symlink:  # mke2fs -d gives each name of a hard-linked symlink its own inode
        os.link(j("link-short"), j("dir", "hardlinked-symlink"), follow_symlinks=False)
    os.mknod(j("dev-null-like"), 0o020666, os.makedev(1, 3))
    os.mknod(j("dev-block-big"), 0o060640, os.makedev(259, 300))
    os.mknod(j("dev-char-huge"), 0o020600, os.makedev(4000, huge_minor))
    os.mkfifo(j("fifo"), 0o620)
    if sockets:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(j("socket"))
        sock.close()
    if special_names:
        _write(j("name with spaces"), b"spaces\n")
        _write(j("ünïcödé-名前"), b"unicode\n")
        _write(os.path.join(os.fsencode(root), b"latin1-\xe9\xff"), b"not utf-8\n")
        _write(j("n" * longest_name), b"longest name\n")
        _write(j("-starts-with-dash"), b"dash\n")
    os.chmod(j("sticky"), 0o1777)
    os.chmod(j("private"), 0o700)
    os.chmod(j("dir"), 0o2755)
    for d in (
        "dir/sub/deeper/and/deeper",
        "dir/sub/deeper/and",
        "dir/sub/deeper",
        "dir/sub",
        "dir",
        "empty",
        "many",
        "sticky",
        "private",
        "",
    ):
        os.utime(j(d) if d else root, ns=T_NS)
    return root


def build_tree_from_spec(root: str, spec: dict) -> None:
    """A tree from a nested dict: bytes are files, dicts directories, ('link', target) symlinks,
    ('hard', name) another name of an earlier file in the same directory, ('mode', m, data) a
    file with a mode, ('file', data, mode, (atime_ns, mtime_ns)) a file with mode and times,
    ('sparse', size, offset, data) a sparse file."""
    os.makedirs(root, exist_ok=True)
    for name, value in spec.items():
        path = os.path.join(root, name)
        if isinstance(value, dict):
            build_tree_from_spec(path, value)
        elif isinstance(value, bytes):
            _write(path, value)
        elif value[0] == "link":
            os.symlink(value[1], path)
        elif value[0] == "hard":
            os.link(os.path.join(root, value[1]), path)
        elif value[0] == "mode":
            _write(path, value[2], mode=value[1])
        elif value[0] == "file":
            _write(path, value[1], mode=value[2], times=value[3])
        elif value[0] == "sparse":
            _sparse(path, value[1], [(value[2], value[3])])
