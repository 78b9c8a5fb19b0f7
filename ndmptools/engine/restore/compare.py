"""``restore -C``: compare a dump with a tree and say, entry by entry, what differs.

The dump is read once, front to back, as a restore reads it: stage 1
(catalog.py) reads the directories and selects the PATHs; each directory on
media is then compared with the tree's, its attributes and the names only
the tree has; then every other inode, in media order, is compared while its
data streams past, block by block against the tree's file, never held whole.

Compared: presence, type, mode bits, owner, group, size, mtime (to the
resolution the media keeps), content, symlink targets, device numbers, hard
links, extended attributes and chattr flags. Extended attributes are
compared name by name and value by value in every namespace this process
can read (trusted.* needs CAP_SYS_ADMIN), POSIX ACLs by their entries; the
restore mark (restoremarks.MARK_XATTR) never counts, and a tree on a file
system without extended attributes has none. Flags count only where a
restore sets them (metadata.RESTORED_FLAGS: the others say how the file
system stores the inode), and only for files and directories: nothing reads
the flags of an entry that cannot be opened. The cost is one listxattr per
entry, and a getxattr per attribute only where either side has some.

Not compared: atime and ctime (reading moves one, nothing can set the
other), birth time (Linux cannot set it, so a restored file never has the
original's), project ids (a restore sets them only at a file system's root),
directory sizes (the format's directories are not the file system's).

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
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ndmptools.engine.errors import TargetError
from ndmptools.engine.metadata import RESTORED_FLAGS, flag_letters, read_inode_flags, xattr_path
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
from ndmptools.engine.restoremarks import MARK_XATTR
from ndmptools.errors import FormatError
from ndmptools.format.constants import ROOTINO, TP_BSIZE
from ndmptools.format.dirent import parse_directory
from ndmptools.format.header import Header, InodeInfo
from ndmptools.format.reader import DumpReader
from ndmptools.format.xattr import (
    ACL_ACCESS,
    ACL_DEFAULT,
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_USER,
    ACL_USER_OBJ,
    ReadAttributes,
    decode_areas,
    parse_acl,
)
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
XATTR = "xattr"  # an extended attribute (not an ACL): media and tree are NAME=VALUE, or None where absent
ACL = "acl"  # a POSIX ACL: media and tree in getfacl's short form, or None where absent
FLAGS = "flags"  # the chattr flags a restore sets, as lsattr's letters

# Shown of an extended attribute's value, at most: characters of text, bytes of anything else.
_SHOWN_TEXT = 64
_SHOWN_BYTES = 32
_MARK = os.fsencode(MARK_XATTR)
_TRUSTED = b"trusted."
# ext4 keeps a file's inline data (the inline_data feature) as the entry system.data of its in-inode
# area, which Linux dump copies; it is no attribute: listxattr never shows it, setxattr refuses it.
_NOT_ATTRIBUTES = {_MARK, b"system.data"}
_CAP_SYS_ADMIN = 21
_ACL_TAGS = {
    ACL_USER_OBJ: "u",
    ACL_USER: "u",
    ACL_GROUP_OBJ: "g",
    ACL_GROUP: "g",
    ACL_MASK: "m",
    ACL_OTHER: "o",
}


def xattr_value_text(value: bytes) -> str:
    """A value as ``getfattr -d`` shows one: "text" with escapes when it is text, else 0x and hex.

    Long values are cut, with their length and their CRC-32 (zlib: hashlib
    would load OpenSSL, megabytes for every compare), so that two long values
    that differ past the cut still look different.
    """
    try:
        text: str | None = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\n\0" for c in text):
        escaped = (
            text[:_SHOWN_TEXT]
            .replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\t", "\\t")
            .replace("\0", "\\0")
        )
        shown, cut = f'"{escaped}"', len(text) > _SHOWN_TEXT
    else:
        shown, cut = "0x" + value[:_SHOWN_BYTES].hex(), len(value) > _SHOWN_BYTES
    if cut:
        shown += f"... ({len(value):,} bytes, crc32 {zlib.crc32(value):08x})"
    return shown


def acl_text(value: bytes, default: bool = False) -> str:
    """An ACL (xattr form) in getfacl's short form, ids as numbers: ``u::rw-,u:1000:rw-,g::r--,o::r--``.

    The entries of a default ACL start with ``d:``, as setfacl takes them;
    a value that is no ACL is shown as bytes.
    """
    try:
        entries = parse_acl(value)
    except FormatError:
        return xattr_value_text(value)
    prefix = "d:" if default else ""
    parts = []
    for e in entries:
        tag = _ACL_TAGS.get(e.tag, f"{e.tag:#x}")
        qualifier = str(e.id) if e.tag in (ACL_USER, ACL_GROUP) else ""
        perms = "".join(letter if e.perm & bit else "-" for bit, letter in ((4, "r"), (2, "w"), (1, "x")))
        if e.perm & ~7:
            perms += f"+{e.perm & ~7:#x}"
        parts.append(f"{prefix}{tag}:{qualifier}:{perms}")
    return ",".join(parts)


def _same_value(name: bytes, media: bytes, tree: bytes) -> bool:
    """Equal values; ACLs by their entries, whatever their order or the ids of unnamed entries."""
    if media == tree:
        return True
    if name not in (ACL_ACCESS, ACL_DEFAULT):
        return False
    try:
        keys = [
            sorted((e.tag, e.perm, e.id if e.tag in (ACL_USER, ACL_GROUP) else 0) for e in parse_acl(v))
            for v in (media, tree)
        ]
    except FormatError:
        return False
    return keys[0] == keys[1]


def reads_trusted_attributes() -> bool:
    """Whether this process sees trusted.* attributes: CAP_SYS_ADMIN is in its effective set."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


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
    attribute: str | None = None  # the extended attribute's name, for XATTR (not in the JSON: in the values)

    def what(self) -> str:
        kind, media, tree = self.kind, self.media, self.tree
        if kind in (XATTR, ACL):
            what = "ACL" if kind == ACL else f"xattr {self.attribute}"
            if kind == XATTR:  # the name is in the values too: show it once
                cut = len(self.attribute or "") + 1
                media = None if media is None else str(media)[cut:]
                tree = None if tree is None else str(tree)[cut:]
            if tree is None:
                return f"{what} {media} only on media"
            if media is None:
                return f"{what} {tree} only in the tree"
            return f"{what} {media} != {tree}"
        if kind == FLAGS:
            return f"flags {media or '-'} != {tree or '-'}"
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
        self._reads_trusted = reads_trusted_attributes()  # else the tree lists no trusted.* to compare

    @property
    def differences(self) -> int:
        return sum(self.kinds.values())

    def differ(
        self, path: str, kind: str, media: object = None, tree: object = None, attribute: str | None = None
    ) -> None:
        self.kinds[kind] += 1
        self.emit(Difference(path, kind, media, tree, attribute))

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
            self._compare_directory(directory.ino, directory.path, directory.info)

    def _compare_directory(self, ino: int, path: bytes, info: InodeInfo) -> None:
        """A directory's extended attributes and flags, and the names only the tree's holds."""
        shown = show(path)
        try:
            with self.tree.directory(ino) as fd:
                media, complete = self._media_xattrs(shown, self.media.attributes.get(ino))
                self._compare_xattrs(shown, media, complete, fd)
                self._compare_flags(shown, info, fd)
                names = os.listdir(fd)
        except (Refused, OSError) as why:
            self.run.warn(f"{shown}: {_reason(why)}; nothing under it is compared")
            self.failed_dirs.add(ino)
            return
        self._only_in_tree(ino, path, names)

    def _only_in_tree(self, ino: int, path: bytes, names: list[str]) -> None:
        """The names the tree's directory holds that the media's does not list."""
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

    # -- extended attributes and flags -------------------------------------------------------

    def _media_xattrs(self, path: str, found: ReadAttributes | None) -> tuple[dict[bytes, bytes], bool]:
        """The media's attributes this process could see in the tree, and whether the media has them all.

        When it may not (an area it cannot read, a namespace nobody defined,
        values Linux dump does not copy), a name only in the tree is no
        difference: the media may have had it.
        """
        if found is None:
            return {}, True
        values = {
            name: value
            for name, value in found.attributes
            if name not in _NOT_ATTRIBUTES and (self._reads_trusted or not name.startswith(_TRUSTED))
        }
        complete = True
        if found.damaged:
            self.run.warn(
                f"{path}: an extended-attribute area on media is damaged; what it held is not compared"
            )
            complete = False
        if found.unknown_indexes:
            indexes = ", ".join(str(i) for i in sorted(set(found.unknown_indexes)))
            self.run.warn(
                f"{path}: extended attributes on media in a namespace nobody defined (index {indexes}); "
                "not compared"
            )
            complete = False
        if found.elsewhere:
            self.run.warn(
                f"{path}: {found.elsewhere} of its extended attributes are not on media (their values were "
                "outside the inode, where Linux dump does not look); not compared"
            )
            complete = False
        return values, complete

    def _compare_xattrs(
        self, path: str, media: dict[bytes, bytes], complete: bool, where: int | bytes
    ) -> None:
        """The tree's extended attributes at ``where`` (an fd, or a path not followed) against ``media``.

        One listxattr; a getxattr for each name the tree lists, none when it
        lists nothing.
        """
        follow = not isinstance(where, bytes)
        try:
            listed = os.listxattr(where, follow_symlinks=follow)
        except OSError as err:
            if err.errno != errno.ENOTSUP:
                self.run.warn(f"{path}: cannot list its extended attributes: {err.strerror}; not compared")
                return
            listed = []  # a file system without extended attributes: it has none
        in_tree = {os.fsencode(name) for name in listed}
        in_tree.discard(_MARK)
        if not in_tree and not media:
            return
        for name in sorted(in_tree | media.keys()):
            on_media = media.get(name)
            if name not in in_tree:
                self._xattr_differs(path, name, on_media, None)
                continue
            if on_media is None and not complete:
                continue
            try:
                value = os.getxattr(where, name, follow_symlinks=follow)
            except OSError as err:
                if err.errno == errno.ENODATA:  # removed since it was listed
                    if on_media is not None:
                        self._xattr_differs(path, name, on_media, None)
                else:
                    self.run.warn(
                        f"{path}: cannot read its extended attribute {show(name)}: {err.strerror}; "
                        "not compared"
                    )
                continue
            if on_media is None or not _same_value(name, on_media, value):
                self._xattr_differs(path, name, on_media, value)

    def _xattr_differs(self, path: str, name: bytes, media: bytes | None, tree: bytes | None) -> None:
        if name in (ACL_ACCESS, ACL_DEFAULT):
            default = name == ACL_DEFAULT
            self.differ(
                path,
                ACL,
                None if media is None else acl_text(media, default),
                None if tree is None else acl_text(tree, default),
            )
            return
        shown = show(name)
        self.differ(
            path,
            XATTR,
            None if media is None else f"{shown}={xattr_value_text(media)}",
            None if tree is None else f"{shown}={xattr_value_text(tree)}",
            attribute=shown,
        )

    def _compare_flags(self, path: str, info: InodeInfo, fd: int) -> None:
        media = info.flags & RESTORED_FLAGS
        tree = read_inode_flags(fd) & RESTORED_FLAGS
        if media != tree:
            self.differ(path, FLAGS, flag_letters(media), flag_letters(tree))

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
        opened: dict[str, _TreeFile] = {}  # regular files by path: their content, flags and attributes
        try:
            try:
                if found and info.is_regular:
                    for entry in found:
                        tree_file = self._open_file(entry, info.size)
                        if tree_file is not None:
                            opened[entry.path] = tree_file
                    self._compare_content(header, [f for f in opened.values() if f.st.st_size == info.size])
                elif found and info.is_symlink:
                    self._compare_symlink(header, found)
                else:
                    self.reader.skip_data(header)
            finally:
                areas = self.reader.read_attributes(ino)  # they follow the data on media
            if found:
                self._compare_inode_metadata(info, found, decode_areas(areas) if areas else None, opened)
        finally:
            for tree_file in opened.values():
                os.close(tree_file.fd)

    def _compare_inode_metadata(
        self, info: InodeInfo, found: list[_Found], areas: ReadAttributes | None, opened: dict[str, _TreeFile]
    ) -> None:
        """Extended attributes of each of the tree's inodes, and the flags of those open."""
        media, complete = self._media_xattrs(found[0].path, areas)
        for entry in found:
            tree_file = opened.get(entry.path)
            if tree_file is not None:
                self._compare_xattrs(entry.path, media, complete, tree_file.fd)
                self._compare_flags(entry.path, info, tree_file.fd)
                continue
            try:  # not a regular file, or one that could not be opened: read by name, never followed
                with self.tree.directory(entry.link.parent) as dir_fd:
                    self._compare_xattrs(entry.path, media, complete, xattr_path(dir_fd, entry.link.name))
            except (Refused, OSError) as why:
                self.run.warn(f"{entry.path}: {_reason(why)}; its extended attributes are not compared")

    def _tree_inodes(self, info: InodeInfo, links: list[Link]) -> list[_Found]:
        """The tree's inodes for the names of one media inode: one, unless a hard link was broken."""
        found: dict[tuple[int, int], _Found] = {}
        for link in links:
            path = show(self.catalog.path_of(link))
            st = self._lstat(link.parent, link.name, path)
            if st is not None and info.is_symlink and stat.S_ISDIR(st.st_mode) and self._mounted(link, st):
                self.compared += 1  # a file system mounted here: the dump keeps a link to it, not its tree
                continue
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

    def _mounted(self, link: Link, st: os.stat_result) -> bool:
        """Whether the tree's directory for ``link`` is another file system's root (a mount point)."""
        try:
            with self.tree.directory(link.parent) as dir_fd:
                return os.fstat(dir_fd).st_dev != st.st_dev
        except (Refused, OSError):
            return False

    def _check_tree_link(self, ino: int, entry: _Found) -> None:
        """Separate inodes on media must be separate in the tree: a link made since is a difference."""
        if entry.st.st_nlink < 2:
            return
        seen = self._tree_links.setdefault((entry.st.st_dev, entry.st.st_ino), (ino, entry.path))
        if seen[0] != ino:
            self.differ(entry.path, HARDLINK, None, seen[1])

    def _compare_content(self, header: Header, files: list[_TreeFile]) -> None:
        """The media's data against the tree's open files of its size (the caller closes them)."""
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

    def _open_file(self, entry: _Found, media_size: int) -> _TreeFile | None:
        """The tree's file, opened read-only for its content (if its size is the media's) and flags."""
        unread = "content and flags" if entry.st.st_size == media_size else "flags"
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
            self.run.warn(f"{entry.path}: cannot open it: {_reason(why)}; its {unread} are not compared")
            return None
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (entry.st.st_dev, entry.st.st_ino):
            os.close(fd)
            self.run.warn(f"{entry.path}: replaced while being compared; its {unread} are not compared")
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
