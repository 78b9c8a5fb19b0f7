"""Passes I and II: walk the tree once, number its inodes and build its directories.

Inode numbers on media are dense: the dumped path is ROOTINO (2) and every
other entry gets the next number the first time the walk meets it, so hard
links share one. The walk is breadth-first with names sorted, which makes the
numbering deterministic and lets pass IV find the files again in ascending
inode order by walking the same directories in the same order.

Per entry the map keeps only its packed directory record (a few dozen
bytes); per directory its path and metadata. That keeps a dump of a million
files within a small, predictable memory budget.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from dataclasses import dataclass, field

from ndmptools.engine.metadata import inode_info_from_stat, read_inode_flags, times_fit_format
from ndmptools.engine.progress import RunContext
from ndmptools.format.constants import DT_DIR, ROOTINO, TP_BSIZE, TP_NINDIR
from ndmptools.format.dirent import pack_directory
from ndmptools.format.header import InodeInfo, dtype_of_mode

_OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NOATIME = getattr(os, "O_NOATIME", 0)  # reading a directory must not move its atime


@dataclass(slots=True)
class DirectoryNode:
    """One directory to dump: where it is, what it holds (packed), and its inode."""

    ino: int
    parent_ino: int
    path: bytes
    info: InodeInfo
    mount_point: bool = False  # another file system is mounted here: dumped empty
    only_name: bytes | None = None  # a single-path dump: the one entry to keep
    contents: bytes = b""  # BSD directory data, set by the walk


@dataclass
class TreeMap:
    """The outcome of passes I and II."""

    root_path: bytes
    directories: list[DirectoryNode] = field(default_factory=list)  # breadth-first
    next_ino: int = ROOTINO + 1
    files: int = 0
    estimated_bytes: int = 0

    @property
    def maxino(self) -> int:
        """One above the highest inode number on media (Linux dump's maxino)."""
        return self.next_ino


def _estimate_file_blocks(st: os.stat_result) -> int:
    """Tape blocks a file will take: its header, its allocated data, and TS_ADDR headers."""
    data_blocks = -(-min(st.st_size, st.st_blocks * 512) // TP_BSIZE) if stat.S_ISREG(st.st_mode) else 1
    address_headers = -(-st.st_size // TP_BSIZE) // TP_NINDIR if stat.S_ISREG(st.st_mode) else 0
    return 1 + data_blocks + address_headers


def map_tree(root: bytes, run: RunContext) -> TreeMap:
    """Walk ``root`` (a resolved path) and number everything under it on its file system."""
    root_st = os.stat(root)
    if stat.S_ISDIR(root_st.st_mode):
        top = DirectoryNode(ROOTINO, ROOTINO, root, inode_info_from_stat(root_st))
    else:
        # A single path: the dump's root is its directory, holding that one entry.
        parent, name = os.path.split(root)
        parent_st = os.stat(parent)
        top = DirectoryNode(ROOTINO, ROOTINO, parent, inode_info_from_stat(parent_st), only_name=name)
    tree = TreeMap(root_path=root)
    device = root_st.st_dev
    hard_links: dict[int, int] = {}
    queue = deque([top])
    run.reporter.phase("pass I-II: mapping")
    while queue:
        node = queue.popleft()
        tree.directories.append(node)
        entries = [(node.ino, DT_DIR, b"."), (node.parent_ino, DT_DIR, b"..")]
        for name, st in _read_directory(node, run):
            if stat.S_ISDIR(st.st_mode):
                ino = tree.next_ino
                tree.next_ino += 1
                child = DirectoryNode(
                    ino,
                    node.ino,
                    os.path.join(node.path, name),
                    inode_info_from_stat(st),
                    mount_point=st.st_dev != device,
                )
                if not times_fit_format(child.info):
                    warn_clamped_time(run, child.path)
                queue.append(child)
            elif st.st_dev != device:
                continue  # a file bind-mounted from another file system: not ours to dump
            elif st.st_nlink > 1 and st.st_ino in hard_links:
                ino = hard_links[st.st_ino]
            else:
                ino = tree.next_ino
                tree.next_ino += 1
                if st.st_nlink > 1:
                    hard_links[st.st_ino] = ino
                tree.files += 1
                tree.estimated_bytes += _estimate_file_blocks(st) * TP_BSIZE
            entries.append((ino, dtype_of_mode(st.st_mode), name))
        node.contents = pack_directory(entries)
        node.info.size = len(node.contents)
        tree.estimated_bytes += TP_BSIZE + len(node.contents)
    if tree.next_ino > 0xFFFFFFFF:
        raise OverflowError("more than 2**32 inodes: beyond what the dump format can number")
    return tree


def _read_directory(node: DirectoryNode, run: RunContext) -> list[tuple[bytes, os.stat_result]]:
    """The (name, lstat) pairs of a directory, sorted by name; unreadable ones are warned about.

    The directory is read through a descriptor, which also gives its chattr flags.
    """
    if node.mount_point:
        return []
    found = []
    try:
        try:
            dir_fd = os.open(node.path, _OPEN_DIRECTORY | _O_NOATIME)
        except PermissionError:
            dir_fd = os.open(node.path, _OPEN_DIRECTORY)  # O_NOATIME needs ownership
    except OSError as err:
        run.warn(f"cannot read directory {_show(node.path)}: {err.strerror}; dumped empty")
        return []
    try:
        node.info.flags = read_inode_flags(dir_fd)
        with os.scandir(dir_fd) as it:
            for entry in it:
                name = os.fsencode(entry.name)
                if node.only_name is not None and name != node.only_name:
                    continue
                try:
                    found.append((name, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue  # gone between readdir and stat: it was never there for us
                except OSError as err:
                    run.warn(f"cannot stat {_show(os.path.join(node.path, name))}: {err.strerror}")
    except OSError as err:
        run.warn(f"cannot read directory {_show(node.path)}: {err.strerror}; dumped empty")
        return []
    finally:
        os.close(dir_fd)
    found.sort(key=lambda pair: pair[0])
    return found


def warn_clamped_time(run: RunContext, path: bytes) -> None:
    run.warn(f"{_show(path)}: a time outside 1970-2106 cannot be stored in the dump format; clamped")


def _show(path: bytes) -> str:
    return os.fsdecode(path)
