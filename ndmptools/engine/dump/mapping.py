"""Passes I and II: walk the tree once, number its inodes and build its directories.

Inode numbers on media are dense: the dumped path is ROOTINO (2) and every
other entry gets the next number the first time the walk meets it, so hard
links share one. The walk is breadth-first with names sorted, which makes the
numbering deterministic and lets pass IV find the files again in ascending
inode order by walking the same directories in the same order.

Per entry the map keeps only its packed directory record (a few dozen
bytes); per directory its path and metadata. That keeps a dump of a million
files within a small, predictable memory budget.

The walk stays on the dumped path's file system: a file system mounted
below it is not crossed but backed up as a symbolic link to where it is
mounted (as ONTAP backs up a junction), and an incremental leaves out what
carries the nodump flag (chattr +d) and everything below a directory that
does, as Linux dump does from level 1 up.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from array import array
from collections import deque
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from ndmptools.engine.dump.marks import MarkFilter
from ndmptools.engine.fsinfo import mount_points_below
from ndmptools.engine.metadata import (
    FS_NODUMP_FL,
    inode_info_from_stat,
    read_inode_flags,
    read_project_id,
    read_xattrs,
    times_fit_format,
)
from ndmptools.engine.progress import RunContext
from ndmptools.engine.statx import STATX_ATTR_NODUMP, birth_time_ns, inode_attributes
from ndmptools.format.constants import DT_DIR, DT_LNK, ROOTINO, TP_BSIZE, TP_NINDIR
from ndmptools.format.dirent import pack_directory
from ndmptools.format.header import InodeInfo, dtype_of_mode
from ndmptools.state.history import InodeNumbers

_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NOATIME = getattr(os, "O_NOATIME", 0)  # reading a directory must not move its atime
_DIRECTORY_KEY = 1 << 62  # in the inode map, keys of directories (mount points use 1 << 63)
MAX_NAMED_MOUNTS = 20  # mount points named in the run's note; the rest are counted


@dataclass(slots=True)
class DirectoryNode:
    """One directory to dump: where it is, what it holds (packed), and its inode."""

    ino: int
    parent_ino: int
    path: bytes
    info: InodeInfo
    only_name: bytes | None = None  # a single-path dump: the one entry to keep
    contents: bytes = b""  # BSD directory data, set by the walk
    parent_index: int = -1  # in TreeMap.directories
    dump: bool = True  # written to media (an incremental writes only changed ones and their ancestors)
    xattrs: list[tuple[bytes, bytes]] = field(default_factory=list)  # read with its flags, for pass III
    changed: bool = True  # an incremental: changed since the base (decided once its flags are read)
    nodump: bool = False  # an incremental: it or a directory above it has the nodump flag


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
    mount_links: dict[int, tuple[bytes, InodeInfo]] = field(default_factory=dict)  # ino -> (target, inode)
    nodump_files: int = 0  # changed files an incremental left out for their nodump flag
    nodump_directories: int = 0  # directories it left out, with all below them, for theirs
    excluded: int = 0  # entries EXCLUDE left out (with all below the directories among them)

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


@dataclass(frozen=True)
class LiveTree:
    """Where the walked tree (a snapshot, or the live tree itself) lies in the live tree, and its mounts.

    A mount point is backed up as a link to its path in the live tree, which
    is what a user sees; a snapshot shows none of the live tree's mounts
    (they are empty directories there), so they come from the mount table.
    """

    walk_root: bytes
    live_root: bytes
    mount_points: tuple[bytes, ...] = ()  # live paths, below live_root

    @classmethod
    def of(cls, walk_root: bytes, live_root: bytes) -> LiveTree:
        """The mount points below ``live_root`` as the mount table has them now."""
        found = mount_points_below(os.fsdecode(live_root))
        return cls(walk_root, live_root, tuple(os.fsencode(m) for m in found))

    def live_path(self, walk_path: bytes) -> bytes:
        return os.path.normpath(os.path.join(self.live_root, os.path.relpath(walk_path, self.walk_root)))

    def mount_names(self) -> dict[bytes, frozenset[bytes]]:
        """Walk directory -> names in it that are mount points: one look-up per directory read."""
        names: dict[bytes, set[bytes]] = {}
        for live in self.mount_points:
            walk = os.path.normpath(os.path.join(self.walk_root, os.path.relpath(live, self.live_root)))
            parent, name = os.path.split(walk)
            names.setdefault(parent, set()).add(name)
        return {parent: frozenset(found) for parent, found in names.items()}


def map_tree(
    root: bytes,
    run: RunContext,
    base: Base | None = None,
    exclude_at_root: tuple[bytes, ...] = (),
    marks: MarkFilter | None = None,
    live: LiveTree | None = None,
    exclude: tuple[str, ...] = (),
    ignore_ctime: bool = False,
) -> TreeMap:
    """Walk ``root`` (a resolved path) and number everything under it on its file system.

    A level 0 numbers every inode afresh, in walk order. An incremental keeps
    its base's number for every inode the base had (so restore -r recognises
    renames and deletions), gives new inodes numbers above the base's, and
    selects what changed since the base or is new to it: those entries, the
    directories on the path to them, and the root. It leaves out an entry
    with the nodump flag, and all below a directory with it: they stay in
    the inode map, so restore -r keeps what an earlier dump gave them. With
    ``marks``, a regular file under a running restore is left out as if it
    were not there, and one an earlier dump left out is selected whatever
    its times (dump/marks.py). ``live`` says where ``root`` is in the live
    tree (``root`` itself by default) and which directories are mount points.
    ``exclude`` (EXCLUDE) leaves out every entry whose name, or path below
    ``root`` for a pattern with a '/', matches: it is not in its directory,
    as if it were not there. ``ignore_ctime`` (IGNORE_CTIME) has an
    incremental select by mtime alone.
    """
    excluded = _exclusion(exclude)
    if live is None:
        live = LiveTree.of(root, root)
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
    mount_names = live.mount_names()
    hard_links: dict[int, int] = {}
    changed_links: set[int] = set()
    nodump_links: set[int] = set()  # hard-linked files with a name below a nodump directory
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
        listing = _read_directory(node, run)
        if base is not None:
            if not node.nodump and node.info.flags & FS_NODUMP_FL and node.only_name is None:
                node.nodump = True  # and so is all below it: only its inode numbers are kept
                tree.nodump_directories += 1
            if node.changed and not node.nodump:
                _needed(tree, index)
        mounts_here = mount_names.get(node.path, ())
        for name, st in listing:
            if index == 0 and name in exclude_at_root:
                continue  # the snapshots themselves, in the snapshot
            if excluded is not None and excluded(b"" if index == 0 else node.path[len(top.path) + 1 :], name):
                tree.excluded += 1
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            mounted = st.st_dev != device or name in mounts_here
            if mounted and not is_dir:
                continue  # a file bind-mounted from another file system: not ours to dump
            if mounted:
                target = live.live_path(os.path.join(node.path, name))
                key = _mount_point_key(target)
            elif is_dir:
                # A file system reuses a freed inode for whatever comes next: a directory's key
                # differs from a file's, so an inode number that changed kind gets a new number.
                key = st.st_ino | _DIRECTORY_KEY
            else:
                key = st.st_ino
            base_ino = known.get(key) if base is not None else None  # looked up once an entry
            if (
                marks is not None
                and not node.nodump  # nothing below a nodump directory is dumped anyway
                and stat.S_ISREG(st.st_mode)
                and not (st.st_nlink > 1 and st.st_ino in hard_links)  # its first name decided
                and not (base is not None and _unchanged_since_base(st, since, base_ino, forced))
                and (st.st_ino in left_out or marks.leaves_out(node.path, name, st.st_ino))
            ):
                if st.st_nlink > 1:
                    left_out.add(st.st_ino)  # every other name of it stays out too
                continue
            fresh = False  # new since the base: on media whatever its times say
            if not is_dir and st.st_nlink > 1 and key in hard_links:
                ino = hard_links[key]
                new_inode = False
            else:
                ino = base_ino
                if ino is None or ino == ROOTINO:
                    ino = tree.next_ino
                    tree.next_ino += 1
                    fresh = base is not None
                fs_inodes.append(key)
                media_inodes.append(ino)
                new_inode = True
                if not mounted and not is_dir and st.st_nlink > 1:
                    hard_links[key] = ino
            if mounted:
                # Another file system: not crossed, but kept as a link to where it is mounted.
                tree.mount_links[ino] = (target, _link_info(st, target))
                tree.files += 1
                if base is None or (fresh and not node.nodump):
                    tree.estimated_bytes += 2 * TP_BSIZE  # its header and its target
                    if base is not None:
                        tree.files_to_dump.append((ino, index, name))
                        _needed(tree, index)
                entries.append((ino, DT_LNK, name))
                continue
            changed = (
                base is None
                or fresh
                or st.st_mtime_ns >= since
                or (st.st_ctime_ns >= since and not ignore_ctime)
                or (bool(forced) and not is_dir and key in forced)
            )
            if is_dir:
                child = DirectoryNode(
                    ino,
                    node.ino,
                    os.path.join(node.path, name),
                    inode_info_from_stat(st),
                    parent_index=index,
                    dump=base is None,  # an incremental decides once the directory's flags are read
                    changed=changed,
                    nodump=node.nodump,
                )
                if not times_fit_format(child.info):
                    warn_clamped_time(run, child.path)
                queue.append(child)
            elif node.nodump:
                if new_inode:
                    tree.files += 1
                if st.st_nlink > 1:
                    nodump_links.add(ino)  # a name below a nodump directory keeps it off media
            elif new_inode:
                tree.files += 1
                if changed and base is not None and _has_nodump_flag(node.path, name):
                    tree.nodump_files += 1  # only the changed are asked: no call per unchanged file
                elif changed:
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
    if tree.next_ino > 0xFFFFFFFF:
        raise OverflowError("more than 2**32 inodes: beyond what the dump format can number")
    tree.directories[0].dump = True  # the root is always on media
    if nodump_links:
        kept = [entry for entry in tree.files_to_dump if entry[0] not in nodump_links]
        tree.nodump_files += len(tree.files_to_dump) - len(kept)
        tree.files_to_dump = kept
    tree.files_to_dump.sort()
    tree.estimated_bytes += sum(TP_BSIZE + len(n.contents) for n in tree.directories if n.dump)
    if marks is not None:
        marks.finish()
    _note_left_out(tree, run)
    return tree


def _unchanged_since_base(st: os.stat_result, since: int, base_ino: int | None, forced: dict) -> bool:
    """A file of the base untouched since: no mark to look for (an incremental asks no listxattr of it).

    Setting a mark changes ctime; one set before the base was there for the
    base to see, which then left the file out, and such a file is in ``forced``.
    """
    return (
        st.st_ctime_ns < since
        and st.st_mtime_ns < since
        and st.st_ino not in forced
        and base_ino is not None  # the base had it (regular files' key is their inode number)
    )


def _exclusion(patterns: tuple[str, ...]):
    """``excluded(directory, name)`` for EXCLUDE ``patterns`` (directory relative to the root), or None."""
    if not patterns:
        return None
    by_name = [os.fsencode(p) for p in patterns if "/" not in p]
    by_path = [os.fsencode(p.strip("/")) for p in patterns if "/" in p]

    def excluded(directory: bytes, name: bytes) -> bool:
        if any(fnmatchcase(name, p) for p in by_name):
            return True
        if by_path:
            path = directory + b"/" + name if directory else name
            return any(fnmatchcase(path, p) for p in by_path)
        return False

    return excluded


def _has_nodump_flag(directory: bytes, name: bytes) -> bool:
    return bool(inode_attributes(os.path.join(directory, name)) & STATX_ATTR_NODUMP)


def _link_info(st: os.stat_result, target: bytes) -> InodeInfo:
    """A mount point's inode on media: a symbolic link to its path, owned and timed as the mounted root."""
    info = inode_info_from_stat(st, size=len(target))
    info.mode = stat.S_IFLNK | 0o777
    info.nlink = 1
    info.blocks = 0
    return info


