"""``restore``: the four stages of the seed's restore, and ``restore -t``.

1. catalog: read the directories, choose what to extract (catalog.py);
2. create the directories and an empty file for every regular file;
3. stream the media and write the data, links and special files, each
   file's owner, mode and times set as soon as its data is in;
4. set the directories' owners, modes and times, deepest first (their
   times change while entries are made in them, so they come last).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from ndmptools.engine.metadata import apply_to_fd, apply_to_name
from ndmptools.engine.options import ListOptions, RestoreOptions
from ndmptools.engine.progress import RunContext, RunStats
from ndmptools.engine.restore.catalog import Catalog, Link, read_catalog, show
from ndmptools.engine.restore.target import Refused, TargetTree
from ndmptools.errors import FormatError
from ndmptools.format.constants import DT_REG, ROOTINO, TP_BSIZE
from ndmptools.format.header import Header, InodeInfo
from ndmptools.format.reader import DumpReader
from ndmptools.media.base import Medium

_PATH_MAX = 4096


@dataclass
class RestoreResult:
    target: str
    dump_date: int
    level: int
    filesys: str
    host: str
    directories: int
    restored: int  # non-directory inodes restored
    not_restored: int
    stats: RunStats

    def as_dict(self) -> dict:
        return {
            "target": self.target,
            "dump_date": self.dump_date,
            "level": self.level,
            "filesys": self.filesys,
            "host": self.host,
            "directories": self.directories,
            "restored": self.restored,
            "not_restored": self.not_restored,
            "bytes": self.stats.bytes,
            "seconds": round(self.stats.seconds, 3),
            "warnings": self.stats.warnings,
        }


class _FileSink:
    """Writes a file's data at its offsets; holes are left unwritten, so they stay holes.

    A write error is kept, not raised: the reader must still consume the rest
    of the file's blocks, or the media stream would lose its place.
    """

    __slots__ = ("error", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None

    def data(self, offset: int, pieces: list[memoryview]) -> None:
        if self.error is not None:
            return
        try:
            while pieces:
                written = os.pwritev(self.fd, pieces, offset)
                offset += written
                pieces = _advance(pieces, written)
        except OSError as err:
            self.error = err

    def hole(self, offset: int, length: int) -> None:
        pass


def _advance(pieces: list[memoryview], count: int) -> list[memoryview]:
    """What is left of ``pieces`` after the first ``count`` bytes were written."""
    for i, piece in enumerate(pieces):
        if count < len(piece):
            return [piece[count:], *pieces[i + 1 :]]
        count -= len(piece)
    return []


class Restorer:
    """Stages 2-4 of one restore into one target."""

    def __init__(self, catalog: Catalog, reader: DumpReader, target: TargetTree, run: RunContext) -> None:
        self.catalog = catalog
        self.reader = reader
        self.target = target
        self.run = run
        self.failed_dirs: set[int] = set()
        self.placeholders: dict[int, Link] = {}  # regular-file inode -> the name made in stage 2
        self.restored = 0
        self.not_restored = 0
        self._progress_offset = 0

    def warn_entry(self, path: bytes, why: str) -> None:
        self.run.warn(f"{show(path)}: {why}")

    # -- stage 2 ------------------------------------------------------------------------

    def create_directories_and_files(self) -> None:
        self.run.reporter.phase("stage 2: directories and empty files")
        for directory in self.catalog.directories[1:]:
            if directory.parent in self.failed_dirs:
                self.failed_dirs.add(directory.ino)
                continue
            try:
                self.target.make_directory(directory.ino, directory.parent, directory.name)
            except Refused as why:
                self.warn_entry(directory.path, f"{why}; nothing under it is restored")
                self.failed_dirs.add(directory.ino)
        for ino, links in self.catalog.links.items():
            if links[0].dtype != DT_REG:
                continue
            for link in links:
                if link.parent in self.failed_dirs:
                    continue
                try:
                    self.target.create_file(link.parent, link.name)
                    self.placeholders[ino] = link
                    break
                except Refused as why:
                    self.warn_entry(self.catalog.path_of(link), str(why))

    # -- stage 3 ------------------------------------------------------------------------

    def extract(self) -> None:
        self.run.reporter.phase("stage 3: data")
        header = self.catalog.first_file
        try:
            while header is not None:
                self._extract_one(header)
                self._report_progress()
                header = self.reader.next_inode()
        finally:
            self._report_progress()
        self._account_for_missing()

    def _report_progress(self) -> None:
        offset = self.reader.blocks.offset
        self.run.reporter.advance(offset - self._progress_offset)
        self._progress_offset = offset

    def _extract_one(self, header: Header) -> None:
        ino = header.inumber
        links = self.catalog.links.pop(ino, None)
        info = header.inode
        if links is not None:
            links = [link for link in links if link.parent not in self.failed_dirs]
        if not links:
            self.reader.skip_data(header)
            self.reader.read_attributes(ino)
            return
        if info.is_regular:
            made = self._extract_regular(header, links)
        elif info.is_symlink:
            made = self._extract_symlink(header, links)
        elif info.is_dir:
            self.warn_entry(self.catalog.path_of(links[0]), "a directory found among the files; skipped")
            self.reader.skip_data(header)
            made = None
        elif stat.S_IFMT(info.mode) in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
            self.reader.skip_data(header)
            made = self._extract_node(info, links)
        else:
            self.warn_entry(self.catalog.path_of(links[0]), f"unknown file type {info.mode:o}; skipped")
            self.reader.skip_data(header)
            made = None
        self.reader.read_attributes(ino)
        if made is None:
            self.not_restored += 1
            return
        self.restored += 1
        for link in links:
            if link is made:
                continue
            try:
                self.target.make_link(made.parent, made.name, link.parent, link.name)
            except Refused as why:
                self.warn_entry(self.catalog.path_of(link), str(why))

    def _extract_regular(self, header: Header, links: list[Link]) -> Link | None:
        info = header.inode
        link = self.placeholders.pop(header.inumber, None)
        try:
            if link is None:
                link = links[0]
                self.target.create_file(link.parent, link.name)
            fd = self.target.open_file(link.parent, link.name)
        except Refused as why:
            self.warn_entry(self.catalog.path_of(link), str(why))
            self.reader.skip_data(header)
            return None
        path = self.catalog.path_of(link)
        complete = False
        try:
            sink = _FileSink(fd)
            complete = self.reader.read_data(header, sink)
            if not complete:
                self.warn_entry(path, "its data is incomplete on media; not restored")
            elif sink.error is not None:
                complete = False
                self.warn_entry(path, f"cannot write: {sink.error.strerror}; not restored")
            else:
                try:
                    os.ftruncate(fd, info.size)
                except OSError as err:
                    complete = False
                    self.warn_entry(path, f"cannot set its size: {err.strerror}; not restored")
            if complete:
                self._apply_attributes(path, lambda: apply_to_fd(fd, info))
        finally:
            os.close(fd)
            if not complete:
                self.target.remove(link.parent, link.name)  # never leave a partial file looking whole
        return link if complete else None

    def _apply_attributes(self, path: bytes, apply) -> None:
        """Owner, mode and times; the entry is restored even when they cannot be set."""
        try:
            apply()
        except (Refused, OSError) as why:
            self.warn_entry(path, f"restored, but its attributes could not be set: {_reason(why)}")

    def _named_attributes(self, link: Link, info: InodeInfo):
        def apply() -> None:
            with self.target.directory(link.parent) as dir_fd:
                apply_to_name(dir_fd, link.name, info)

        return apply

    def _extract_symlink(self, header: Header, links: list[Link]) -> Link | None:
        link = links[0]
        data, complete = self.reader.read_small(header)
        target = data[: header.inode.size]
        if not complete or not target or b"\0" in target or len(target) >= _PATH_MAX:
            self.warn_entry(self.catalog.path_of(link), "damaged symbolic link on media; not restored")
            return None
        try:
            self.target.make_symlink(link.parent, link.name, target)
        except Refused as why:
            self.warn_entry(self.catalog.path_of(link), str(why))
            return None
        self._apply_attributes(self.catalog.path_of(link), self._named_attributes(link, header.inode))
        return link

    def _extract_node(self, info: InodeInfo, links: list[Link]) -> Link | None:
        link = links[0]
        device = os.makedev(info.rdev_major, info.rdev_minor) if info.is_device else 0
        try:
            self.target.make_node(link.parent, link.name, info.mode, device)
        except Refused as why:
            self.warn_entry(self.catalog.path_of(link), str(why))
            return None
        self._apply_attributes(self.catalog.path_of(link), self._named_attributes(link, info))
        return link

    def _account_for_missing(self) -> None:
        """Names whose inode never came on media: say so and drop their empty files."""
        dumped = self.catalog.volume.dumped
        for ino, links in self.catalog.links.items():
            links = [link for link in links if link.parent not in self.failed_dirs]
            if not links or ino not in dumped:
                continue
            self.not_restored += 1
            self.warn_entry(self.catalog.path_of(links[0]), "listed in its directory but not on media")
            placeholder = self.placeholders.pop(ino, None)
            if placeholder is not None:
                self.target.remove(placeholder.parent, placeholder.name)
        self.catalog.links.clear()

    def drop_unfinished_placeholders(self) -> None:
        """After a failure in stage 3: the empty files whose data never came are removed."""
        for link in self.placeholders.values():
            self.target.remove(link.parent, link.name)
        self.placeholders.clear()

    # -- stage 4 ------------------------------------------------------------------------

    def set_directory_attributes(self, only: set[int] | None = None) -> None:
        """Owner, mode and times of the directories (``only`` those, when given), deepest first."""
        self.run.reporter.phase("stage 4: directory attributes")
        for directory in reversed(self.catalog.directories):
            if directory.ino in self.failed_dirs or (only is not None and directory.ino not in only):
                continue
            if directory.ino == ROOTINO and not self.catalog.full:
                continue  # a partial restore leaves the target's own attributes alone
            try:
                with self.target.directory(directory.ino) as fd:
                    apply_to_fd(fd, directory.info)
            except (Refused, OSError) as why:
                self.warn_entry(directory.path, f"cannot set attributes: {_reason(why)}")


def _reason(why: BaseException) -> str:
    if isinstance(why, OSError) and why.strerror:
        return why.strerror
    return str(why)


def run_restore(options: RestoreOptions, medium: Medium, run: RunContext) -> RestoreResult:
    """Restore from ``medium`` into ``options.target``."""
    reader = DumpReader(medium, run.warn)
    run.reporter.phase("stage 1: catalog", total_bytes=medium.size_hint)
    catalog = read_catalog(reader, options.paths, run)
    target = TargetTree(options.target)
    restorer = Restorer(catalog, reader, target, run)
    try:
        restorer.create_directories_and_files()
        try:
            restorer.extract()
        except FormatError as err:
            restorer.drop_unfinished_placeholders()
            restorer.set_directory_attributes()
            raise FormatError(
                f"{err.message}; restored {restorer.restored} entries before it, the rest is missing"
            ) from None
        restorer.set_directory_attributes()
    finally:
        target.close()
    volume = catalog.volume.header
    run.stats.entries = restorer.restored + len(catalog.directories)
    run.stats.bytes = reader.blocks.blocks_read * TP_BSIZE
    run.stats.stop()
    return RestoreResult(
        target=options.target,
        dump_date=volume.date,
        level=volume.level,
        filesys=os.fsdecode(volume.filesys),
        host=os.fsdecode(volume.host),
        directories=len(catalog.directories) - len(restorer.failed_dirs),
        restored=restorer.restored,
        not_restored=restorer.not_restored,
        stats=run.stats,
    )


@dataclass(frozen=True)
class ListedEntry:
    path: str
    inode: int
    type: str
    size: int


_TYPE_NAMES = {
    stat.S_IFDIR: "dir",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


def type_name(mode: int) -> str:
    return _TYPE_NAMES.get(stat.S_IFMT(mode), "unknown")


def run_list(
    options: ListOptions, medium: Medium, run: RunContext, emit: Callable[[ListedEntry], None]
) -> RunStats:
    """``restore -t``: every entry (or those under ``options.paths``) with inode, type and size.

    Directories come first, then the other entries in media order; a file
    with several names is listed once per name.
    """
    reader = DumpReader(medium, run.warn)
    catalog = read_catalog(reader, options.paths, run)
    for directory in catalog.directories:
        emit(ListedEntry(show(directory.path), directory.ino, "dir", directory.info.size))
    header = catalog.first_file
    listed = len(catalog.directories)
    while header is not None:
        links = catalog.links.pop(header.inumber, None)
        reader.skip_data(header)
        reader.read_attributes(header.inumber)
        for link in links or ():
            emit(
                ListedEntry(
                    show(catalog.path_of(link)),
                    header.inumber,
                    type_name(header.inode.mode),
                    header.inode.size,
                )
            )
            listed += 1
        header = reader.next_inode()
    for ino, links in catalog.links.items():
        if ino in catalog.volume.dumped:
            run.warn(f"{show(catalog.path_of(links[0]))}: listed in its directory but not on media")
    run.stats.entries = listed
    run.stats.bytes = reader.blocks.blocks_read * TP_BSIZE
    run.stats.stop()
    return run.stats
