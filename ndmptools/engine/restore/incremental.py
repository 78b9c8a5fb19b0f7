"""restore -r: a level 0 and then each incremental of its chain, applied to one target.

The symbol table (state/symtab.py) holds the target's directories as the last
dump left them. An incremental brings the directories that changed and a map
of every inode in use (TS_CLRI). Applying it:

A. in every directory that changed or went away, deepest first, each name
   that now names nothing or another inode is dealt with: a directory that
   lives on elsewhere moves to a holding directory, as does a file that lives
   on and is not on this media; what is gone is removed;
B. the new directories are made, or moved from the holding directory, from
   the top down, and files that kept their data get their new names;
C. the files on the media are written (stage 3 of a restore), under every
   name the new directories give them;
D. the directories on the media get their attributes, deepest first.

Only directories that changed are compared, so applying an incremental
costs what changed, not what the tree holds.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass

from ndmptools.engine.options import RestoreOptions
from ndmptools.engine.progress import RunContext
from ndmptools.engine.restore.catalog import (
    Catalog,
    Directory,
    Link,
    MediaDirectories,
    build_catalog,
    read_directories,
    show,
    unsafe_name_reason,
)
from ndmptools.engine.restore.target import Refused, TargetTree
from ndmptools.engine.restoremarks import RestoreMarker
from ndmptools.errors import ChainError, FormatError
from ndmptools.format.constants import DT_DIR, ROOTINO, TP_BSIZE
from ndmptools.format.dirent import parse_directory
from ndmptools.format.header import InodeInfo
from ndmptools.format.reader import DumpReader
from ndmptools.media.base import Medium
from ndmptools.state.history import History
from ndmptools.state.symtab import RestoreTargets, SymbolTable

HOLD = 0  # the holding directory's number: no dump uses inode 0


def _when(date: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(date))


def _entries(data: bytes) -> dict[bytes, tuple[int, int]]:
    """name -> (inode, type) of directory data, without '.', '..' and unsafe names."""
    entries, _ = parse_directory(data)
    return {e.name: (e.ino, e.dtype) for e in entries if unsafe_name_reason(e.name) is None}


def _tree(directories: dict[int, bytes]) -> tuple[dict[int, tuple[int, bytes]], dict[int, int]]:
    """Where each directory is (parent, name) and how deep, walking from the root."""
    where: dict[int, tuple[int, bytes]] = {ROOTINO: (ROOTINO, b"")}
    depth = {ROOTINO: 0}
    queue = deque([ROOTINO])
    while queue:
        ino = queue.popleft()
        for name, (child, dtype) in _entries(directories.get(ino, b"")).items():
            if child in directories and child not in where and (dtype == DT_DIR or dtype == 0):
                where[child] = (ino, name)
                depth[child] = depth[ino] + 1
                queue.append(child)
    return where, depth


@dataclass
class AppliedDump:
    level: int
    date: int
    target: str
    removed: int
    moved: int
    restored: int
    not_restored: int
    stopped: str | None = None  # the target filled up: why and where the restore stopped


class IncrementalRestore:
    """One dump applied to a target that holds the restore of its chain so far."""

    def __init__(
        self,
        media: MediaDirectories,
        table: SymbolTable | None,
        target: TargetTree,
        reader: DumpReader,
        run: RunContext,
    ) -> None:
        self.media = media
        self.table = table
        self.target = target
        self.reader = reader
        self.run = run
        header = media.volume.header
        self.in_use = media.volume.in_use
        self.dumped = media.volume.dumped
        old = table.directories if table else {}
        new = {
            ino: data
            for ino, data in old.items()
            if ino in self.in_use and not (ino in self.dumped and ino not in media.contents)
        }
        new.update(media.contents)
        self.old, self.new = old, new
        self.old_where, self.old_depth = _tree(old)
        self.new_where, self.new_depth = _tree(new)
        self.level = header.level
        self.date = header.date
        self.held: dict[int, bool] = {}  # inode -> is a directory
        self.left_out: list[bytes] = []  # new names whose inodes the dump left out on purpose
        self.removed = self.moved = 0
        for ino, (parent, name) in self.old_where.items():
            if ino != ROOTINO:
                target.register(ino, parent, name)

    def warn(self, path: bytes, why: str) -> None:
        self.run.warn(f"{show(path)}: {why}")

    def _old_path(self, parent: int, name: bytes) -> bytes:
        parts = [name]
        while parent != ROOTINO and parent in self.old_where:
            parent, part = self.old_where[parent]
            parts.append(part)
        return b"/".join(reversed(parts))

    def _new_path(self, parent: int, name: bytes) -> bytes:
        parts = [name]
        while parent != ROOTINO and parent in self.new_where:
            parent, part = self.new_where[parent]
            parts.append(part)
        return b"/".join(reversed(parts))

    # -- A: what went away or moved --------------------------------------------------------------

    def clear_old_names(self) -> None:
        changed = [d for d in self.old if d not in self.new or d in self.media.contents]
        changed.sort(key=lambda d: self.old_depth.get(d, 0), reverse=True)
        for directory in changed:
            if directory not in self.old_where:
                continue  # was not reachable: nothing of it is in the target
            keep = _entries(self.new[directory]) if directory in self.new else {}
            for name, (ino, _dtype) in _entries(self.old[directory]).items():
                if keep.get(name, (None, 0))[0] == ino and (ino in self.old) == (ino in self.new):
                    continue  # the same name for the same inode, still of the same kind
                self._clear(directory, name, ino, is_dir=ino in self.old)

    def _clear(self, parent: int, name: bytes, ino: int, is_dir: bool) -> None:
        path = self._old_path(parent, name)
        lives_on = ino in self.in_use
        try:
            if is_dir and lives_on and ino in self.new:
                self.target.move(parent, name, HOLD, str(ino).encode(), directory=ino)
                self.held[ino] = True
                self.moved += 1
            elif not is_dir and lives_on and ino not in self.dumped:
                if ino in self.held:
                    self.target.remove(parent, name)  # another name of a file already held
                else:
                    self.target.move(parent, name, HOLD, str(ino).encode())
                    self.held[ino] = False
                    self.moved += 1
            else:
                self.target.remove_tree(parent, name)
                self.removed += 1
        except Refused as why:
            self.warn(path, str(why))

    # -- B: the new directories, and new names of files kept -------------------------------------

    def place_new_names(self) -> None:
        for directory in sorted(self.new_where, key=lambda d: self.new_depth[d]):
            if directory == ROOTINO:
                continue
            parent, name = self.new_where[directory]
            if self.old_where.get(directory) == (parent, name) and directory not in self.held:
                continue
            try:
                if self.held.pop(directory, None):
                    self.target.move(HOLD, str(directory).encode(), parent, name, directory=directory)
                    self.moved += 1
                else:
                    self.target.make_directory(directory, parent, name)
            except Refused as why:
                self.warn(self._new_path(parent, name), str(why))
        for directory in self.media.contents:
            if directory not in self.new_where:
                continue
            before = _entries(self.old[directory]) if directory in self.old else {}
            for name, (ino, _dtype) in _entries(self.new[directory]).items():
                if ino in self.new or ino in self.dumped or before.get(name, (None, 0))[0] == ino:
                    continue
                self._rename_kept_file(directory, name, ino)

    def _rename_kept_file(self, parent: int, name: bytes, ino: int) -> None:
        where = self.held.get(ino)
        try:
            if where is False:
                self.target.move(HOLD, str(ino).encode(), parent, name)
                self.held[ino] = (parent, name)
            elif isinstance(where, tuple):
                self.target.make_link(where[0], where[1], parent, name)
            elif ino in self.in_use:
                # New since the base, in use, yet not on media: the dump left it out (nodump).
                self.left_out.append(self._new_path(parent, name))
            else:
                self.warn(
                    self._new_path(parent, name),
                    "its inode is neither on this media nor in the "
                    "target: apply the dumps of the chain in order",
                )
        except Refused as why:
            self.warn(self._new_path(parent, name), str(why))

    # -- C: the files on the media ---------------------------------------------------------------

    def catalog_for_media(self) -> Catalog:
        """The new tree as stage 3 sees it: every directory, and names of the inodes on media."""
        catalog = Catalog(
            volume=self.media.volume, first_file=self.media.first_file, attributes=self.media.attributes
        )
        infos = self.media.infos
        for directory, (parent, name) in sorted(self.new_where.items(), key=lambda kv: self.new_depth[kv[0]]):
            path = b"" if directory == ROOTINO else self._new_path(parent, name)
            node = Directory(directory, parent, name, infos.get(directory, InodeInfo()), path)
            catalog.directories.append(node)
            catalog.by_ino[directory] = node
        for directory in self.media.contents:
            if directory not in self.new_where:
                continue
            for name, (ino, dtype) in _entries(self.new[directory]).items():
                if ino in self.dumped and ino not in self.new:
                    catalog.links.setdefault(ino, []).append(Link(directory, name, dtype))
        return catalog

    def cleanup(self) -> None:
        """Whatever is still held was not given a new name: it is gone."""
        for ino, where in self.held.items():
            if where is True or where is False:
                self.run.warn(f"inode {ino} is in use but has no name in this dump; removed")
        if self.left_out:
            names = ", ".join(show(path) for path in self.left_out[:5])
            more = f" and {len(self.left_out) - 5:,} more" if len(self.left_out) > 5 else ""
            self.run.note(
                f"new since the dump before, left out of this one (nodump), so not restored: {names}{more}"
            )
        try:
            self.target.remove_tree(ROOTINO, self.hold_name)
        except Refused as why:
            self.warn(self.hold_name, str(why))

    hold_name = b""


def _check_order(
    header, table: SymbolTable | None, why_no_table: str | None, target: str, history: History | None
) -> None:
    """An incremental applies only on top of its base; say which dump is missing if not."""
    if header.ddate == 0:
        if table is not None:
            raise ChainError(
                f"{target} already holds a restore (last the level-{table.last_level} dump of "
                f"{_when(table.last_date)}): restore this level 0 into an empty directory"
            )
        return

    def name_of(date: int) -> str:
        for record in history.by_date(date) if history else []:
            media = record.media.get("spec", "?")
            return (
                f"the level-{record.level} dump of {record.dumped_path} taken {_when(date)} "
                f"(on {media}, dump {record.media.get('file_number', 1)})"
            )
        return f"the dump taken {_when(date)}"

    if table is None:
        extra = f" ({why_no_table})" if why_no_table else ""
        raise ChainError(
            f"{target} holds no restore of this chain{extra}: apply {name_of(header.ddate)} "
            "and the dumps before it first"
        )
    if header.ddate == table.last_date:
        return
    if header.ddate > table.last_date:
        raise ChainError(
            f"this level-{header.level} dump is based on {name_of(header.ddate)}, which was not "
            f"applied to {target}: apply it first"
        )
    raise ChainError(
        f"this level-{header.level} dump is based on the dump of {_when(header.ddate)}, but "
        f"{target} already holds the dump of {_when(table.last_date)}: the chain has moved past it"
    )


def apply_dump(
    options: RestoreOptions,
    medium: Medium,
    run: RunContext,
    targets: RestoreTargets,
    history: History | None = None,
) -> AppliedDump:
    """Apply one dump of a chain to ``options.target`` (restore -r)."""
    from ndmptools.engine.restore import Restorer  # the four stages live there

    reader = DumpReader(medium, run.warn)
    run.reporter.phase("stage 1: catalog", total_bytes=medium.size_hint)
    media = read_directories(reader, run)
    header = media.volume.header
    fresh = not os.path.isdir(options.target) or not os.listdir(options.target)
    os.makedirs(options.target, exist_ok=True)
    if header.ddate == 0 and fresh:
        # what is kept for a removed target names its inode, which a new directory there may
        # reuse: an empty target holds no restore, whatever the table says
        targets.forget(options.target)
    table, why_no_table = targets.load(options.target)
    _check_order(header, table, why_no_table, options.target, history)
    marker = RestoreMarker(run) if options.mark_files else None
    target = TargetTree(options.target, marker)
    try:
        applier = None
        if header.ddate == 0:
            catalog = build_catalog(media, (), run, on_media_only=False)
            restorer = Restorer(catalog, reader, target, run)
            restorer.create_directories_and_files()
            restorer.extract()
            restorer.set_directory_attributes()
            restorer.finish()
            removed = moved = 0
        else:
            applier = IncrementalRestore(media, table, target, reader, run)
            applier.hold_name = f".ndmptools-restore-{os.getpid()}".encode()
            target.make_directory(HOLD, ROOTINO, applier.hold_name)
            run.reporter.phase("stage 2: names")
            applier.clear_old_names()
            applier.place_new_names()
            catalog = applier.catalog_for_media()
            restorer = Restorer(catalog, reader, target, run)
            restorer.extract()
            applier.cleanup()
            restorer.set_directory_attributes(only=set(media.contents), exact=True)
            restorer.finish()
            removed, moved = applier.removed, applier.moved
    except FormatError:
        raise
    finally:
        target.close()
        if marker is not None:
            marker.finish()
    new_directories = applier.new if header.ddate else media.contents
    targets.save(
        options.target,
        SymbolTable(
            first_date=header.date if header.ddate == 0 else table.first_date,
            last_date=header.date,
            last_level=header.level,
            filesys=os.fsdecode(header.filesys),
            directories=new_directories,
        ),
    )
    run.stats.entries = restorer.restored + len(media.contents)
    run.stats.bytes = reader.blocks.blocks_read * TP_BSIZE
    run.stats.stop()
    return AppliedDump(
        header.level,
        header.date,
        options.target,
        removed,
        moved,
        restorer.restored,
        restorer.not_restored,
        restorer.full,
    )
