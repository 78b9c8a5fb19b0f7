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

import hashlib
import os
import stat
from array import array
from collections import deque
from dataclasses import dataclass, field

from ndmptools.engine.dump.marks import MarkFilter
from ndmptools.engine.metadata import (
    inode_info_from_stat,
    read_inode_flags,
    read_project_id,
    read_xattrs,
    times_fit_format,
)
from ndmptools.engine.progress import RunContext
from ndmptools.engine.statx import birth_time_ns
from ndmptools.format.constants import DT_DIR, ROOTINO, TP_BSIZE, TP_NINDIR
from ndmptools.format.dirent import pack_directory
from ndmptools.format.header import InodeInfo, dtype_of_mode
from ndmptools.state.history import InodeNumbers

_OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NOATIME = getattr(os, "O_NOATIME", 0)  # reading a directory must not move its atime
_DIRECTORY_KEY = 1 << 62  # in the inode map, keys of directories (mount points use 1 << 63)


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
    parent_index: int = -1  # in TreeMap.directories
    dump: bool = True  # written to media (an incremental writes only changed ones and their ancestors)
    xattrs: list[tuple[bytes, bytes]] = field(default_factory=list)  # read with its flags, for pass III


@dataclass(frozen=True)
class Base:
    """What an incremental needs of its base: since when, and how it numbered the files."""

    since_ns: int
    numbers: InodeNumbers
    maxino: int


@dataclass
class TreeMap:
    """The outcome of passes I and II."""

    root_path: bytes
    incremental: bool = False
    directories: list[DirectoryNode] = field(default_factory=list)  # breadth-first
    next_ino: int = ROOTINO + 1  # the next fresh inode number
    files: int = 0  # non-directory inodes on the file system
    estimated_bytes: int = 0
    fs_inodes: array = field(default_factory=lambda: array("Q"))  # with media_inodes: the inode map
    media_inodes: array = field(default_factory=lambda: array("I"))
    files_to_dump: list[tuple[int, int, bytes]] = field(default_factory=list)  # incremental: (ino, dir, name)

    @property
    def maxino(self) -> int:
        """One above the highest inode number on media (Linux dump's maxino)."""
        return self.next_ino

    def numbers(self) -> InodeNumbers:
        return InodeNumbers.from_pairs(self.fs_inodes, self.media_inodes)


