"""``restore -C``: compare a dump with a tree and say, entry by entry, what differs.

The dump is read once, front to back, as a restore reads it: stage 1
(catalog.py) reads the directories and selects the PATHs; each directory on
media is then compared with the tree's, its attributes and the names only
the tree has; then every other inode, in media order, is compared while its
data streams past, block by block against the tree's file, never held whole.

Compared: presence, type, mode bits, owner, group, size, mtime (to the
resolution the media keeps), content, symlink targets, device numbers and
hard links. Not compared: atime and ctime (reading moves one, nothing can
set the other), directory sizes (the format's directories are not the file
system's), extended attributes and inode flags.

The tree is only ever read: directories are opened from their parent with
O_NOFOLLOW, names are lstat'ed, files opened read-only, all with O_NOATIME
where the kernel allows, so nothing is followed through a symbolic link and
no atime moves (but readlink may count as an access of a symlink).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ndmptools.engine.errors import TargetError
from ndmptools.engine.options import CompareOptions
from ndmptools.engine.progress import RunContext, RunStats
from ndmptools.engine.restore import type_name
from ndmptools.engine.restore.catalog import (
    Catalog,
    Link,
    MediaDirectories,
    build_catalog,
    read_directories,
    show,
)
from ndmptools.engine.restore.direct import normalize
from ndmptools.engine.restore.origin import original_location, single_entry
from ndmptools.engine.restore.target import OpenDirectories, Refused
from ndmptools.errors import FormatError
from ndmptools.format.constants import ROOTINO, TP_BSIZE
from ndmptools.format.dirent import parse_directory
from ndmptools.format.header import Header, InodeInfo
from ndmptools.format.reader import DumpReader
from ndmptools.media.base import Medium
from ndmptools.state.history import History

_O_NOATIME = getattr(os, "O_NOATIME", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | _O_NOATIME
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ_CHUNK = 1 << 20
_PATH_MAX = 4096

# The kinds of difference, in the words of the JSON document.
ONLY_ON_MEDIA = "only-on-media"
ONLY_IN_TREE = "only-in-tree"
TYPE = "type"
MODE = "mode"
OWNER = "owner"
GROUP = "group"
SIZE = "size"
MTIME = "mtime"
CONTENT = "content"
HOLES = "holes"
SYMLINK = "symlink"
DEVICE = "device"
HARDLINK = "hardlink"


def _when(ns: int, fraction: bool) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    shown = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    return f"{shown}.{rest:09d}" if fraction else shown


@dataclass(frozen=True)
class Difference:
    """One way an entry of the tree is not what the dump holds; ``media`` and ``tree`` show the values."""

    path: str
    kind: str
    media: object = None
    tree: object = None

    def what(self) -> str:
        kind, media, tree = self.kind, self.media, self.tree
        if kind == ONLY_ON_MEDIA:
            return "only on media"
        if kind == ONLY_IN_TREE:
            return "only in the tree"
        if kind == CONTENT:
            return "content differs"
        if kind == HOLES:
            return "holes differ (a hole on media, data in the tree)"
        if kind == MTIME:
            fraction = bool(media % 1_000_000_000 or tree % 1_000_000_000)
            return f"mtime {_when(media, fraction)} != {_when(tree, fraction)}"
        if kind == SYMLINK:
            return f"symlink target {media!r} != {tree!r}"
        if kind == HARDLINK:
            if media is not None:
                return f"a hard link of {media} on media, another file in the tree"
            return f"another file on media, a hard link of {tree} in the tree"
        return f"{kind} {media} != {tree}"

    def describe(self) -> str:
        return f"{self.path}: {self.what()}"

    def as_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "media": self.media, "tree": self.tree}


@dataclass
class CompareResult:
    tree: str
    dump_date: int
    level: int
    filesys: str
    host: str
    compared: int  # entries of the dump compared with the tree
    differences: int
    kinds: dict[str, int]
    stats: RunStats

    def as_dict(self) -> dict:
        return {
            "tree": self.tree,
            "dump_date": self.dump_date,
            "level": self.level,
            "filesys": self.filesys,
            "host": self.host,
            "counts": {
                "compared": self.compared,
                "differences": self.differences,
                "by_kind": dict(sorted(self.kinds.items())),
            },
            "bytes": self.stats.bytes,
            "seconds": round(self.stats.seconds, 3),
            "warnings": self.stats.warnings,
        }


def time_resolution_ns(info: InodeInfo) -> int:
    """The unit the media kept this inode's times in: 1 ns, 1 µs, or 1 s (Linux dump writes seconds).

    Read from the times themselves: the header keeps microseconds, and
    ndmptools adds the nanoseconds under them; a sub-second part of zero in
    all three times means there was none to keep.
    """
    times = (info.atime_ns, info.mtime_ns, info.ctime_ns)
    if any(t % 1000 for t in times):
        return 1
    if any(t % 1_000_000_000 for t in times):
        return 1000
    return 1_000_000_000


@dataclass
class _TreeFile:
    """One regular file of the tree whose content is compared with the media's."""

    path: str
    fd: int
    st: os.stat_result
    differs: bool = False
    data_in_hole: bool = False  # data in a whole block of the tree where the media has a hole
    error: OSError | None = None
    done: bool = False  # nothing more to check: it differs, or it cannot be read

    def check_data(self, offset: int, expected: bytes) -> None:
        got = self._read(offset, len(expected))
        if got is not None and got != expected:
            self.differs = self.done = True

    def check_hole(self, offset: int, length: int) -> None:
        """A hole on media reads as zeros: the tree must hold zeros there, as a hole or as data."""
        end = offset + length
        position = offset
        block = self.st.st_blksize or 4096
        while position < end and not self.done:
            try:
                start = os.lseek(self.fd, position, os.SEEK_DATA)
                stop = min(os.lseek(self.fd, start, os.SEEK_HOLE), end)
            except OSError as err:
                if err.errno == errno.ENXIO:
                    return  # no data from here to the end of the file: zeros
                start, stop, block = position, end, 0  # holes cannot be asked for: read it all
            if start >= end:
                return
            if block and -(-start // block) * block + block <= stop:
                self.data_in_hole = True  # a whole block of the tree's is data where the media has none
            for at in range(start, stop, _READ_CHUNK):
                got = self._read(at, min(_READ_CHUNK, stop - at))
                if got is None:
                    return
                if got.count(0) != len(got):
                    self.differs = self.done = True
                    return
            position = stop

    def reports_holes(self) -> bool:
        """Whether this file system shows holes: one is seen, or the file has no room for any."""
        try:
            return (
                os.lseek(self.fd, 0, os.SEEK_HOLE) < self.st.st_size
                or self.st.st_blocks * 512 >= self.st.st_size
            )
        except OSError:
            return False

    def _read(self, offset: int, length: int) -> bytes | None:
        pieces = []
        try:
            while length:
                got = os.pread(self.fd, min(length, _READ_CHUNK), offset)
                if not got:
                    break
                pieces.append(got)
                offset += len(got)
                length -= len(got)
        except OSError as err:
            self.error, self.done = err, True
            return None
        data = b"".join(pieces)
        if length:
            self.differs = self.done = True  # shorter than its size said: it changed
            return None
        return data


@dataclass(slots=True)
class _Found:
    """A name of a media inode, and what the tree has there."""

    link: Link
    path: str
    st: os.stat_result


class _ContentCheck:
    """A DataSink: the media's data of one file, checked against its files in the tree."""

    def __init__(self, files: list[_TreeFile]) -> None:
        self.files = files

    def data(self, offset: int, pieces: list[memoryview]) -> None:
        files = [f for f in self.files if not f.done]
        if files:
            expected = b"".join(pieces)
            for f in files:
                f.check_data(offset, expected)

    def hole(self, offset: int, length: int) -> None:
        for f in self.files:
            if not f.done:
                f.check_hole(offset, length)


class Comparer:
    """The dump's entries (in ``catalog``) against the tree in ``tree``, one difference at a time."""

    def __init__(
        self,
        catalog: Catalog,
        media: MediaDirectories,
        reader: DumpReader,
        tree: OpenDirectories,
        run: RunContext,
        emit: Callable[[Difference], None],
        roots: list[bytes],
    ) -> None:
        self.catalog = catalog
        self.media = media
        self.reader = reader
        self.tree = tree
        self.run = run
        self.emit = emit
        self.roots = roots  # the selected subtrees: wholly compared, their names checked both ways
        self.failed_dirs: set[int] = set()  # no directory in the tree here: nothing under it is compared
        self.compared = 0
        self.kinds: Counter[str] = Counter()
        self._tree_links: dict[tuple[int, int], tuple[int, str]] = {}  # a tree inode with links -> media
        self._file_flags = _FILE_FLAGS | _O_NOATIME
        self._progress_offset = 0

    @property
    def differences(self) -> int:
        return sum(self.kinds.values())

    def differ(self, path: str, kind: str, media: object = None, tree: object = None) -> None:
        self.kinds[kind] += 1
        self.emit(Difference(path, kind, media, tree))

    def _wholly(self, path: bytes) -> bool:
        return any(not root or path == root or path.startswith(root + b"/") for root in self.roots)

    # -- directories ----------------------------------------------------------------------

    def compare_directories(self) -> None:
        self.run.reporter.phase("compare: directories")
        for directory in self.catalog.directories:
            path = show(directory.path)
            if directory.ino == ROOTINO:
                st = os.fstat(self.tree.root_fd)
            else:
                if directory.parent in self.failed_dirs:
                    self.failed_dirs.add(directory.ino)
                    continue
                st = self._lstat(directory.parent, directory.name, path)
                if st is None or not self._same_type(path, directory.info, st):
                    self.failed_dirs.add(directory.ino)
                    continue
                self.tree.register(directory.ino, directory.parent, directory.name)
            if not self._wholly(directory.path):
                continue  # a directory above a PATH: only the way down to it
            self.compared += 1
            self._compare_attributes(path, directory.info, st)
            self._only_in_tree(directory.ino, directory.path)

    def _only_in_tree(self, ino: int, path: bytes) -> None:
        """The names the tree's directory holds that the media's does not list."""
        try:
            with self.tree.directory(ino) as fd:
                names = os.listdir(fd)
        except (Refused, OSError) as why:
            self.run.warn(f"{show(path)}: {_reason(why)}; nothing under it is compared")
            self.failed_dirs.add(ino)
            return
        entries, _ = parse_directory(self.media.contents.get(ino, b""))
        listed = {e.name for e in entries}
        for name in sorted(os.fsencode(n) for n in names):
            if name not in listed:
                self.differ(show(path + b"/" + name if path else name), ONLY_IN_TREE)

    # -- one name ------------------------------------------------------------------------------

    def _lstat(self, parent: int, name: bytes, path: str) -> os.stat_result | None:
        """The tree's entry at ``name`` in directory ``parent``, never followed; None when not there."""
        try:
            with self.tree.directory(parent) as dir_fd:
                return os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            self.differ(path, ONLY_ON_MEDIA)
        except Refused as why:
            self.failed_dirs.add(parent)
            self.run.warn(f"{show(self.catalog.by_ino[parent].path)}: {why}; nothing under it is compared")
        except OSError as err:
            self.run.warn(f"{path}: cannot read it: {err.strerror}; not compared")
        return None

    def _same_type(self, path: str, info: InodeInfo, st: os.stat_result) -> bool:
        if stat.S_IFMT(st.st_mode) == info.file_type:
            return True
        self.differ(path, TYPE, type_name(info.mode), type_name(st.st_mode))
        return False

    def _compare_attributes(self, path: str, info: InodeInfo, st: os.stat_result) -> None:
        if not info.is_symlink and stat.S_IMODE(info.mode) != stat.S_IMODE(st.st_mode):
            self.differ(path, MODE, f"{stat.S_IMODE(info.mode):o}", f"{stat.S_IMODE(st.st_mode):o}")
        if info.uid != st.st_uid:
            self.differ(path, OWNER, info.uid, st.st_uid)
        if info.gid != st.st_gid:
            self.differ(path, GROUP, info.gid, st.st_gid)
        resolution = time_resolution_ns(info)
        if info.mtime_ns // resolution != st.st_mtime_ns // resolution:
            self.differ(path, MTIME, info.mtime_ns, st.st_mtime_ns)
        if info.is_regular and info.size != st.st_size:
            self.differ(path, SIZE, info.size, st.st_size)
        if info.is_device:
            media = f"{info.rdev_major}:{info.rdev_minor}"
            tree = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            if media != tree:
                self.differ(path, DEVICE, media, tree)

    # -- the other inodes, in media order ----------------------------------------------------

    def compare_files(self) -> None:
        self.run.reporter.phase("compare: files")
        header = self.catalog.first_file
        try:
            while header is not None:
                self._compare_inode(header)
                self._report_progress()
                header = self.reader.next_inode()
        finally:
            self._report_progress()
        self._account_for_missing()

    def _report_progress(self) -> None:
        read = self.reader.blocks.bytes_from_medium
        self.run.reporter.advance(read - self._progress_offset)
        self._progress_offset = read

    def _compare_inode(self, header: Header) -> None:
        ino, info = header.inumber, header.inode
        links = [link for link in self.catalog.links.pop(ino, ()) if link.parent not in self.failed_dirs]
        found = self._tree_inodes(info, links)
        for entry in found:
            self._compare_attributes(entry.path, info, entry.st)
            self._check_tree_link(ino, entry)
        try:
            if found and info.is_regular:
                self._compare_content(header, [e for e in found if e.st.st_size == info.size])
            elif found and info.is_symlink:
                self._compare_symlink(header, found)
            else:
                self.reader.skip_data(header)
        finally:
            self.reader.read_attributes(ino)

    def _tree_inodes(self, info: InodeInfo, links: list[Link]) -> list[_Found]:
        """The tree's inodes for the names of one media inode: one, unless a hard link was broken."""
        found: dict[tuple[int, int], _Found] = {}
        for link in links:
            path = show(self.catalog.path_of(link))
            st = self._lstat(link.parent, link.name, path)
            if st is None or not self._same_type(path, info, st):
                continue
            self.compared += 1
            key = (st.st_dev, st.st_ino)
            if key in found:
                continue
            if found:
                self.differ(path, HARDLINK, next(iter(found.values())).path, None)
            found[key] = _Found(link, path, st)
        return list(found.values())

    def _check_tree_link(self, ino: int, entry: _Found) -> None:
        """Separate inodes on media must be separate in the tree: a link made since is a difference."""
        if entry.st.st_nlink < 2:
            return
        seen = self._tree_links.setdefault((entry.st.st_dev, entry.st.st_ino), (ino, entry.path))
        if seen[0] != ino:
            self.differ(entry.path, HARDLINK, None, seen[1])

    def _compare_content(self, header: Header, same_size: list[_Found]) -> None:
        files = []
        try:
            for entry in same_size:
                opened = self._open_file(entry)
                if opened is not None:
                    files.append(opened)
            if not files:
                self.reader.skip_data(header)
                return
            complete = self.reader.read_data(header, _ContentCheck(files))
            if not complete:
                self.run.warn(f"{files[0].path}: its data is incomplete on media; compared in part")
            for f in files:
                if f.error is not None:
                    self.run.warn(f"{f.path}: cannot read it: {f.error.strerror}; content not compared")
                elif f.differs:
                    self.differ(f.path, CONTENT)
                elif f.data_in_hole and complete and f.reports_holes():
                    self.differ(f.path, HOLES, "hole", "data")
        finally:
            for f in files:
                os.close(f.fd)

    def _open_file(self, entry: _Found) -> _TreeFile | None:
        try:
            with self.tree.directory(entry.link.parent) as dir_fd:
                try:
                    fd = os.open(entry.link.name, self._file_flags, dir_fd=dir_fd)
                except PermissionError as err:
                    if err.errno != errno.EPERM or not self._file_flags & _O_NOATIME:
                        raise
                    self._file_flags &= ~_O_NOATIME  # O_NOATIME needs ownership or CAP_FOWNER
                    fd = os.open(entry.link.name, self._file_flags, dir_fd=dir_fd)
        except (Refused, OSError) as why:
            self.run.warn(f"{entry.path}: cannot open it: {_reason(why)}; content not compared")
            return None
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (entry.st.st_dev, entry.st.st_ino):
            os.close(fd)
            self.run.warn(f"{entry.path}: replaced while being compared; content not compared")
            return None
        return _TreeFile(entry.path, fd, now)

    def _compare_symlink(self, header: Header, found: list[_Found]) -> None:
        data, complete = self.reader.read_small(header)
        target = data[: header.inode.size]
        if not complete or not target or b"\0" in target or len(target) >= _PATH_MAX:
            self.run.warn(f"{found[0].path}: damaged symbolic link on media; its target is not compared")
            return
        for entry in found:
            try:
                with self.tree.directory(entry.link.parent) as dir_fd:
                    link_target = os.readlink(entry.link.name, dir_fd=dir_fd)
            except (Refused, OSError) as why:
                self.run.warn(f"{entry.path}: cannot read the link: {_reason(why)}; target not compared")
                continue
            if link_target != target:
                self.differ(entry.path, SYMLINK, show(target), show(link_target))

    def _account_for_missing(self) -> None:
        """Names whose inode never came on media: the warning a restore gives."""
        dumped = self.catalog.volume.dumped
        for ino, links in self.catalog.links.items():
            links = [link for link in links if link.parent not in self.failed_dirs]
            if links and ino in dumped:
                path = show(self.catalog.path_of(links[0]))
                self.run.warn(f"{path}: listed in its directory but not on media")
        self.catalog.links.clear()


def _reason(why: BaseException) -> str:
    if isinstance(why, OSError) and why.strerror:
        return why.strerror
    return str(why)


def _open_tree(path: str) -> OpenDirectories:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        try:
            root_fd = os.open(path, flags | _O_NOATIME)
        except PermissionError:
            root_fd = os.open(path, flags)
    except OSError as err:
        raise TargetError(f"cannot compare with {path}: {err.strerror}") from None
    return OpenDirectories(root_fd, _DIR_FLAGS)


def run_compare(
    options: CompareOptions,
    medium: Medium,
    run: RunContext,
    history: History | None,
    emit: Callable[[Difference], None],
) -> CompareResult:
    """Compare the dump on ``medium`` with the tree at ``options.tree`` (where it was taken from).

    Every difference goes to ``emit`` as it is found. In an incremental, only
    the inodes on this dump are compared: the others did not change.
    """
    reader = DumpReader(medium, run.warn)
    run.reporter.phase("stage 1: catalog", total_bytes=medium.size_hint)
    volume = reader.read_volume_start()
    where = options.tree
    if where is None:
        where = original_location(volume, history)
        run.note(f"comparing with {where}, where the dump was taken from")
    tree = _open_tree(where)
    try:
        media = read_directories(reader, run, volume)
        paths = options.paths
        if not paths:
            one = single_entry(volume, parse_directory(media.contents[ROOTINO])[0], history)
            if one is not None:
                paths = (os.fsdecode(one),)  # a dump of one file: its directory holds more
        catalog = build_catalog(media, paths, run)
        roots = [normalize(p) for p in paths] if paths else [b""]
        comparer = Comparer(catalog, media, reader, tree, run, emit, roots)
        comparer.compare_directories()
        try:
            comparer.compare_files()
        except FormatError as err:
            raise FormatError(
                f"{err.message}; {comparer.compared} entries were compared before it, the rest is not"
            ) from None
    finally:
        tree.close()
    header = volume.header
    run.stats.entries = comparer.compared
    run.stats.bytes = reader.blocks.blocks_read * TP_BSIZE
    run.stats.stop()
    return CompareResult(
        tree=where,
        dump_date=header.date,
        level=header.level,
        filesys=os.fsdecode(header.filesys),
        host=os.fsdecode(header.host),
        compared=comparer.compared,
        differences=comparer.differences,
        kinds=dict(comparer.kinds),
        stats=run.stats,
    )
