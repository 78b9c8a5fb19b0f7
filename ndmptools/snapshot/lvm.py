"""LVM: ``lvcreate -s`` of the logical volume holding the path, mounted read-only to be read."""

from __future__ import annotations

import contextlib
import os

from ndmptools.engine.fsinfo import FileSystemInfo
from ndmptools.snapshot.base import Commands, Snapshot, SnapshotError, check


class LvmProvider:
    name = "lvm"
    COW_SHARE = 10  # the snapshot's copy-on-write space: a tenth of the origin volume

    def __init__(
        self, commands: Commands | None = None, mount_base: str = "/run/ndmptools/snapshots"
    ) -> None:
        self.commands = commands or Commands()
        self.mount_base = mount_base

    def _volume(self, fs: FileSystemInfo) -> tuple[str, str, int] | None:
        """(volume group, logical volume, size in bytes) of the device, or None if it is no LV."""
        try:
            done = self.commands.run(
                [
                    "lvs",
                    "--noheadings",
                    "--nosuffix",
                    "--units",
                    "b",
                    "-o",
                    "vg_name,lv_name,lv_size",
                    fs.device,
                ]
            )
        except SnapshotError:
            return None  # no LVM tools: no logical volumes either
        if done.returncode != 0:
            return None
        fields = done.stdout.split()
        if len(fields) != 3 or not fields[2].isdigit():
            return None
        return fields[0], fields[1], int(fields[2])

    def supports(self, fs: FileSystemInfo, path: str) -> bool:
        """A device-mapper device that LVM knows as a logical volume."""
        if not fs.device.startswith("/dev/"):
            return False
        real = os.path.realpath(fs.device)
        if not (real.startswith("/dev/dm-") or fs.device.startswith("/dev/mapper/")):
            return False
        return self._volume(fs) is not None

    def _mount_options(self, fs: FileSystemInfo) -> str:
        return "ro,nouuid" if fs.fstype == "xfs" else "ro"  # XFS refuses a second mount of one UUID

    def create(self, path: str, fs: FileSystemInfo, name: str, now_ns: int) -> Snapshot:
        volume = self._volume(fs)
        if volume is None:
            raise SnapshotError(f"{fs.device} is not an LVM logical volume: no LVM snapshot of {path}")
        group, origin, size = volume
        cow = max(size // self.COW_SHARE // 512 * 512, 32 << 20)
        check(
            self.commands.run(["lvcreate", "-s", "-n", name, "-L", f"{cow}b", f"{group}/{origin}"]),
            f"lvcreate -s of {group}/{origin}",
        )
        snapshot = Snapshot(self.name, name, "", now_ns, owned=True, handle={"lv": f"{group}/{name}"})
        try:
            self._mount(snapshot, path, fs, f"/dev/{group}/{name}")
        except BaseException:
            self._remove_volume(snapshot)
            raise
        return snapshot

    def existing(self, path: str, fs: FileSystemInfo, name: str) -> Snapshot:
        volume = self._volume(fs)
        if volume is None:
            raise SnapshotError(f"{fs.device} is not an LVM logical volume: no LVM snapshot of {path}")
        group = volume[0]
        done = check(
            self.commands.run(
                [
                    "lvs",
                    "--noheadings",
                    "-o",
                    "lv_time",
                    "--config",
                    "report/time_format=%s",
                    f"{group}/{name}",
                ]
            ),
            f"finding {group}/{name}",
        )
        seconds = done.stdout.strip()
        created = int(seconds) * 1_000_000_000 if seconds.isdigit() else 0
        snapshot = Snapshot(self.name, name, "", created, owned=False, handle={"lv": f"{group}/{name}"})
        self._mount(snapshot, path, fs, f"/dev/{group}/{name}")
        return snapshot

    def _mount(self, snapshot: Snapshot, path: str, fs: FileSystemInfo, device: str) -> None:
        mount_point = os.path.join(self.mount_base, snapshot.name)
        os.makedirs(mount_point, exist_ok=True)
        check(
            self.commands.run(["mount", "-o", self._mount_options(fs), device, mount_point]),
            f"mounting {device}",
        )
        snapshot.handle["mount_point"] = mount_point
        inside = os.path.relpath(fs.path_inside(path), fs.mount_root)
        snapshot.path = os.path.normpath(os.path.join(mount_point, inside))

    def _remove_volume(self, snapshot: Snapshot) -> None:
        check(
            self.commands.run(["lvremove", "-f", snapshot.handle["lv"]]), f"lvremove {snapshot.handle['lv']}"
        )

    def release(self, snapshot: Snapshot) -> None:
        """Unmount a snapshot that stays (a user's): what this dump mounted, it unmounts."""
        mount_point = snapshot.handle.pop("mount_point", None)
        if mount_point:  # mounted by this process (a context keeps no mount point)
            check(self.commands.run(["umount", mount_point]), f"unmounting {mount_point}")
            with contextlib.suppress(OSError):
                os.rmdir(mount_point)

    def exists(self, snapshot: Snapshot) -> bool:
        return self.commands.run(["lvs", "--noheadings", snapshot.handle["lv"]]).returncode == 0

    def delete(self, snapshot: Snapshot) -> None:
        self.release(snapshot)
        self._remove_volume(snapshot)
