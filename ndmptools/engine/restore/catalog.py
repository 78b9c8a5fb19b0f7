"""Stage 1 of a restore: read the directories and decide what to extract.

The dump's directories come first on media (pass III). They are read whole,
checked, and turned into a tree rooted at ROOTINO; every name that could
reach outside the target ('/', NUL, '.', '..', empty) is refused here, once,
so later stages only ever see safe single path components.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ndmptools.engine.errors import UsageError
from ndmptools.engine.progress import RunContext
from ndmptools.errors import FormatError
from ndmptools.format.bitmap import InodeMap
from ndmptools.format.constants import DT_DIR, ROOTINO
from ndmptools.format.dirent import parse_directory
from ndmptools.format.header import Header, InodeInfo
from ndmptools.format.reader import DumpReader, VolumeStart
from ndmptools.format.xattr import ReadAttributes, decode_areas

ALL = None  # in Selection.wanted: every child of the directory
NAMED = frozenset()  # in Selection.wanted: a directory a PATH names, without its children (RECURSIVE=N)


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
    info: InodeInfo | None  # None: made for a --rename, not on media
    path: bytes = b""  # relative to the dump's root; b"" for the root itself
    whole: bool = True  # all its entries are restored (not only the way to a PATH)
    named: bool = False  # a PATH names it, or it is below one (not only on the way to one)


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
    attributes: dict[int, ReadAttributes] = field(default_factory=dict)  # of directories that have any

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
    attributes: dict[int, ReadAttributes] = field(default_factory=dict)  # of those that have any


def read_directories(
    reader: DumpReader, run: RunContext, volume: VolumeStart | None = None
) -> MediaDirectories:
    """The volume start (unless read already) and the directories (pass III) of a dump."""
    if volume is None:
        volume = reader.read_volume_start()
    contents: dict[int, bytes] = {}
    infos: dict[int, InodeInfo] = {}
    attributes: dict[int, ReadAttributes] = {}
    header = reader.next_inode()
    while header is not None and header.inode.is_dir:
        data, complete = reader.read_small(header)
        areas = reader.read_attributes(header.inumber)
        if areas:
            attributes[header.inumber] = decode_areas(areas)
        if not complete:
            run.warn(f"directory inode {header.inumber} is incomplete on media; its entries may be missing")
        contents[header.inumber] = data
        infos[header.inumber] = header.inode
        header = reader.next_inode()
    if ROOTINO not in contents:
        raise FormatError("the root directory is not on the media", reader.last_offset)
    return MediaDirectories(volume, contents, infos, header, attributes)


def read_catalog(reader: DumpReader, paths: tuple[str, ...], run: RunContext) -> Catalog:
    """Stage 1: read the directories off ``reader`` and select ``paths`` (all when empty)."""
    return build_catalog(read_directories(reader, run), paths, run)


def build_catalog(
    media: MediaDirectories,
    paths: tuple[str, ...],
    run: RunContext,
    on_media_only: bool | None = None,
    recursive: bool = True,
) -> Catalog:
    """The tree of ``media``'s directories, restricted to ``paths`` (all when empty).

    In an incremental, entries whose inode is not on the media are left out
    (they did not change); ``on_media_only`` forces that choice either way.
    ``recursive`` off (RECURSIVE=N): a directory PATH is restored without
    what is in it.
    """
    volume = media.volume
    catalog = Catalog(volume=volume, first_file=media.first_file, attributes=media.attributes)
    contents = dict(media.contents)
    wanted = _select(contents, paths, run, recursive)
    catalog.full = wanted.get(ROOTINO, set()) is ALL
    if on_media_only is None:
        on_media_only = bool(volume.header.ddate)
    dumped = volume.dumped if on_media_only else None
    _build_tree(catalog, contents, media.infos, wanted, volume.maxino, dumped, run)
    return catalog


def _entries(contents: dict[int, bytes], ino: int) -> list:
    entries, _ = parse_directory(contents.get(ino, b""))
    return entries


def _select(
    contents: dict[int, bytes], paths: tuple[str, ...], run: RunContext, recursive: bool = True
) -> dict[int, set | None]:
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
                current = wanted.get(parent, set())
                if current is not ALL:
                    wanted[parent] = {*current, name}  # a NAMED directory, too, leads on to this PATH
            if ino in contents:
                if recursive or ino == ROOTINO:
                    wanted[ino] = ALL
                elif ino not in wanted:
                    wanted[ino] = NAMED
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
    root = Directory(ROOTINO, ROOTINO, b"", infos[ROOTINO], whole=wanted.get(ROOTINO) is ALL)
    root.named = root.whole
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
                child_names = ALL if names is ALL else wanted.get(entry.ino, set())
                child = Directory(
                    entry.ino,
                    directory.ino,
                    entry.name,
                    infos[entry.ino],
                    full,
                    child_names is ALL,
                    child_names is ALL or child_names is NAMED,
                )
                catalog.directories.append(child)
                catalog.by_ino[entry.ino] = child
                queue.append((child, child_names))
            elif entry.dtype == DT_DIR:
                run.warn(f"{show(full)}: directory not on media; skipped")
            else:
                catalog.links.setdefault(entry.ino, []).append(Link(directory.ino, entry.name, entry.dtype))


# -- EXTRACT=E: renaming on the way ----------------------------------------------------------------


def apply_renames(catalog: Catalog, renames: tuple[tuple[bytes, bytes], ...]) -> None:
    """Move each OLD entry of the catalog (selected already, as a PATH) to NEW, in order.

    NEW is relative to the target; directories on the way to it that the
    dump does not restore there are made (mode from the umask, owned by the
    restoring user). A directory restored only as the way to an OLD is left
    out once nothing is restored under it. Nothing is written yet: a rename
    that cannot be done is a UsageError before stage 2.
    """
    if not renames:
        return
    directories = {d.path: d for d in catalog.directories}
    files = {catalog.path_of(link): link for links in catalog.links.values() for link in links}
    moves = [(old, new, directories.get(old) or files.get(old)) for old, new in renames]
    synthetic = -1  # inode numbers of the directories a rename makes: never a dump's
    for old, new, item in moves:
        if item is None:
            continue  # not in the dump: said already, as for any PATH
        parent = catalog.by_ino[ROOTINO]
        *through, name = new.split(b"/")
        for part in through:
            child = next((d for d in _child_dirs(catalog, parent.ino) if d.name == part), None)
            if child is None:
                if _name_taken(catalog, parent.ino, part, None):
                    raise UsageError(f"--rename {show(old)}={show(new)}: {show(part)} is a file in the dump")
                child = Directory(synthetic, parent.ino, part, None, whole=False)
                synthetic -= 1
                catalog.directories.append(child)
                catalog.by_ino[child.ino] = child
            parent = child
        if isinstance(item, Directory) and _within(catalog, parent, item):
            raise UsageError(f"--rename {show(old)}={show(new)}: a directory cannot go inside itself")
        if _name_taken(catalog, parent.ino, name, item):
            raise UsageError(
                f"--rename {show(old)}={show(new)}: {show(new)} is restored from the dump already"
            )
        item.parent, item.name = parent.ino, name
    _reorder(catalog)
    _prune(catalog)


def _child_dirs(catalog: Catalog, ino: int) -> list[Directory]:
    return [d for d in catalog.directories if d.parent == ino and d.ino != ROOTINO]


def _name_taken(catalog: Catalog, parent: int, name: bytes, mover) -> bool:
    if any(d.name == name and d is not mover for d in _child_dirs(catalog, parent)):
        return True
    return any(
        link.parent == parent and link.name == name and link is not mover
        for links in catalog.links.values()
        for link in links
    )


def _within(catalog: Catalog, directory: Directory, ancestor: Directory) -> bool:
    """``directory`` is ``ancestor`` or lies under it."""
    while True:
        if directory is ancestor:
            return True
        if directory.ino == ROOTINO:
            return False
        directory = catalog.by_ino[directory.parent]


def _reorder(catalog: Catalog) -> None:
    """Parents before children again, and every path as it is now."""
    children: dict[int, list[Directory]] = {}
    for directory in catalog.directories[1:]:
        children.setdefault(directory.parent, []).append(directory)
    ordered = [catalog.directories[0]]
    for directory in ordered:  # grows as it goes: breadth first
        for child in children.get(directory.ino, ()):
            child.path = directory.path + b"/" + child.name if directory.path else child.name
            ordered.append(child)
    catalog.directories = ordered


def _prune(catalog: Catalog) -> None:
    """Drop the directories that were only the way to a renamed entry, deepest first."""
    used: dict[int, int] = {}
    for directory in catalog.directories[1:]:
        used[directory.parent] = used.get(directory.parent, 0) + 1
    for links in catalog.links.values():
        for link in links:
            used[link.parent] = used.get(link.parent, 0) + 1
    dropped = set()
    for directory in reversed(catalog.directories[1:]):
        if not directory.whole and directory.ino > 0 and not used.get(directory.ino):
            dropped.add(directory.ino)
            used[directory.parent] -= 1
    if dropped:
        catalog.directories = [d for d in catalog.directories if d.ino not in dropped]
        for ino in dropped:
            del catalog.by_ino[ino]
