"""Where a dump was taken from: the tree a compare looks at unless told (-D), and a restore's way back.

The dump history keeps the full path of each dump it recorded; the volume
header has only c_filesys, which ndmptools and Linux dump cut at 63 bytes and
which Linux dump fills with a mount point, or with "an unlisted file system"
when it read a device that is not mounted. A path that may be cut or is not
absolute is refused rather than guessed at.

A single-path dump (of one file) has the file's directory as its root,
holding that one entry, so its place is the directory. The volume start says
only that a dump has two inodes (its root and one more): whether that one was
the dumped path itself is read from the tree, or from the file history when
the path is gone.
"""

from __future__ import annotations

import os
import stat

from ndmptools.engine.errors import UsageError
from ndmptools.engine.restore.direct import dumps_of_media
from ndmptools.format.constants import DT_DIR, NAMELEN
from ndmptools.format.reader import VolumeStart
from ndmptools.state.catalog import FileCatalog
from ndmptools.state.history import DumpRecord, History

ASK = "name the directory with -D"


def _recorded(volume: VolumeStart, history: History | None) -> DumpRecord | None:
    """This dump's record in the history, when the history knows it for sure."""
    found = dumps_of_media(history, volume)
    if len({r.dumped_path for r in found}) != 1:
        return None
    return next((r for r in found if r.file_history), found[0])


def dumped_path(volume: VolumeStart, history: History | None) -> str:
    """The full path the dump was taken from: from its history record, else from c_filesys."""
    record = _recorded(volume, history)
    if record is not None:
        return record.dumped_path
    filesys = volume.header.filesys
    shown = os.fsdecode(filesys)
    if len(filesys) >= NAMELEN - 1:
        raise UsageError(
            f"the dump names where it was taken from in {NAMELEN - 1} bytes, which may be cut short "
            f"({shown}), and the dump history here does not know it: {ASK}"
        )
    if not filesys.startswith(b"/"):
        raise UsageError(f"the dump does not say which directory it was taken from ({shown!r}): {ASK}")
    return shown


def original_location(volume: VolumeStart, history: History | None) -> str:
    """The directory the dump's root was: the dumped path, or a single-path dump's directory."""
    path = dumped_path(volume, history)
    if len(volume.in_use) != 2:
        return path  # a root and more than one entry, or nothing: a directory was dumped
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError:
        return path  # the caller reports what it cannot read
    if st is not None:
        return path if stat.S_ISDIR(st.st_mode) else os.path.dirname(path)
    record = _recorded(volume, history)
    if record is None or not record.file_history:
        raise UsageError(
            f"{path} is gone, and the dump does not say whether it was a file or a directory: {ASK}"
        )
    name = os.fsencode(os.path.basename(path))
    entries = FileCatalog(history.db).select(record.id, [name])
    if any(e.path == name and not stat.S_ISDIR(e.mode) for e in entries):
        return os.path.dirname(path)
    return path


def single_entry(volume: VolumeStart, root_entries: list, history: History | None) -> bytes | None:
    """The one name in a single-path dump (a dump of that file), or None for a dump of a directory.

    ``root_entries`` are the entries of the root directory on media. The name
    must be the last part of the dumped path (of c_filesys, perhaps cut short,
    when the history does not know the dump).
    """
    names = [e for e in root_entries if e.name not in (b".", b"..")]
    if len(volume.in_use) != 2 or len(names) != 1 or names[0].dtype == DT_DIR:
        return None
    name = names[0].name
    record = _recorded(volume, history)
    known = os.fsencode(record.dumped_path) if record is not None else volume.header.filesys
    last = known.rstrip(b"/").rsplit(b"/", 1)[-1]
    cut = record is None and len(known) >= NAMELEN - 1
    return name if last == name or (cut and name.startswith(last)) else None
