"""Stage 1 of a restore: read the directories and decide what to extract.

The dump's directories come first on media (pass III). They are read whole,
checked, and turned into a tree rooted at ROOTINO; every name that could
reach outside the target ('/', NUL, '.', '..', empty) is refused here, once,
so later stages only ever see safe single path components.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ndmptools.engine.progress import RunContext
from ndmptools.errors import FormatError
from ndmptools.format.bitmap import InodeMap
from ndmptools.format.constants import DT_DIR, ROOTINO
from ndmptools.format.dirent import parse_directory
from ndmptools.format.header import Header, InodeInfo
from ndmptools.format.reader import DumpReader, VolumeStart

ALL = None  # in Selection.wanted: every child of the directory


def unsafe_name_reason(name: bytes) -> str | None:
    """Why a directory entry's name cannot be used as one path component, or None."""
    if not name:
        return "empty name"
    if name in (b".", b".."):
        return f"name {name.decode()!r}"
    if b"/" in name:
        return "name with '/'"
    if b"\0" in name:
        return "name with NUL"
    return None


def show(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape") if path else "."


@dataclass(slots=True)
class Directory:
    ino: int
    parent: int
    name: bytes
    info: InodeInfo
    path: bytes = b""  # relative to the dump's root; b"" for the root itself


@dataclass(slots=True)
class Link:
    """One name of a non-directory inode."""

    parent: int
    name: bytes
    dtype: int


@dataclass
class Catalog:
    """What stage 1 found: the directories to create and the names of every other inode."""

    volume: VolumeStart
    directories: list[Directory] = field(default_factory=list)  # breadth-first, root first
    by_ino: dict[int, Directory] = field(default_factory=dict)
    links: dict[int, list[Link]] = field(default_factory=dict)
    full: bool = True  # the whole dump, not a selection
    first_file: Header | None = None  # the first non-directory header, for stage 3
    data_bytes: int | None = None  # the selected files' size, when the file history says

    def path_of(self, link: Link) -> bytes:
        parent = self.by_ino[link.parent].path
        return parent + b"/" + link.name if parent else link.name


@dataclass
class MediaDirectories:
    """What stage 1 reads off the media: the volume start, every directory on it, the first file."""

    volume: VolumeStart
    contents: dict[int, bytes]  # directory inode -> BSD directory data
    infos: dict[int, InodeInfo]
    first_file: Header | None


def read_directories(
    reader: DumpReader, run: RunContext, volume: VolumeStart | None = None
) -> MediaDirectories:
    """The volume start (unless read already) and the directories (pass III) of a dump."""
    if volume is None:
        volume = reader.read_volume_start()
    contents: dict[int, bytes] = {}
    infos: dict[int, InodeInfo] = {}
    header = reader.next_inode()
    while header is not None and header.inode.is_dir:
        data, complete = reader.read_small(header)
        reader.read_attributes(header.inumber)
        if not complete:
            run.warn(f"directory inode {header.inumber} is incomplete on media; its entries may be missing")
        contents[header.inumber] = data
        infos[header.inumber] = header.inode
        header = reader.next_inode()
    if ROOTINO not in contents:
        raise FormatError("the root directory is not on the media", reader.last_offset)
    return MediaDirectories(volume, contents, infos, header)


def read_catalog(reader: DumpReader, paths: tuple[str, ...], run: RunContext) -> Catalog:
    """Stage 1: read the directories off ``reader`` and select ``paths`` (all when empty)."""
    return build_catalog(read_directories(reader, run), paths, run)


def build_catalog(
    media: MediaDirectories, paths: tuple[str, ...], run: RunContext, on_media_only: bool | None = None
) -> Catalog:
    """The tree of ``media``'s directories, restricted to ``paths`` (all when empty).

    In an incremental, entries whose inode is not on the media are left out
    (they did not change); ``on_media_only`` forces that choice either way.
    """
    volume = media.volume
    catalog = Catalog(volume=volume, first_file=media.first_file)
    contents = dict(media.contents)
    wanted = _select(contents, paths, run)
    catalog.full = wanted.get(ROOTINO, set()) is ALL
    if on_media_only is None:
        on_media_only = bool(volume.header.ddate)
    dumped = volume.dumped if on_media_only else None
    _build_tree(catalog, contents, media.infos, wanted, volume.maxino, dumped, run)
    return catalog


def _entries(contents: dict[int, bytes], ino: int) -> list:
    entries, _ = parse_directory(contents.get(ino, b""))
    return entries


def _select(contents: dict[int, bytes], paths: tuple[str, ...], run: RunContext) -> dict[int, set | None]:
    """For each directory to visit, the child names wanted (ALL for a whole subtree)."""
    if not paths:
        return {ROOTINO: ALL}
    wanted: dict[int, set | None] = {}
    for path in paths:
        parts = [p for p in path.encode("utf-8", "surrogateescape").split(b"/") if p not in (b"", b".")]
        ino = ROOTINO
        trail: list[tuple[int, bytes]] = []
        for part in parts:
            match = next((e for e in _entries(contents, ino) if e.name == part), None)
            if match is None:
                run.warn(f"{path}: not found in the dump")
                break
            trail.append((ino, part))
            ino = match.ino
        else:
            for parent, name in trail:
                if wanted.get(parent, set()) is not ALL:
                    wanted.setdefault(parent, set()).add(name)
            if ino in contents:
                wanted[ino] = ALL
    return wanted


def _build_tree(
    catalog: Catalog,
    contents: dict[int, bytes],
    infos: dict[int, InodeInfo],
    wanted: dict[int, set | None],
    maxino: int,
    dumped: InodeMap | None,
    run: RunContext,
) -> None:
    root = Directory(ROOTINO, ROOTINO, b"", infos[ROOTINO])
    catalog.directories.append(root)
    catalog.by_ino[ROOTINO] = root
    queue = deque([(root, wanted.get(ROOTINO, set()))])
    while queue:
        directory, names = queue.popleft()
        entries, problems = parse_directory(contents.pop(directory.ino, b""))
        if problems:
            run.warn(f"directory {show(directory.path)}: {len(problems)} mangled entries skipped")
        seen: set[bytes] = set()
        for entry in entries:
            if entry.name in (b".", b"..") and entry.name not in seen:
                seen.add(entry.name)
                if entry.ino == (directory.ino if entry.name == b"." else directory.parent):
                    continue  # the directory's own links: structure, not entries
            if names is not ALL and entry.name not in names:
                continue
            full = directory.path + b"/" + entry.name if directory.path else entry.name
            reason = unsafe_name_reason(entry.name)
            if reason is not None:
                run.warn(f"refused an entry of {show(directory.path)}: {reason}")
                continue
            if entry.name in seen:
                run.warn(f"{show(full)}: a second entry of the same name; ignored")
                continue
            seen.add(entry.name)
            if not 1 <= entry.ino < max(maxino, ROOTINO + 1):
                run.warn(f"{show(full)}: inode {entry.ino} is outside the dump; ignored")
                continue
            if dumped is not None and entry.ino not in dumped:
                continue  # unchanged since the base of this incremental: not on this media
            if entry.ino in infos:
                if entry.ino in catalog.by_ino:
                    run.warn(f"{show(full)}: a second name of a directory; ignored")
                    continue
                child = Directory(entry.ino, directory.ino, entry.name, infos[entry.ino], full)
                catalog.directories.append(child)
                catalog.by_ino[entry.ino] = child
                child_names = ALL if names is ALL else wanted.get(entry.ino, set())
                queue.append((child, child_names))
            elif entry.dtype == DT_DIR:
                run.warn(f"{show(full)}: directory not on media; skipped")
            else:
                catalog.links.setdefault(entry.ino, []).append(Link(directory.ino, entry.name, entry.dtype))
