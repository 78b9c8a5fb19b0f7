"""``restore``: the four stages of the seed's restore, and ``restore -t``.

1. catalog: read the directories, choose what to extract (catalog.py);
2. create the directories and an empty file for every regular file;
3. stream the media and write the data, links and special files, each
   file's owner, extended attributes, ACLs, mode and times set as soon as
   its data is in, its chattr flags once all its names are made;
   a regular file carries the restore mark (restoremarks.py) from its
   creation in stage 2 until then, so a dump taken meanwhile leaves it out;
4. set the directories' owners, attributes, ACLs, modes, times and flags,
   deepest first (their times change while entries are made in them, so
   they come last). attributes.py has the order within an entry.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ndmptools.engine.errors import UsageError
from ndmptools.engine.options import ListOptions, RestoreOptions
from ndmptools.engine.progress import RunContext, RunStats
from ndmptools.engine.restore import space
from ndmptools.engine.restore.attributes import AttributeSetter
from ndmptools.engine.restore.catalog import (
    Catalog,
    Link,
    apply_renames,
    build_catalog,
    read_directories,
    show,
    unsafe_name_reason,
)
from ndmptools.engine.restore.direct import (
    DirectAccess,
    GivenPlaces,
    history_of_media,
    normalize,
    place_of,
)
from ndmptools.engine.restore.listing import EntryDetails, catalog_details, media_details
from ndmptools.engine.restore.origin import original_location
from ndmptools.engine.restore.target import Refused, TargetTree, out_of_room
from ndmptools.engine.restoremarks import RestoreMarker
from ndmptools.errors import FormatError, MediaError
from ndmptools.format.constants import DT_REG, ROOTINO, TP_BSIZE
from ndmptools.format.header import Header, InodeInfo
from ndmptools.format.reader import DumpReader
from ndmptools.format.xattr import ReadAttributes, decode_areas
from ndmptools.media.base import Medium
from ndmptools.state.catalog import FileCatalog
from ndmptools.state.history import DumpRecord, History

_PATH_MAX = 4096
MAX_LISTED = 1000  # paths not restored that a result lists (the count is always whole)


def _umask() -> int:
    """The process's umask (reading it means setting it: put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
    direct: bool = False  # read by direct access, from the file history's places
    media_reads: int = 0  # reads from the medium (records, on a tape)
    media_bytes: int = 0  # bytes read from the medium
    stopped: str | None = None  # the target filled up: why and where the restore stopped
    unrestored: list[str] = field(default_factory=list)  # the first MAX_LISTED paths not restored
    needed: space.Need | None = None  # what the space check counted (None: --force)

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
            "direct": self.direct,
            "media_reads": self.media_reads,
            "media_bytes": self.media_bytes,
            "stopped": self.stopped,
            "unrestored": self.unrestored,
            "needed": None
            if self.needed is None
            else {"data_bytes": self.needed.data_bytes, "inodes": self.needed.inodes},
        }


