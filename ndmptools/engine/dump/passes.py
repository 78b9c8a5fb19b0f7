"""Passes III and IV: write the maps, the directories, then every other inode.

Everything goes through one RecordWriter, so the medium sees whole records
only. File data is read straight into the record buffer; holes found with
SEEK_DATA/SEEK_HOLE cost a zero in c_addr and nothing else.
"""

from __future__ import annotations

import copy
import errno
import os
import stat

from ndmptools.engine.dump.filehistory import FileHistoryRecorder
from ndmptools.engine.dump.mapping import DirectoryNode, TreeMap, warn_clamped_time
from ndmptools.engine.fsinfo import FileSystemInfo
from ndmptools.engine.metadata import (
    inode_info_from_stat,
    read_inode_flags,
    read_project_id,
    read_xattrs,
    times_fit_format,
    xattr_path,
)
from ndmptools.engine.progress import RunContext
from ndmptools.engine.statx import FileStat, birth_time_ns, fstat_with_birth
from ndmptools.format.bitmap import InodeMap
from ndmptools.format.constants import (
    DR_EXTATTRIBUTES,
    DT_DIR,
    DT_REG,
    EXT_XATTR,
    ROOTINO,
    TP_BSIZE,
    TP_NINDIR,
    RecordType,
)
from ndmptools.format.dirent import parse_directory
from ndmptools.format.header import HeaderPacker, InodeInfo
from ndmptools.format.records import RecordWriter
from ndmptools.format.xattr import ACL_ACCESS, ACL_DEFAULT, AREA_LIMIT, acl_entry_count, plan_areas

_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_O_NOATIME = getattr(os, "O_NOATIME", 0)
_PRESENT = b"\x01" * TP_NINDIR
# The file systems that keep a project id per inode (ext4 -O project, XFS, F2FS, bcachefs, ZFS);
# on the others FS_IOC_FSGETXATTR answers 0 for every file, and pass IV need not ask it of each.
_PROJECT_ID_FILE_SYSTEMS = frozenset({"ext4", "xfs", "f2fs", "bcachefs", "zfs"})


def has_project_ids(fs: FileSystemInfo | None) -> bool:
    """Whether files on ``fs`` may have project ids (an unknown file system may)."""
    return fs is None or fs.fstype in _PROJECT_ID_FILE_SYSTEMS


