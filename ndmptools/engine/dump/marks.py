"""Pass I and the restore marks: files under a running restore are left out, and taken next time.

A regular file whose mark (engine/restoremarks.py) names a restore that still
runs is incomplete: the walk leaves it out of its directory and of the maps,
as if it were not there, warns, and the dump records it in the state
database. A mark whose restore is gone is stale: the file is dumped as it is,
with a warning that it may be incomplete, so nothing stays out of backups
for ever.

From a snapshot, the mark is read in the snapshot but the restore's fate is
judged now, a moment later: a restore that ended in between has finished or
removed the file since, and then the live file no longer carries that mark.
So a dead restore's mark counts as stale only if the live file still has it;
otherwise the snapshot caught the file mid-restore and it is left out too.

What a dump left out, the next dumps of its chain include, whatever their
times say: an incremental whose base chain has a dump that left a file out,
with no later dump of that chain that put it on media, takes the file (see
state/marks.py). The check costs one listxattr per regular file, which a
file without extended attributes answers with an empty list; an incremental
asks none of a file of its base whose times say it is untouched since (a
mark changes ctime, and one older than the base made the base leave the file
out, so it is among those taken now).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from ndmptools.engine.progress import RunContext
from ndmptools.engine.restoremarks import MARK_XATTR, RestoreMark, read_mark

SKIPPED = "skipped"
INCLUDED = "included"
MAX_NAMED = 20  # files under restore named one warning each; the rest are counted in one more


@dataclass(frozen=True)
class MarkedFile:
    """A file a dump left out (``SKIPPED``), or one left out before that it put on media (``INCLUDED``)."""

    ino: int  # its inode number on the file system: the inode map's key, stable along a chain
    path: bytes  # relative to the dump's root
    state: str
    mark: str = ""


class MarkFilter:
    """Decides, file by file in pass I, what a running restore keeps out of this dump."""

    def __init__(
        self,
        run: RunContext,
        shown_root: bytes,
        *,
        live_root: bytes | None = None,
        forced: dict[int, bytes] | None = None,
        fixed_skips: dict[int, bytes] | None = None,
    ) -> None:
        """``shown_root``: the dumped path, for messages; ``live_root``: the same in the live tree,
        when the walk reads a snapshot; ``forced``: files earlier dumps left out (inode -> path);
        ``fixed_skips``: a restart's decisions, taken again without reading any mark."""
        self.run = run
        self.shown_root = shown_root
        self.live_root = live_root
        self.forced = forced or {}
        self.fixed = fixed_skips
        self.files: list[MarkedFile] = []  # what the state database is told, in walk order
        self._walk_root = b""
        self._shown_top = shown_root
        self._live_top = live_root
        self._verdicts: dict[bytes, tuple[bool, str]] = {}  # mark -> (running, why not)
        self._checking = fixed_skips is None
        self._directory = b""  # the directory of the last file checked, and its path with a slash
        self._prefix = b""

    @property
    def skipped(self) -> list[MarkedFile]:
        return [f for f in self.files if f.state == SKIPPED]

    @property
    def included(self) -> list[MarkedFile]:
        return [f for f in self.files if f.state == INCLUDED]

    def start(self, walk_root: bytes, single_path: bool) -> None:
        """The walk begins at ``walk_root`` (the dumped path, or its directory for a single path)."""
        self._walk_root = walk_root.rstrip(b"/") or b"/"
        if single_path:
            self._shown_top = os.path.dirname(self.shown_root)
            self._live_top = os.path.dirname(self.live_root) if self.live_root is not None else None

    def shown(self, marked: MarkedFile) -> str:
        """Where a file is, as the user named the dumped path."""
        return _show(os.path.join(self._shown_top, marked.path))

    def as_spec(self) -> dict:
        """The decisions, for a restart to take again on the same snapshot."""
        return {
            "skip": {str(f.ino): f.path.hex() for f in self.skipped},
            "forced": {str(ino): path.hex() for ino, path in self.forced.items()},
        }

    @classmethod
    def from_spec(cls, run: RunContext, shown_root: bytes, spec: dict | None) -> MarkFilter:
        """A restart's filter: what the first run left out stays out; nothing is read again."""
        spec = spec or {}

        def decode(entries: dict) -> dict[int, bytes]:
            return {int(ino): bytes.fromhex(path) for ino, path in entries.items()}

        return cls(
            run,
            shown_root,
            forced=decode(spec.get("forced", {})),
            fixed_skips=decode(spec.get("skip", {})),
        )

    def _relative(self, directory: bytes, name: bytes) -> bytes:
        if directory == self._walk_root:
            return name
        prefix = self._walk_root if self._walk_root.endswith(b"/") else self._walk_root + b"/"
        return directory[len(prefix) :] + b"/" + name

    def leaves_out(self, directory: bytes, name: bytes, ino: int) -> bool:
        """Whether the regular file ``name`` in ``directory`` (inode ``ino``) stays out of this dump.

        Called for every regular file: the common case (no extended attributes)
        is one listxattr and nothing else.
        """
        if self.fixed is not None:
            if ino in self.fixed:
                self.files.append(MarkedFile(ino, self._relative(directory, name), SKIPPED))
                return True
        elif self._checking:
            if directory is not self._directory:
                self._directory = directory
                self._prefix = directory if directory.endswith(b"/") else directory + b"/"
            path = self._prefix + name
            try:
                names = os.listxattr(path, follow_symlinks=False)
            except OSError as err:
                names = ()
                if err.errno in (errno.ENOTSUP, errno.ENOSYS):
                    self._checking = False  # no extended attributes on this file system: nothing is marked
                # else gone, or unreadable: pass IV says so when it opens the file
            if names and MARK_XATTR in names:
                mark = self._read(path)
                if mark is not None and self._under_restore(directory, name, mark):
                    self.files.append(MarkedFile(ino, self._relative(directory, name), SKIPPED, _text(mark)))
                    return True
        if self.forced and ino in self.forced:
            self.files.append(MarkedFile(ino, self._relative(directory, name), INCLUDED))
        return False

    @staticmethod
    def _read(path: bytes) -> bytes | None:
        try:
            return os.getxattr(path, MARK_XATTR, follow_symlinks=False)
        except OSError:
            return None  # removed since listxattr (the restore finished it), or the file went

    def _under_restore(self, directory: bytes, name: bytes, mark: bytes) -> bool:
        """True: leave the file out (warned); False: dump it (warned when the mark is stale)."""
        relative = self._relative(directory, name)
        shown = _show(os.path.join(self._shown_top, relative))
        parsed = RestoreMark.parse(mark)
        if parsed is None:
            self.run.warn(
                f"{shown}: carries a {MARK_XATTR} mark ndmptools cannot read; dumped as it is, "
                "it may be incomplete"
            )
            return False
        if mark not in self._verdicts:
            self._verdicts[mark] = parsed.running()
        running, why_not = self._verdicts[mark]
        named = len(self.skipped) < MAX_NAMED  # a restore under way may have made a million files
        if running:
            if named:
                self.run.warn(
                    f"{shown}: being restored (by {parsed.describe()}): left out of this dump; "
                    "the next dump of this path takes it"
                )
            return True
        if self._live_top is not None and self._live_mark(relative) != mark:
            if named:
                self.run.warn(
                    f"{shown}: was being restored when the snapshot was taken (by {parsed.describe()}, "
                    "which has ended since): left out of this dump; the next dump of this path takes it"
                )
            return True
        self.run.warn(
            f"{shown}: left by a restore that is no longer running ({why_not}); dumped as it is, it may "
            f"be incomplete (once it is checked, `setfattr -x {MARK_XATTR}` clears the mark)"
        )
        return False

    def finish(self) -> None:
        """After the walk: one warning for the files left out beyond the ones named."""
        unnamed = len(self.skipped) - MAX_NAMED
        if unnamed > 0 and self.fixed is None:
            self.run.warn(
                f"{unnamed:,} more files under restore left out of this dump (dump --json lists them all); "
                "the next dump of this path takes them"
            )

    def _live_mark(self, relative: bytes) -> bytes | None:
        """The mark the file has in the live tree now (None: none, or no file)."""
        try:
            return read_mark(os.path.join(self._live_top, relative))
        except OSError:
            return None


def _text(mark: bytes) -> str:
    return mark.decode(errors="replace")


def _show(path: bytes) -> str:
    return os.fsdecode(path)