class _FileSink:
    """Writes a file's data at its offsets; holes are left unwritten, so they stay holes.

    A write error is kept, not raised: the reader must still consume the rest
    of the file's blocks, or the media stream would lose its place.
    """

    __slots__ = ("end", "error", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None
        self.end = 0  # where the data written so far ends: the file's size, unless it ends in a hole

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
        self.end = max(self.end, offset)

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
        self.unrestored: list[bytes] = []  # the first MAX_LISTED paths not restored, for the summary
        self.full: str | None = None  # why the target has no room left; from then on nothing is made
        self.full_in_stage = 0
        self.stage = 1
        self.lost_dirs: set[int] = set()  # directories not made because the target was full
        self._progress_offset = 0
        self.attributes = AttributeSetter(run, project_ids=_is_file_system_root(target.path))

    def warn_entry(self, path: bytes, why: str) -> None:
        self.run.warn(f"{show(path)}: {why}")

    def lost(self, path: bytes, directory: bool = False) -> None:
        """One more entry not restored (a directory is listed, its files are counted)."""
        if not directory:
            self.not_restored += 1
        if len(self.unrestored) < MAX_LISTED:
            self.unrestored.append(path + b"/" if directory else path)

    def _refused(self, path: bytes, why: Refused | OSError) -> None:
        """An entry could not be made: a warning, or, when the target is full, the stop."""
        full = why.out_of_room if isinstance(why, Refused) else out_of_room(why)
        if full:
            if self.full is None:
                reason = os.strerror(why.errno)
                self.full = f"{reason}, at {show(path)}"
                self.full_in_stage = self.stage
                self.run.warn(f"the target is full ({self.full}): the restore stops there")
            return
        self.warn_entry(path, str(why) if isinstance(why, Refused) else why.strerror)

    # -- stage 2 ------------------------------------------------------------------------

    def create_directories_and_files(self) -> None:
        """Every directory, and an empty file for every regular file, until the target is full."""
        self.run.reporter.phase("stage 2: directories and empty files")
        self.stage = 2
        for directory in self.catalog.directories[1:]:
            if directory.parent in self.failed_dirs or self.full is not None:
                self.failed_dirs.add(directory.ino)
                if self.full is not None:
                    self.lost_dirs.add(directory.ino)
                    self.lost(directory.path, directory=True)
                continue
            try:
                created = self.target.make_directory(directory.ino, directory.parent, directory.name)
                if created and directory.info is None:  # made for a --rename: as mkdir would make it
                    with self.target.directory(directory.ino) as fd:
                        os.fchmod(fd, 0o777 & ~_umask())
            except Refused as why:
                self.failed_dirs.add(directory.ino)
                if why.out_of_room:
                    self._refused(directory.path, why)
                    self.lost_dirs.add(directory.ino)
                    self.lost(directory.path, directory=True)
                else:
                    self.warn_entry(directory.path, f"{why}; nothing under it is restored")
        for ino, links in self.catalog.links.items():
            if links[0].dtype != DT_REG or self.full is not None:
                continue
            for link in links:
                if link.parent in self.failed_dirs:
                    continue
                try:
                    self.target.create_file(link.parent, link.name)
                    self.placeholders[ino] = link
                    break
                except Refused as why:
                    self._refused(self.catalog.path_of(link), why)
                    if self.full is not None:
                        break

    # -- stage 3 ------------------------------------------------------------------------

    def extract(self, headers: Iterator[Header] | None = None) -> None:
        """Stage 3 over ``headers`` (direct access), or over the rest of the media in order."""
        self.run.reporter.phase("stage 3: data")
        self.stage = 3
        if headers is None:
            headers = self._media_order()
        try:
            for header in headers:
                self._extract_one(header)
                self._report_progress()
                if self.full is not None and (self.full_in_stage == 3 or not self.placeholders):
                    break  # full: no room for data, or no file made in stage 2 waits for its data
        finally:
            self._report_progress()
        if self.full is not None:
            self._account_for_the_rest()
        else:
            self._account_for_missing()

    def _media_order(self) -> Iterator[Header]:
        header = self.catalog.first_file
        while header is not None:
            yield header
            header = self.reader.next_inode()

    def _report_progress(self) -> None:
        read = self.reader.blocks.bytes_from_medium
        self.run.reporter.advance(read - self._progress_offset)
        self._progress_offset = read

    def give_up(self, ino: int, why: str) -> None:
        """Inode ``ino`` cannot be restored: say so for its first name, and drop its empty file."""
        links = [link for link in self.catalog.links.pop(ino, []) if link.parent not in self.failed_dirs]
        if not links:
            return
        self.lost(self.catalog.path_of(links[0]))
        self.warn_entry(self.catalog.path_of(links[0]), why)
        placeholder = self.placeholders.pop(ino, None)
        if placeholder is not None:
            self.target.remove(placeholder.parent, placeholder.name)

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
        if self.full is not None and ino not in self.placeholders:
            # Full: only the files stage 2 could make still get their data; the rest is counted.
            self.reader.skip_data(header)
            self.reader.read_attributes(ino)
            self.lost(self.catalog.path_of(links[0]))
            return
        fd = owner = None
        if info.is_regular:
            made, fd, owner = self._extract_regular(header, links)
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
        areas = self.reader.read_attributes(ino)
        try:
            if made is None:
                self.lost(self.catalog.path_of(links[0]))
                return
            self._finish_entry(made, info, decode_areas(areas) if areas else None, fd, owner)
            self.restored += 1
            for link in links:
                if link is made:
                    continue
                try:
                    self.target.make_link(made.parent, made.name, link.parent, link.name)
                except Refused as why:
                    self._refused(self.catalog.path_of(link), why)
            if fd is not None:
                self.attributes.after_links(self.catalog.path_of(made), info, fd)
        finally:
            if fd is not None:
                os.close(fd)

    def _finish_entry(
        self,
        made: Link,
        info: InodeInfo,
        attributes: ReadAttributes | None,
        fd: int | None,
        owner: tuple[int, int] | None = None,
    ) -> None:
        """Owner, attributes, ACLs, mode and times of an entry stage 3 made (attributes.py has the order).

        ``owner``: the (uid, gid) of the open ``fd``, as the fstat that opened it saw them.
        """
        path = self.catalog.path_of(made)
        parent_default = (
            self.attributes.parent_default(made.parent, self.target.directory)
            if not info.is_symlink
            else None
        )
        if fd is not None:
            self.attributes.apply(path, info, attributes, fd=fd, parent_default=parent_default, owner=owner)
            try:
                self.target.finish_file(fd)  # its data and metadata are in: a dump may take it now
            except Refused as why:
                self.warn_entry(path, str(why))
            return
        try:
            with self.target.directory(made.parent) as dir_fd:
                self.attributes.apply(
                    path, info, attributes, dir_fd=dir_fd, name=made.name, parent_default=parent_default
                )
        except Refused as why:
            self.warn_entry(path, f"restored, but its attributes could not be set: {why}")

    def _extract_regular(
        self, header: Header, links: list[Link]
    ) -> tuple[Link | None, int | None, tuple[int, int] | None]:
        """The file's data and size; returns its name, an open descriptor and its owner, or Nones."""
        info = header.inode
        link = self.placeholders.pop(header.inumber, None)
        try:
            if link is None:
                link = links[0]
                self.target.create_file(link.parent, link.name)
            fd, st = self.target.open_file(link.parent, link.name)
        except Refused as why:
            self._refused(self.catalog.path_of(link), why)
            self.reader.skip_data(header)
            return None, None, None
        path = self.catalog.path_of(link)
        complete = False
        try:
            self.attributes.before_data(fd, info)
            sink = _FileSink(fd)
            complete = self.reader.read_data(header, sink)
            if not complete:
                self.warn_entry(path, "its data is incomplete on media; not restored")
            elif sink.error is not None:
                complete = False
                if out_of_room(sink.error):
                    self._refused(path, sink.error)
                else:
                    self.warn_entry(path, f"cannot write: {sink.error.strerror}; not restored")
            elif sink.end != info.size:  # a hole at its end (the file was made empty in stage 2)
                try:
                    os.ftruncate(fd, info.size)
                except OSError as err:
                    complete = False
                    self.warn_entry(path, f"cannot set its size: {err.strerror}; not restored")
        finally:
            if not complete:
                os.close(fd)
                self.target.remove(link.parent, link.name)  # never leave a partial file looking whole
        return (link, fd, (st.st_uid, st.st_gid)) if complete else (None, None, None)

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
            self._refused(self.catalog.path_of(link), why)
            return None
        return link

    def _extract_node(self, info: InodeInfo, links: list[Link]) -> Link | None:
        link = links[0]
        device = os.makedev(info.rdev_major, info.rdev_minor) if info.is_device else 0
        try:
            self.target.make_node(link.parent, link.name, info.mode, device)
        except Refused as why:
            self._refused(self.catalog.path_of(link), why)
            return None
        return link

    def _account_for_missing(self) -> None:
        """Names whose inode never came on media: say so and drop their empty files."""
        dumped = self.catalog.volume.dumped
        for ino, links in self.catalog.links.items():
            links = [link for link in links if link.parent not in self.failed_dirs]
            if not links or ino not in dumped:
                continue
            self.lost(self.catalog.path_of(links[0]))
            self.warn_entry(self.catalog.path_of(links[0]), "listed in its directory but not on media")
            placeholder = self.placeholders.pop(ino, None)
            if placeholder is not None:
                self.target.remove(placeholder.parent, placeholder.name)
        self.catalog.links.clear()

    def _account_for_the_rest(self) -> None:
        """After the target filled up: what stage 3 did not reach is counted, its empty files go."""
        said = self.failed_dirs - self.lost_dirs  # refused for another reason, and said so then
        for links in self.catalog.links.values():
            if links[0].parent not in said:
                self.lost(self.catalog.path_of(links[0]))
        self.catalog.links.clear()
        self.drop_unfinished_placeholders()

    def drop_unfinished_placeholders(self) -> None:
        """After a failure in stage 3: the empty files whose data never came are removed."""
        for link in self.placeholders.values():
            self.target.remove(link.parent, link.name)
        self.placeholders.clear()

    # -- stage 4 ------------------------------------------------------------------------

    def set_directory_attributes(self, only: set[int] | None = None, exact: bool = False) -> None:
        """Each directory's owner, attributes, ACLs, mode, times and flags (``only`` those), deepest first.

        ``exact`` (restore -r): what a directory has and its dump does not is removed.
        """
        self.run.reporter.phase("stage 4: directory attributes")
        for directory in reversed(self.catalog.directories):
            if directory.ino in self.failed_dirs or (only is not None and directory.ino not in only):
                continue
            if directory.ino == ROOTINO and not self.catalog.full:
                continue  # a partial restore leaves the target's own attributes alone
            if directory.info is None:
                continue  # made for a --rename: it keeps what stage 2 gave it
            parent_default = None
            if directory.ino != ROOTINO:  # the target itself has no parent in the restore
                parent_default = self.attributes.parent_default(directory.parent, self.target.directory)
            try:
                with self.target.directory(directory.ino) as fd:
                    self.attributes.apply(
                        directory.path,
                        directory.info,
                        self.catalog.attributes.get(directory.ino),
                        fd=fd,
                        parent_default=parent_default,
                        set_defaults=True,
                        drop_others=exact,
                    )
                    self.attributes.after_links(directory.path, directory.info, fd)
            except Refused as why:
                self.warn_entry(directory.path, f"cannot set attributes: {why}")

    def finish(self) -> None:
        """After the last stage: what could not be carried over, once (attributes.py)."""
        self.attributes.finish(self.target.path)


def _is_file_system_root(path: str) -> bool:
    """Whether ``path`` is where a file system is mounted (project ids are restored only there)."""
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def run_restore(
    options: RestoreOptions, medium: Medium, run: RunContext, history: History | None = None
) -> RestoreResult:
    """Restore from ``medium`` into ``options.target`` (where it was taken from: ``options.original``).

    With PATHs, and a file history of this dump in ``history``, only the
    places of what the paths need are read (direct access), unless
    ``options.direct`` is off; otherwise the media is read front to back.
    Before anything is written the target must have room for the data plus
    100 MiB and an inode for each entry (``options.force`` skips that); when
    it fills up all the same, the restore stops cleanly and says what it did
    not restore.
    """
    renames = normalize_renames(options.renames)
    paths = (*options.paths, *(show(old) for old, _ in renames))
    reader = DumpReader(medium, run.warn)
    run.reporter.phase("stage 1: catalog", total_bytes=medium.size_hint)
    volume = reader.read_volume_start()
    _check_dump_date(options, volume.header, medium)
    into = original_location(volume, history) if options.original else options.target
    record = history_of_media(history, volume)
    direct = None if options.places else _direct_access(options, paths, reader, record, history, run)
    if direct is not None:
        catalog = build_catalog(direct.read_directories(volume, run), paths, run, recursive=options.recursive)
    else:
        catalog = build_catalog(
            read_directories(reader, run, volume), paths, run, recursive=options.recursive
        )
    apply_renames(catalog, renames)
    placed = _given_places(options, catalog, reader, volume.header.ntrec, run)
    if options.nowrite:  # direct access too: stage 1 read only the directories then
        return _read_only(catalog, reader, direct if direct is not None else placed, into, run)
    need = None
    if not options.force:
        free = space.free_at(into)
        need = _space_needed(catalog, direct, record, history, medium, free.block_size)
        space.check(into, need, free)
        if need.data_bytes is None:
            run.note(
                "the size of the data is not known before it is read (no file history of this dump "
                "here, or not the whole dump from a medium of known size): only inodes were checked"
            )
    marker = RestoreMarker(run) if options.mark_files else None
    target = TargetTree(into, marker)
    restorer = Restorer(catalog, reader, target, run)
    restorer.attributes.acls = options.extract_acl
    only = _attributed_directories(catalog, options)
    try:
        restorer.create_directories_and_files()
        try:
            access = direct if direct is not None else placed
            if access is not None:
                run.reporter.phase("stage 3: data", total_bytes=need.data_bytes if need else None)
                restorer.extract(access.file_headers(set(catalog.links), restorer.give_up))
            else:
                restorer.extract()
        except FormatError as err:
            restorer.drop_unfinished_placeholders()
            restorer.set_directory_attributes(only)
            raise FormatError(
                f"{err.message}; restored {restorer.restored} entries before it, the rest is missing"
            ) from None
        restorer.set_directory_attributes(only)
        restorer.finish()
    finally:
        target.close()
        if marker is not None:
            marker.finish()
    volume = catalog.volume.header
    run.stats.entries = restorer.restored + len(catalog.directories)
    run.stats.bytes = (
        reader.blocks.bytes_from_medium if direct or placed else reader.blocks.blocks_read * TP_BSIZE
    )
    run.stats.stop()
    return RestoreResult(
        target=into,
        dump_date=volume.date,
        level=volume.level,
        filesys=os.fsdecode(volume.filesys),
        host=os.fsdecode(volume.host),
        directories=len(catalog.directories) - len(restorer.failed_dirs),
        restored=restorer.restored,
        not_restored=restorer.not_restored,
        stats=run.stats,
        direct=direct is not None or placed is not None,
        media_reads=reader.blocks.reads,
        media_bytes=reader.blocks.bytes_from_medium,
        stopped=restorer.full,
        unrestored=[show(p) for p in restorer.unrestored],
        needed=need,
    )


def _check_dump_date(options: RestoreOptions, header: Header, medium: Medium) -> None:
    """DUMP_DATE: the dump must be the one the DMA (or the user) names."""
    if options.dump_date is not None and header.date != options.dump_date:
        raise MediaError(
            f"{medium.name} holds the dump taken {_when(header.date)} (DUMP_DATE={header.date}), not the "
            f"one of DUMP_DATE={options.dump_date} ({_when(options.dump_date)})"
        )


def _when(date: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(date))


def _attributed_directories(catalog: Catalog, options: RestoreOptions) -> set[int] | None:
    """The directories stage 4 sets: all, or (RECOVER_FULL_PATHS=N) not those only on the way."""
    if options.full_paths or catalog.full:
        return None
    return {d.ino for d in catalog.directories if d.whole or d.named}


def _given_places(
    options: RestoreOptions, catalog: Catalog, reader: DumpReader, blocking_factor: int, run: RunContext
) -> GivenPlaces | None:
    """Direct access at the places a DMA gave, when every file the PATHs need has one."""
    if not options.places or not options.direct or catalog.full:
        return None
    by_path: dict[bytes, int] = {}
    for ino, links in catalog.links.items():
        for link in links:
            by_path[catalog.path_of(link)] = ino
    tapea: dict[int, int] = {}
    for path, place in options.places:
        ino = by_path.get(normalize(path))
        if ino is not None:
            tapea[ino] = place
    missing = [ino for ino in catalog.links if ino not in tapea]
    if missing:
        run.note(
            f"{len(missing)} entries the PATHs bring have no place given (a directory's contents, or no "
            "file history): reading the media on from the directories"
        )
        return None
    return GivenPlaces(reader, tapea, blocking_factor)


class _NoData:
    """A data sink that keeps nothing: NOWRITE reads every block a restore would, and drops it."""

    def data(self, offset: int, pieces: list[memoryview]) -> None:
        pass

    def hole(self, offset: int, length: int) -> None:
        pass


def _read_only(
    catalog: Catalog,
    reader: DumpReader,
    placed: DirectAccess | GivenPlaces | None,
    into: str,
    run: RunContext,
) -> RestoreResult:
    """NOWRITE=Y: stages 1 and 3 as a restore reads them, and nothing written anywhere."""
    run.reporter.phase("NOWRITE: reading, writing nothing")
    restored = not_restored = 0
    missing: list[str] = []

    def give_up(ino: int, why: str) -> None:
        nonlocal not_restored
        links = catalog.links.pop(ino, [])
        if links:
            not_restored += 1
            run.warn(f"{show(catalog.path_of(links[0]))}: {why}")

    if placed is not None:
        headers = placed.file_headers(set(catalog.links), give_up)
    else:

        def in_order():
            header = catalog.first_file
            while header is not None:
                yield header
                header = reader.next_inode()

        headers = in_order()
    for header in headers:
        links = catalog.links.pop(header.inumber, None)
        if not links:
            reader.skip_data(header)
        elif header.inode.is_regular:
            if reader.read_data(header, _NoData()):
                restored += 1
            else:
                not_restored += 1
                run.warn(f"{show(catalog.path_of(links[0]))}: its data is incomplete on media")
        else:
            reader.read_small(header) if header.inode.is_symlink else reader.skip_data(header)
            restored += 1
        reader.read_attributes(header.inumber)
    for ino, links in catalog.links.items():
        if ino in catalog.volume.dumped:
            not_restored += 1
            missing.append(show(catalog.path_of(links[0])))
            run.warn(f"{missing[-1]}: listed in its directory but not on media")
    volume = catalog.volume.header
    run.stats.entries = restored + len(catalog.directories)
    run.stats.bytes = reader.blocks.bytes_from_medium
    run.stats.stop()
    run.note(f"NOWRITE: {restored} entries read whole, nothing written to {into}")
    return RestoreResult(
        target=into,
        dump_date=volume.date,
        level=volume.level,
        filesys=os.fsdecode(volume.filesys),
        host=os.fsdecode(volume.host),
        directories=len(catalog.directories),
        restored=restored,
        not_restored=not_restored,
        stats=run.stats,
        direct=placed is not None,
        media_reads=reader.blocks.reads,
        media_bytes=reader.blocks.bytes_from_medium,
        unrestored=missing[:MAX_LISTED],
    )


def normalize_renames(renames: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    """EXTRACT=E pairs as the catalog takes them; a UsageError for one that cannot be."""
    found: list[tuple[bytes, bytes]] = []
    for old_text, new_text in renames:
        old, new = normalize(old_text), normalize(new_text)
        shown = f"--rename {old_text}={new_text}"
        if not old:
            raise UsageError(f"{shown}: OLD must be a path inside the dump (for all of it, use -D)")
        if not new:
            raise UsageError(f"{shown}: NEW must be a path inside the target")
        if new_text.startswith("/"):
            raise UsageError(f"{shown}: NEW is a path inside the target (-D), not an absolute one")
        bad = next((unsafe_name_reason(p) for p in new.split(b"/") if unsafe_name_reason(p)), None)
        if bad:
            raise UsageError(f"{shown}: NEW has a {bad}")
        if any(old == o for o, _ in found):
            raise UsageError(f"{shown}: {old_text} is renamed twice")
        if any(new == n for _, n in found):
            raise UsageError(f"{shown}: two entries would both be {new_text}")
        found.append((old, new))
    return tuple(found)


def _space_needed(
    catalog: Catalog,
    direct: DirectAccess | None,
    record: DumpRecord | None,
    history: History | None,
    medium: Medium,
    block_size: int,
) -> space.Need:
    """What the restore will write: its inodes exactly, the data as well as it can be known."""
    inodes = len(catalog.directories) - 1 + len(catalog.links)
    if record is not None:
        if direct is None and catalog.full:  # everything: the sizes alone, no path built
            data = space.data_from_inodes(FileCatalog(history.db).inode_sizes(record.id), block_size)
            return space.Need(data, inodes, "from the file history")
        entries = direct.entries if direct is not None else FileCatalog(history.db).entries(record.id)
        if not catalog.full:
            entries = (e for e in entries if e.ino in catalog.links or e.ino in catalog.by_ino)
        return space.Need(space.data_from_entries(entries, block_size), inodes, "from the file history")
    if catalog.full and medium.size_hint:
        return space.Need(medium.size_hint, inodes, "by the size of the media")
    return space.Need(None, inodes, "")


def _direct_access(
    options: RestoreOptions,
    paths: tuple[str, ...],
    reader: DumpReader,
    record: DumpRecord | None,
    history: History | None,
    run: RunContext,
) -> DirectAccess | None:
    """Direct access when PATHs are asked for and this dump has a file history here."""
    if not paths or not options.direct:
        return None
    if any(normalize(p) == b"" for p in paths):
        return None  # the whole dump: read it in order
    if record is None:
        run.note("no file history of this dump here: reading the media from the start")
        return None
    return DirectAccess(reader, record, FileCatalog(history.db), paths)


@dataclass(frozen=True)
class ListedEntry:
    path: str
    inode: int
    type: str
    size: int
    mtime: int | None = None  # from here on: only in a listing from the file history
    volume: int | None = None
    file_number: int | None = None
    record: int | None = None
    details: EntryDetails | None = None  # with --long

    def as_dict(self) -> dict:
        found = {"path": self.path, "inode": self.inode, "type": self.type, "size": self.size}
        if self.volume is not None:
            found.update(mtime=self.mtime, volume=self.volume, file=self.file_number, record=self.record)
        if self.details is not None:
            found.update(self.details.as_dict())
        return found


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
    with several names is listed once per name. With ``options.long`` each
    entry also has its mode, owner, times and flags, and what its extended
    attributes say (listing.EntryDetails).
    """
    reader = DumpReader(medium, run.warn)
    media = read_directories(reader, run)
    catalog = build_catalog(media, options.paths, run)
    for directory in catalog.directories:
        details = media_details(directory.info, media.attributes.get(directory.ino)) if options.long else None
        emit(ListedEntry(show(directory.path), directory.ino, "dir", directory.info.size, details=details))
    header = catalog.first_file
    listed = len(catalog.directories)
    while header is not None:
        links = catalog.links.pop(header.inumber, None)
        reader.skip_data(header)
        areas = reader.read_attributes(header.inumber)
        details = None
        if links and options.long:
            details = media_details(header.inode, decode_areas(areas) if areas else None)
        for link in links or ():
            emit(
                ListedEntry(
                    show(catalog.path_of(link)),
                    header.inumber,
                    type_name(header.inode.mode),
                    header.inode.size,
                    details=details,
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


def run_catalog_list(
    options: ListOptions, history: History, run: RunContext, emit: Callable[[ListedEntry], None]
) -> RunStats:
    """``restore -t --catalog``: a dump's entries from its file history, without the media.

    The dump is the latest with a file history recorded on ``options.file``
    (the Nth there with ``options.file_number``); the order is the media's.
    With ``options.long``, what the catalog keeps of mode, owner, times and flags.
    """
    from ndmptools.engine.chain import dump_on_media

    record = dump_on_media(history, options.file, options.file_number)
    catalog = FileCatalog(history.db)
    if options.paths:
        wanted = [normalize(p) for p in options.paths]
        entries = [e for e in catalog.select(record.id, wanted) if _under_any(e.path, wanted)]
    else:
        entries = catalog.entries(record.id)
    listed = 0
    for entry in entries:
        place = place_of(entry.tapea, record)
        emit(
            ListedEntry(
                show(entry.path),
                entry.ino,
                type_name(entry.mode),
                entry.size,
                entry.mtime_ns // 1_000_000_000,
                place.volume,
                place.file_number,
                place.record,
                catalog_details(entry) if options.long else None,
            )
        )
        listed += 1
    run.stats.entries = listed
    run.stats.stop()
    return run.stats


def _under_any(path: bytes, roots: list[bytes]) -> bool:
    return any(not root or path == root or path.startswith(root + b"/") for root in roots)