def _note_left_out(tree: TreeMap, run: RunContext) -> None:
    """Say which mount points became links, and what the nodump flag kept off media."""
    if tree.mount_links:
        targets = sorted(os.fsdecode(target) for target, _ in tree.mount_links.values())
        shown = ", ".join(targets[:MAX_NAMED_MOUNTS])
        if len(targets) > MAX_NAMED_MOUNTS:
            shown += f" and {len(targets) - MAX_NAMED_MOUNTS:,} more"
        run.note(f"mount points not crossed, backed up as symbolic links to their paths: {shown}")
    if tree.nodump_files or tree.nodump_directories:
        parts = []
        if tree.nodump_files:
            parts.append(f"{tree.nodump_files:,} changed file{'s' if tree.nodump_files != 1 else ''}")
        if tree.nodump_directories:
            count = tree.nodump_directories
            below = "them" if count != 1 else "it"
            parts.append(f"{count:,} director{'ies' if count != 1 else 'y'} with everything below {below}")
        run.note(f"left out for the nodump flag (chattr +d): {' and '.join(parts)}")


def _mount_point_key(live_path: bytes) -> int:
    """A key for a mount point in the inode map, stable along a chain: its path in the live tree.

    Its inode belongs to another file system; a snapshot's path changes from dump to dump.
    """
    digest = hashlib.blake2b(live_path, digest_size=7).digest()
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
                name = entry.name.encode(_FS_ENCODING, _FS_ERRORS)  # os.fsencode, without its checks
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