def _estimate_file_blocks(st: os.stat_result) -> int:
    """Tape blocks a file will take: its header, its allocated data, and TS_ADDR headers."""
    data_blocks = -(-min(st.st_size, st.st_blocks * 512) // TP_BSIZE) if stat.S_ISREG(st.st_mode) else 1
    address_headers = -(-st.st_size // TP_BSIZE) // TP_NINDIR if stat.S_ISREG(st.st_mode) else 0
    return 1 + data_blocks + address_headers


def map_tree(
    root: bytes,
    run: RunContext,
    base: Base | None = None,
    exclude_at_root: tuple[bytes, ...] = (),
    marks: MarkFilter | None = None,
) -> TreeMap:
    """Walk ``root`` (a resolved path) and number everything under it on its file system.

    A level 0 numbers every inode afresh, in walk order. An incremental keeps
    its base's number for every inode the base had (so restore -r recognises
    renames and deletions), gives new inodes numbers above the base's, and
    selects what changed since the base: those entries, the directories on
    the path to them, and the root. With ``marks``, a regular file under a
    running restore is left out as if it were not there, and one an earlier
    dump left out is selected whatever its times (dump/marks.py).
    """
    root_st = os.stat(root)
    if stat.S_ISDIR(root_st.st_mode):
        top = DirectoryNode(ROOTINO, ROOTINO, root, inode_info_from_stat(root_st))
    else:
        # A single path: the dump's root is its directory, holding that one entry.
        parent, name = os.path.split(root)
        parent_st = os.stat(parent)
        root_st = parent_st
        top = DirectoryNode(ROOTINO, ROOTINO, parent, inode_info_from_stat(parent_st), only_name=name)
    tree = TreeMap(root_path=root, incremental=base is not None)
    if marks is not None:
        marks.start(top.path, top.only_name is not None)
    forced = marks.forced if marks is not None else {}
    if base is not None:
        tree.next_ino = max(base.maxino, ROOTINO + 1)
        since = base.since_ns
        known = base.numbers
    device = root_st.st_dev
    hard_links: dict[int, int] = {}
    changed_links: set[int] = set()
    left_out: set[int] = set()  # hard-linked files under restore, by inode
    fs_inodes, media_inodes = tree.fs_inodes, tree.media_inodes
    fs_inodes.append(root_st.st_ino | _DIRECTORY_KEY)
    media_inodes.append(ROOTINO)
    queue = deque([top])
    run.reporter.phase("pass I-II: mapping")
    while queue:
        node = queue.popleft()
        index = len(tree.directories)
        tree.directories.append(node)
        entries = [(node.ino, DT_DIR, b"."), (node.parent_ino, DT_DIR, b"..")]
        for name, st in _read_directory(node, run):
            if index == 0 and name in exclude_at_root:
                continue  # the snapshots themselves, in the snapshot
            is_dir = stat.S_ISDIR(st.st_mode)
            if not is_dir and st.st_dev != device:
                continue  # a file bind-mounted from another file system: not ours to dump
            if (
                marks is not None
                and stat.S_ISREG(st.st_mode)
                and not (st.st_nlink > 1 and st.st_ino in hard_links)  # its first name decided
                and (st.st_ino in left_out or marks.leaves_out(node.path, name, st.st_ino))
            ):
                if st.st_nlink > 1:
                    left_out.add(st.st_ino)  # every other name of it stays out too
                continue
            if is_dir:
                # A file system reuses a freed inode for whatever comes next: a directory's key
                # differs from a file's, so an inode number that changed kind gets a new number.
                key = _mount_point_key(node.path, name) if st.st_dev != device else st.st_ino | _DIRECTORY_KEY
            else:
                key = st.st_ino
            if not is_dir and st.st_nlink > 1 and key in hard_links:
                ino = hard_links[key]
                new_inode = False
            else:
                ino = known.get(key) if base is not None else None
                if ino is None or ino == ROOTINO:
                    ino = tree.next_ino
                    tree.next_ino += 1
                fs_inodes.append(key)
                media_inodes.append(ino)
                new_inode = True
                if not is_dir and st.st_nlink > 1:
                    hard_links[key] = ino
            changed = (
                base is None
                or st.st_mtime_ns >= since
                or st.st_ctime_ns >= since
                or (bool(forced) and not is_dir and key in forced)
            )
            if is_dir:
                child = DirectoryNode(
                    ino,
                    node.ino,
                    os.path.join(node.path, name),
                    inode_info_from_stat(st),
                    mount_point=st.st_dev != device,
                    parent_index=index,
                    dump=changed,
                )
                if not times_fit_format(child.info):
                    warn_clamped_time(run, child.path)
                if changed and base is not None:
                    _needed(tree, index)
                queue.append(child)
            elif new_inode:
                tree.files += 1
                if changed:
                    tree.estimated_bytes += _estimate_file_blocks(st) * TP_BSIZE
                    if base is not None:
                        tree.files_to_dump.append((ino, index, name))
                        _needed(tree, index)
                        if st.st_nlink > 1:
                            changed_links.add(ino)
            elif ino in changed_links:
                _needed(tree, index)  # every name of a changed file is on media, for restore -r
            entries.append((ino, dtype_of_mode(st.st_mode), name))
        node.contents = pack_directory(entries)
        node.info.size = len(node.contents)
        if node.dump:
            tree.estimated_bytes += TP_BSIZE + len(node.contents)
    if tree.next_ino > 0xFFFFFFFF:
        raise OverflowError("more than 2**32 inodes: beyond what the dump format can number")
    tree.directories[0].dump = True  # the root is always on media
    tree.files_to_dump.sort()
    if marks is not None:
        marks.finish()
    return tree


def _mount_point_key(parent: bytes, name: bytes) -> int:
    """A stable key for a mount point in the inode map: its inode belongs to another file system."""
    digest = hashlib.blake2b(os.path.join(parent, name), digest_size=7).digest()
    return (1 << 63) | int.from_bytes(digest, "big")


def _needed(tree: TreeMap, index: int) -> None:
    """Directory ``index`` and every one above it go on media (they lead to a changed entry)."""
    directories = tree.directories
    while index >= 0 and not directories[index].dump:
        directories[index].dump = True
        index = directories[index].parent_index


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
        node.info.birth_ns = birth_time_ns(b"", dir_fd)
        node.info.project_id = read_project_id(dir_fd)
        node.xattrs, problem = read_xattrs(dir_fd)
        if problem:
            run.warn(f"{_show(node.path)}: {problem}")
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
