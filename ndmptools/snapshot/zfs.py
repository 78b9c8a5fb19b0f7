"""ZFS: ``zfs snapshot`` of the dataset holding the path, read through its ``.zfs/snapshot``."""

from __future__ import annotations

import os

from ndmptools.engine.fsinfo import FileSystemInfo
from ndmptools.snapshot.base import Commands, Snapshot, SnapshotError, check


class ZfsProvider:
    name = "zfs"

    def __init__(self, commands: Commands | None = None) -> None:
        self.commands = commands or Commands()

    def supports(self, fs: FileSystemInfo, path: str) -> bool:
        return fs.fstype == "zfs"

    def _snapshot(self, path: str, fs: FileSystemInfo, name: str, created_ns: int, owned: bool) -> Snapshot:
        dataset = fs.device  # mountinfo names the dataset, e.g. tank/home
        top = os.path.join(fs.mount_point, ".zfs", "snapshot", name)
        inside = os.path.normpath(os.path.join(top, os.path.relpath(path, fs.mount_point)))
        return Snapshot(self.name, name, inside, created_ns, owned, handle={"snapshot": f"{dataset}@{name}"})

    def create(self, path: str, fs: FileSystemInfo, name: str, now_ns: int) -> Snapshot:
        if not self.supports(fs, path):
            raise SnapshotError(f"{path} is not on ZFS: no ZFS snapshot of it")
        check(self.commands.run(["zfs", "snapshot", f"{fs.device}@{name}"]), f"zfs snapshot of {fs.device}")
        return self._snapshot(path, fs, name, now_ns, owned=True)

    def existing(self, path: str, fs: FileSystemInfo, name: str) -> Snapshot:
        if not self.supports(fs, path):
            raise SnapshotError(f"{path} is not on ZFS: no ZFS snapshot of it")
        done = check(
            self.commands.run(["zfs", "get", "-Hp", "-o", "value", "creation", f"{fs.device}@{name}"]),
            f"finding {fs.device}@{name}",
        )
        seconds = done.stdout.strip()
        created = int(seconds) * 1_000_000_000 if seconds.isdigit() else 0
        return self._snapshot(path, fs, name, created, owned=False)

    def exists(self, snapshot: Snapshot) -> bool:
        done = self.commands.run(["zfs", "list", "-H", "-o", "name", snapshot.handle["snapshot"]])
        return done.returncode == 0

    def delete(self, snapshot: Snapshot) -> None:
        check(
            self.commands.run(["zfs", "destroy", snapshot.handle["snapshot"]]),
            f"zfs destroy {snapshot.handle['snapshot']}",
        )
