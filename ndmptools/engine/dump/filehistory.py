"""File history while dumping: names from pass III, inodes and their places from pass IV.

The writer tells the recorder of each inode's first header (its c_tapea is
where a direct-access restore seeks to); pass III tells it the names in each
directory it writes. Rows are kept in lists and handed to the state database
in batches, so the dump pays one short transaction per batch, not per file.
"""

from __future__ import annotations

from ndmptools.format.constants import ROOTINO
from ndmptools.format.dirent import parse_directory
from ndmptools.format.header import InodeInfo
from ndmptools.state.catalog import FileCatalog


class FileHistoryRecorder:
    """Collects one dump's catalog rows and writes them every ``batch`` rows."""

    def __init__(self, catalog: FileCatalog, dump_id: int, root: bytes, batch: int = 20_000) -> None:
        self.catalog = catalog
        self.dump_id = dump_id
        self.root = root.rstrip(b"/") or b"/"
        self.batch = batch
        self._names: list[tuple[bytes, int]] = []
        self._inodes: list[tuple[int, int, int, int, int]] = []
        self.rows = 0

    def relative(self, path: bytes) -> bytes:
        """A walk path (inside the snapshot) relative to the dump's root."""
        if path == self.root:
            return b""
        prefix = self.root if self.root.endswith(b"/") else self.root + b"/"
        return path[len(prefix) :] if path.startswith(prefix) else path

    def directory(self, ino: int, path: bytes, contents: bytes, dumped) -> None:
        """The names directory ``ino`` (at walk path ``path``) lists whose inode is on this dump."""
        base = self.relative(path)
        if ino == ROOTINO:
            self._names.append((b"", ROOTINO))
        entries, _ = parse_directory(contents)
        for entry in entries:
            if entry.name in (b".", b"..") or (dumped is not None and entry.ino not in dumped):
                continue
            self._names.append((base + b"/" + entry.name if base else entry.name, entry.ino))
        if len(self._names) >= self.batch:
            self.flush()

    def inode(self, ino: int, info: InodeInfo, tapea: int) -> None:
        self._inodes.append((ino, info.mode, info.size, info.mtime_ns, tapea))
        if len(self._inodes) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Write what is collected (before a checkpoint, so a restart finds it all)."""
        if self._names or self._inodes:
            self.catalog.add(self.dump_id, self._names, self._inodes)
            self.rows += len(self._names)
            self._names, self._inodes = [], []
