"""btrfs: a read-only snapshot of the subvolume that holds the dumped path.

Snapshots go in ``.snapshot`` at the top of that subvolume, as a volume's
Snapshot copies do on the seed's systems; a dump of the whole subvolume
leaves that directory out (it holds nothing but the snapshots themselves).
"""

from __future__ import annotations

import os
import stat

from ndmptools.engine.fsinfo import FileSystemInfo
from ndmptools.engine.statx import birth_time_ns
from ndmptools.snapshot.base import Commands, NameTaken, Snapshot, SnapshotError, check

SUBVOLUME_ROOT_INODE = 256  # BTRFS_FIRST_FREE_OBJECTID: the root directory of every subvolume
EMPTY_SUBVOLUME_INODE = 2  # how a subvolume nested in a snapshot shows: an empty directory
CONTAINER = ".snapshot"


def subvolume_root(path: str) -> str:
    """The top directory of the subvolume that holds ``path``."""
    current = path if os.path.isdir(path) else os.path.dirname(path)
    device = os.stat(current).st_dev
    while True:
        st = os.stat(current)
        if st.st_ino == SUBVOLUME_ROOT_INODE and st.st_dev == device:
            return current
        parent = os.path.dirname(current)
        if parent == current or os.stat(parent).st_dev != device:
            return current
        current = parent


def holds_only_snapshots(directory: str) -> bool:
    """A .snapshot directory of ours: in a snapshot, nothing in it but empty subvolume stand-ins."""
    try:
        with os.scandir(directory) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode) or st.st_ino not in (
                    EMPTY_SUBVOLUME_INODE,
                    SUBVOLUME_ROOT_INODE,
                ):
                    return False
    except OSError:
        return False
    return True


class BtrfsProvider:
    name = "btrfs"

    def __init__(self, commands: Commands | None = None) -> None:
        self.commands = commands or Commands()

    def supports(self, fs: FileSystemInfo, path: str) -> bool:
        return fs.fstype == "btrfs"

    def _snapshot(self, root: str, path: str, name: str, created_ns: int, owned: bool) -> Snapshot:
        top = os.path.join(root, CONTAINER, name)
        inside = os.path.normpath(os.path.join(top, os.path.relpath(path, root)))
        exclude = ()
        if os.path.normpath(path) == os.path.normpath(root) and holds_only_snapshots(
            os.path.join(top, CONTAINER)
        ):
            exclude = (CONTAINER.encode(),)
        return Snapshot(
            self.name, name, inside, created_ns, owned, exclude_at_root=exclude, handle={"snapshot": top}
        )

    def create(self, path: str, fs: FileSystemInfo, name: str, now_ns: int) -> Snapshot:
        root = subvolume_root(path)
        container = os.path.join(root, CONTAINER)
        try:
            os.makedirs(container, exist_ok=True)
        except OSError as err:
            raise SnapshotError(f"cannot make {container} for the snapshot: {err.strerror}") from None
        target = os.path.join(container, name)
        if os.path.lexists(target):
            raise NameTaken(f"{target} exists")
        check(
            self.commands.run(["btrfs", "subvolume", "snapshot", "-r", root, target]),
            f"btrfs snapshot of {root}",
        )
        return self._snapshot(root, path, name, now_ns, owned=True)

    def existing(self, path: str, fs: FileSystemInfo, name: str) -> Snapshot:
        root = subvolume_root(path)
        top = name if "/" in name else os.path.join(root, CONTAINER, name)
        if not os.path.isdir(top):
            raise SnapshotError(f"there is no snapshot {name} of {root} (looked for {top})")
        created = birth_time_ns(top) or os.stat(top).st_ctime_ns
        snapshot = self._snapshot(root, path, os.path.basename(top), created, owned=False)
        snapshot.path = os.path.normpath(os.path.join(top, os.path.relpath(path, root)))
        snapshot.handle = {"snapshot": top}
        return snapshot

    def exists(self, snapshot: Snapshot) -> bool:
        return os.path.isdir(snapshot.handle["snapshot"])

    def delete(self, snapshot: Snapshot) -> None:
        check(
            self.commands.run(["btrfs", "subvolume", "delete", snapshot.handle["snapshot"]]),
            f"removing the snapshot {snapshot.handle['snapshot']}",
        )