class DumpWriter:
    """Writes one dump of a mapped tree."""

    def __init__(
        self,
        tree: TreeMap,
        writer: RecordWriter,
        packer: HeaderPacker,
        run: RunContext,
        live: bool = False,
        project_ids: bool = True,
    ) -> None:
        self.tree = tree
        self.writer = writer
        self.packer = packer
        self.run = run
        self._open_flags = _OPEN_FILE | _O_NOATIME
        self.inodes_written = 0
        self.live = live  # the live tree, not a snapshot: changes during the dump are reported
        self.project_ids = project_ids  # False: the file system has none (has_project_ids)
        self.history: FileHistoryRecorder | None = None  # HIST=Y: each inode and its place go to the catalog
        self.unknown_namespaces = 0  # inodes with system.* attributes Linux restore 0.4b47 has no index for
        self.no_acls = False  # NO_ACLS=Y: POSIX ACLs stay off media (other extended attributes go)
        self.observer = None  # told of each inode and its place, like the catalog (an NDMP DMA)

    # -- volume start and maps ------------------------------------------------

    def write_volume_start(self) -> None:
        """TS_TAPE, then TS_CLRI (inodes in use) and TS_BITS (inodes on this dump)."""
        w = self.writer
        w.write_header(self.packer.volume_header(tapea=w.blocks_written), 0, None, 0)
        in_use, dumped = InodeMap(), InodeMap()
        if self.tree.incremental:
            for ino in self.tree.media_inodes:
                in_use.add(ino)
            for node in self.tree.directories:
                if node.dump:
                    dumped.add(node.ino)
            for ino, _, _ in self.tree.files_to_dump:
                dumped.add(ino)
        else:
            in_use.add_range(ROOTINO, self.tree.maxino - 1)
            dumped = in_use
        self._write_map(RecordType.CLRI, self.tree.maxino - 1, in_use)
        self._write_map(RecordType.BITS, ROOTINO, dumped)

    def _write_map(self, map_type: int, inumber: int, inode_map: InodeMap) -> None:
        data = inode_map.to_media(self.tree.maxino)
        w = self.writer
        w.write_header(
            self.packer.map_header(map_type, inumber, len(data), w.blocks_written),
            inumber,
            None,
            len(data) // TP_BSIZE,
        )
        w.write_blocks(data)

    # -- pass III ---------------------------------------------------------------

    def write_directories(self) -> None:
        """Every directory of a level 0; those on the path to a change in an incremental."""
        self.run.reporter.phase("pass III: directories")
        nodes = self.tree.directories
        if self.tree.incremental:
            nodes = sorted((n for n in nodes if n.dump), key=lambda n: n.ino)
        for node in nodes:
            areas = self._attribute_areas(node.path, node.xattrs)
            self._write_inode(node.ino, node.info, node.contents, node.path, areas)

    # -- pass IV ----------------------------------------------------------------

    def write_files(self, resume_from: int = 0) -> None:
        """Every non-directory, in ascending inode order: the walk's order again.

        Each inode's first header is marked as a place a restart can rebuild
        the stream from; ``resume_from`` is such an inode, and the files before
        it are left out (the order is the same every time on one snapshot).
        """
        self.run.reporter.phase("pass IV: files")
        if self.tree.incremental:
            self._write_changed_files(resume_from)
            return
        last_written = max(ROOTINO, resume_from - 1)
        for node in self.tree.directories:
            entries, _ = parse_directory(node.contents)
            pending = [e for e in entries if e.dtype != DT_DIR and e.ino > last_written]
            if not pending:
                continue
            try:
                dir_fd = os.open(node.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as err:
                for entry in pending:
                    self._missing(node, entry.name, err)
                last_written = max(last_written, max(e.ino for e in pending))
                continue
            try:
                for entry in pending:
                    if entry.ino <= last_written:
                        continue  # a second name of a file already written
                    last_written = entry.ino
                    self.writer.mark({"kind": "file", "ino": entry.ino})
                    self._dump_entry(node, dir_fd, entry.name, entry.ino, entry.dtype == DT_REG)
            finally:
                os.close(dir_fd)

    def _write_changed_files(self, resume_from: int = 0) -> None:
        """An incremental's files: picked in pass I, sorted by inode, each read from its directory."""
        open_index, dir_fd = -1, -1
        try:
            for ino, index, name in self.tree.files_to_dump:
                if ino < resume_from:
                    continue
                node = self.tree.directories[index]
                if index != open_index:
                    if dir_fd >= 0:
                        os.close(dir_fd)
                    open_index, dir_fd = index, -1
                    try:
                        dir_fd = os.open(node.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    except OSError as err:
                        self._missing(node, name, err)
                        continue
                elif dir_fd < 0:
                    continue  # its directory could not be opened: already said
                self.writer.mark({"kind": "file", "ino": ino})
                self._dump_entry(node, dir_fd, name, ino)
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)

    def _check_times(self, node: DirectoryNode, name: bytes, info: InodeInfo) -> None:
        if not times_fit_format(info):
            warn_clamped_time(self.run, os.path.join(node.path, name))

    def _missing(self, node: DirectoryNode, name: bytes, err: OSError) -> None:
        path = os.fsdecode(os.path.join(node.path, name))
        if err.errno == errno.ENOENT:
            self.run.warn(f"{path} vanished before it could be dumped")
        else:
            self.run.warn(f"cannot read {path}: {err.strerror}")

    def _dump_entry(
        self, node: DirectoryNode, dir_fd: int, name: bytes, ino: int, regular: bool = False
    ) -> None:
        """One entry of ``node``; ``regular``: pass I saw a regular file, opened with no stat first."""
        mount_link = self.tree.mount_links.get(ino)
        if mount_link is not None:  # a mount point: its name leads to a directory, its inode is a link
            target, info = mount_link
            self._check_times(node, name, info)
            self._write_inode(ino, info, target)
            return
        try:
            if regular:
                try:
                    self._dump_regular(node, dir_fd, name, ino)
                    return
                except _NotRegular:
                    pass  # replaced since pass I (O_NOFOLLOW refused a symlink): what is it now?
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                self._dump_regular(node, dir_fd, name, ino)
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(name, dir_fd=dir_fd)
                info = inode_info_from_stat(st, size=len(target))
                info.birth_ns = birth_time_ns(name, dir_fd)
                self._check_times(node, name, info)
                areas = self._named_attribute_areas(node, dir_fd, name)
                self._write_inode(ino, info, target, areas=areas)
            elif stat.S_ISDIR(st.st_mode):
                self.run.warn(
                    f"{os.fsdecode(os.path.join(node.path, name))} became a directory during "
                    "the dump; not dumped"
                )
            else:
                info = inode_info_from_stat(st, size=0)
                info.birth_ns = birth_time_ns(name, dir_fd)
                self._check_times(node, name, info)
                self._write_inode(ino, info, areas=self._named_attribute_areas(node, dir_fd, name))
        except OSError as err:
            self._missing(node, name, err)

    def _dump_regular(self, node: DirectoryNode, dir_fd: int, name: bytes, ino: int) -> None:
        try:
            fd = os.open(name, self._open_flags, dir_fd=dir_fd)
        except PermissionError:
            if not self._open_flags & _O_NOATIME:
                raise
            self._open_flags &= ~_O_NOATIME  # O_NOATIME needs ownership or CAP_FOWNER
            fd = os.open(name, self._open_flags, dir_fd=dir_fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise _NotRegular from err  # a symbolic link now
            raise
        try:
            st = fstat_with_birth(fd)  # one statx for fstat's answers and the birth time
            if st is None:
                st = os.fstat(fd)
                birth_ns = birth_time_ns(b"", fd)
            else:
                birth_ns = st.birth_ns
            if not stat.S_ISREG(st.st_mode):
                raise _NotRegular
            info = inode_info_from_stat(st, flags=read_inode_flags(fd))
            info.birth_ns = birth_ns
            info.project_id = read_project_id(fd) if self.project_ids else None
            self._check_times(node, name, info)
            extents = _data_extents(fd, st)
            attributes, problem = read_xattrs(fd)
            if problem:
                self.run.warn(f"{os.fsdecode(os.path.join(node.path, name))}: {problem}")
            areas = self._attribute_areas(os.path.join(node.path, name), attributes) if attributes else []
            shortfall = self._write_file(ino, info, fd, extents, areas)
            if self.live and not shortfall and _changed(st, os.fstat(fd)):
                self.run.warn(
                    f"{os.fsdecode(os.path.join(node.path, name))} changed while it was being dumped"
                )
            if shortfall:
                self.run.warn(
                    f"{os.fsdecode(os.path.join(node.path, name))} shrank while being dumped; "
                    f"its last {shortfall} bytes are zeros on media"
                )
        finally:
            os.close(fd)

    # -- extended attributes ----------------------------------------------------------

    def _named_attribute_areas(self, node: DirectoryNode, dir_fd: int, name: bytes) -> list[bytes]:
        """The attribute areas of an entry that cannot be opened (a symlink, a device, a FIFO)."""
        attributes, problem = read_xattrs(xattr_path(dir_fd, name))
        if problem:
            self.run.warn(f"{os.fsdecode(os.path.join(node.path, name))}: {problem}")
        return self._attribute_areas(os.path.join(node.path, name), attributes)

    def _attribute_areas(self, path: bytes, attributes: list[tuple[bytes, bytes]]) -> list[bytes]:
        """The areas an inode's extended attributes go to media in, saying what others may refuse."""
        if self.no_acls and attributes:
            attributes = [(n, v) for n, v in attributes if n not in (ACL_ACCESS, ACL_DEFAULT)]
        if not attributes:
            return []
        plan = plan_areas(attributes)
        values = dict(attributes)
        for name in plan.oversized:
            value = values[name]
            what = (
                f"its ACL of {acl_entry_count(value)} entries"
                if name in (ACL_ACCESS, ACL_DEFAULT)
                else f"its extended attribute {os.fsdecode(name)}"
            )
            self.run.warn(
                f"{os.fsdecode(path)}: {what} ({len(value):,} bytes) is backed up whole, but takes more "
                f"than the {AREA_LIMIT // 1024} KiB Linux restore 0.4b47 reads: other restorers may refuse it"
            )
        if plan.unknown_elsewhere:
            self.unknown_namespaces += 1
        return plan.areas

    def _write_attributes(self, ino: int, info: InodeInfo, areas: list[bytes]) -> None:
        """After an inode's data: a TS_INODE header flagged DR_EXTATTRIBUTES for each attribute area."""
        w = self.writer
        for area in areas:
            blocks = len(area) // TP_BSIZE
            area_info = copy.copy(info)
            area_info.size = len(area)
            header = self.packer.inode_header(
                RecordType.INODE,
                ino,
                area_info,
                _PRESENT[:blocks],
                w.blocks_written,
                flags=DR_EXTATTRIBUTES,
                extattributes=EXT_XATTR,
            )
            w.write_header(header, ino, area_info, blocks)
            w.write_blocks(area)
            self.run.reporter.advance(TP_BSIZE + len(area))

    def _write_file(
        self, ino: int, info: InodeInfo, fd: int, extents: list[tuple[int, int]], areas: list[bytes] = ()
    ) -> int:
        """Headers and data of a regular file; returns bytes the file no longer had."""
        size = info.size
        total_blocks = -(-size // TP_BSIZE)
        w = self.writer
        shortfall = 0
        record_type = RecordType.INODE
        extent_index = 0
        tapea = w.blocks_written  # where its first header goes
        if 0 < total_blocks <= TP_NINDIR and len(extents) == 1 and extents[0] == (0, size):
            # Most files: one header, every block present, one copy (the loop below, unrolled).
            header = self.packer.inode_header(record_type, ino, info, _PRESENT[:total_blocks], tapea)
            w.write_header(header, ino, info, total_blocks)
            shortfall = size - w.write_file_data(fd, 0, size)
            self.run.reporter.advance((total_blocks + 1) * TP_BSIZE)
            self._write_attributes(ino, info, areas)
            self._written(ino, info, tapea, total_blocks)
            return shortfall
        present = 0
        for first in range(0, max(total_blocks, 1), TP_NINDIR):
            count = min(TP_NINDIR, total_blocks - first)
            addr = bytearray(count)
            runs = []
            lo_byte, hi_byte = first * TP_BSIZE, (first + count) * TP_BSIZE
            while extent_index < len(extents) and extents[extent_index][0] < hi_byte:
                start, end = extents[extent_index]
                b0 = max(start, lo_byte) // TP_BSIZE - first
                b1 = -(-min(end, hi_byte) // TP_BSIZE) - first
                if b1 > b0:
                    addr[b0:b1] = _PRESENT[: b1 - b0]
                    if runs and runs[-1][1] >= b0:
                        runs[-1] = (runs[-1][0], max(runs[-1][1], b1))
                    else:
                        runs.append((b0, b1))
                if end > hi_byte:
                    break
                extent_index += 1
            header = self.packer.inode_header(record_type, ino, info, bytes(addr), w.blocks_written)
            count = sum(b1 - b0 for b0, b1 in runs)
            present += count
            w.write_header(header, ino, info, count)
            for b0, b1 in runs:
                offset = (first + b0) * TP_BSIZE
                length = min((first + b1) * TP_BSIZE, size) - offset
                got = w.write_file_data(fd, offset, length)
                shortfall += length - got
                self.run.reporter.advance((b1 - b0) * TP_BSIZE)
            self.run.reporter.advance(TP_BSIZE)
            record_type = RecordType.ADDR
        self._write_attributes(ino, info, areas)
        self._written(ino, info, tapea, present)
        return shortfall

    def _written(self, ino: int, info: InodeInfo, tapea: int, blocks: int) -> None:
        """A file is on media: count it, and tell the file history and an NDMP DMA where it went."""
        self.inodes_written += 1
        if self.history is not None:
            self.history.inode(ino, info, tapea, blocks)
        if self.observer is not None:
            self.observer.inode(ino, info, tapea, blocks)

    def _write_inode(
        self,
        ino: int,
        info: InodeInfo,
        data: bytes = b"",
        directory: bytes | None = None,
        areas: list[bytes] = (),
    ) -> None:
        """An inode whose data is in memory (a directory at walk path ``directory``, a symlink) or has none.

        Every block is present; past 512 blocks (a directory of some 20,000
        entries) the addresses continue in TS_ADDR headers, as for files.
        """
        w = self.writer
        view = memoryview(data + bytes(-len(data) % TP_BSIZE))
        blocks = len(view) // TP_BSIZE
        record_type = RecordType.INODE
        tapea = w.blocks_written
        for first in range(0, max(blocks, 1), TP_NINDIR):
            count = min(TP_NINDIR, blocks - first)
            header = self.packer.inode_header(record_type, ino, info, _PRESENT[:count], w.blocks_written)
            w.write_header(header, ino, info, count)
            w.write_blocks(view[first * TP_BSIZE : (first + count) * TP_BSIZE])
            record_type = RecordType.ADDR
        self._write_attributes(ino, info, areas)
        self.inodes_written += 1
        self.run.reporter.advance(TP_BSIZE + len(view))
        if self.history is not None:
            if directory is not None:
                self.history.directory(ino, directory, info, tapea, blocks, data)
            else:
                self.history.inode(ino, info, tapea, blocks)
        if self.observer is not None:
            if directory is not None:
                self.observer.directory(ino, directory, info, tapea, blocks, data)
            else:
                self.observer.inode(ino, info, tapea, blocks)

    def finish(self) -> None:
        """TS_END blocks to the end of the last record (and, from a live tree, what moved meanwhile)."""
        if self.live:
            for node in self.tree.directories:
                try:
                    now = os.stat(node.path, follow_symlinks=False).st_mtime_ns
                except OSError:
                    now = None
                if now != node.info.mtime_ns:
                    self.run.warn(f"directory {os.fsdecode(node.path)} changed while it was being dumped")
        end_ino = self.tree.maxino - 1
        self.writer.finish(lambda tapea: self.packer.end_header(tapea, end_ino))


class _NotRegular(FileNotFoundError):
    """The name leads to something else than the regular file it was (a vanished file, for the warning)."""

    def __init__(self) -> None:
        super().__init__(errno.ENOENT, "replaced during the dump")


def _changed(before: os.stat_result | FileStat, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ctime_ns) != (
        after.st_size,
        after.st_mtime_ns,
        after.st_ctime_ns,
    )


def _data_extents(fd: int, st: os.stat_result | FileStat) -> list[tuple[int, int]]:
    """Byte ranges of the file that hold data; holes are what lies between."""
    size = st.st_size
    if size == 0:
        return []
    if st.st_blocks * 512 >= size:
        return [(0, size)]  # fully allocated: no hole worth looking for
    extents = []
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as err:
                if err.errno == errno.ENXIO:
                    break  # nothing but a hole up to the end
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, min(end, size)))
            offset = end
    except OSError:
        return [(0, size)]  # the file system cannot tell: treat it all as data
    return extents
