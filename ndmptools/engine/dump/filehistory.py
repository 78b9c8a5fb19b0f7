"""File history while dumping: each inode and its place on media, as the writer writes it.

The writer tells the recorder of each inode once it is on media: the c_tapea
of its first header (where a direct-access restore seeks to) and the data
blocks it took. A directory goes with its entries as written (the names are
in them, so nothing is parsed or joined while dumping); every other inode
is packed into its batch's bytes at once (a tuple per file would cost the
dump more in allocation than all the rest). Batches go to the state database
whole, so the dump pays one short transaction per batch, not per file, and
memory holds a batch at most.
"""

from __future__ import annotations

from collections.abc import Callable

from ndmptools.format.header import InodeInfo
from ndmptools.state.catalog import DirectoryRow, FileCatalog, InodeRows


class FileHistoryRecorder:
    """Collects one dump's catalog rows and writes them every ``batch`` inodes."""

    # Inodes (or directories) a batch holds: 4,096 rows stay under 128 KiB, which malloc takes from its
    # heap again and again rather than from fresh pages each time. Tests lower it to flush often.
    BATCH = 4096

    def __init__(self, catalog: FileCatalog, dump_id: int, root: bytes, batch: int | None = None) -> None:
        self.catalog = catalog
        self.dump_id = dump_id
        self.root = root.rstrip(b"/") or b"/"
        self.batch = batch or self.BATCH
        self._directories: list[DirectoryRow] = []
        self._inodes = InodeRows(self.batch, self.flush)
        # inode(ino, info, tapea, blocks): any inode but a directory is on media, its first header at
        # c_tapea ``tapea``, with ``blocks`` data blocks. Once per file: straight to the packing.
        self.inode: Callable[[int, InodeInfo, int, int], None] = self._inodes.add
        self.inodes = 0  # recorded, directories included (a hard link is one)

    def relative(self, path: bytes) -> bytes:
        """A walk path (inside the snapshot) relative to the dump's root."""
        if path == self.root:
            return b""
        prefix = self.root if self.root.endswith(b"/") else self.root + b"/"
        return path[len(prefix) :] if path.startswith(prefix) else path

    def restart_from(self, ino: int | None) -> None:
        """A restart writes inode ``ino`` and those above again (None: the whole dump): forget them first."""
        if ino is None:
            self.catalog.drop(self.dump_id)
        else:
            self.catalog.forget_inodes_from(self.dump_id, ino)

    def directory(
        self, ino: int, path: bytes, info: InodeInfo, tapea: int, blocks: int, contents: bytes
    ) -> None:
        """Directory ``ino`` (at walk path ``path``) is on media, its entries ``contents``."""
        self._directories.append(
            (
                self.relative(path),
                ino,
                info.mode,
                info.size,
                info.mtime_ns,
                tapea,
                blocks,
                contents,
                info.birth_ns,
                info.flags,
                info.uid,
                info.gid,
            )
        )
        if len(self._directories) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Write what is collected (before a checkpoint, so a restart finds it all)."""
        if self._directories or self._inodes:
            self.catalog.add(self.dump_id, self._directories, self._inodes)
            self.inodes += len(self._directories) + len(self._inodes)
            self._directories = []
            self._inodes.clear()
