"""Snapshots to dump from: btrfs, LVM and ZFS providers behind one interface, and "none".

A dump takes its own snapshot, named snapshot_for_backup.N, and removes it
when done; or it uses one the user names, and leaves it alone. N counts up
from 0 with every snapshot made and starts again at 0 after a reboot (the
boot id tells), as the seed's dump engine counts; two dumps at once get two
names. Provider "none" dumps the live tree and says so.
"""

from __future__ import annotations

import fcntl
import json
import os

from ndmptools.engine.fsinfo import FileSystemInfo
from ndmptools.snapshot.base import Commands, NameTaken, Provider, Snapshot, SnapshotError
from ndmptools.snapshot.btrfs import BtrfsProvider
from ndmptools.snapshot.lvm import LvmProvider
from ndmptools.snapshot.zfs import ZfsProvider

BOOT_ID = "/proc/sys/kernel/random/boot_id"
NAME_PREFIX = "snapshot_for_backup."
PROVIDER_NAMES = ("auto", "btrfs", "lvm", "zfs", "none")


class LiveProvider:
    """No snapshot: the live tree, whose changes during the dump are reported."""

    name = "none"

    def supports(self, fs: FileSystemInfo, path: str) -> bool:
        return True

    def create(self, path: str, fs: FileSystemInfo, name: str, now_ns: int) -> Snapshot:
        return Snapshot(self.name, "(the live tree)", path, now_ns, owned=False, live=True)

    def existing(self, path: str, fs: FileSystemInfo, name: str) -> Snapshot:
        raise SnapshotError(
            "--snapshot names a snapshot to dump from: it needs a snapshot provider, not none"
        )

    def delete(self, snapshot: Snapshot) -> None:
        pass

    def exists(self, snapshot: Snapshot) -> bool:
        return False


def make_provider(name: str, commands: Commands | None = None) -> Provider:
    if name == "btrfs":
        return BtrfsProvider(commands)
    if name == "lvm":
        return LvmProvider(commands)
    if name == "zfs":
        return ZfsProvider(commands)
    if name == "none":
        return LiveProvider()
    raise SnapshotError(f"no snapshot provider {name!r} (one of {', '.join(PROVIDER_NAMES)})")


def choose_provider(
    fs: FileSystemInfo | None, path: str, forced: str | None = None, commands: Commands | None = None
) -> Provider:
    """The provider for the file system of ``path``: the one forced, else the first that can."""
    if forced and forced != "auto":
        provider = make_provider(forced, commands)
        if forced != "none" and (fs is None or not provider.supports(fs, path)):
            kind = fs.fstype if fs else "an unknown file system"
            raise SnapshotError(f"{path} is on {kind}, which the {forced} provider cannot snapshot")
        return provider
    if fs is not None:
        for name in ("btrfs", "zfs", "lvm"):
            provider = make_provider(name, commands)
            if provider.supports(fs, path):
                return provider
    return LiveProvider()


def current_boot_id() -> str:
    try:
        with open(BOOT_ID) as f:
            return f.read().strip()
    except OSError:
        return "unknown"


class SnapshotNames:
    """snapshot_for_backup.N: N from a counter in the state directory, reset when the boot id changes."""

    FILE = "snapshot-counter"

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, self.FILE)
        os.makedirs(state_dir, mode=0o700, exist_ok=True)

    def reserve(self) -> str:
        """The next name; a lock on the counter gives concurrent dumps different ones."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 4096, 0)
            try:
                counter = json.loads(raw) if raw else {}
            except ValueError:
                counter = {}
            boot = current_boot_id()
            number = counter.get("next", 0) if counter.get("boot_id") == boot else 0
            data = json.dumps({"boot_id": boot, "next": number + 1}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            return f"{NAME_PREFIX}{number}"
        finally:
            os.close(fd)  # releases the lock


def take_snapshot(
    provider: Provider, path: str, fs: FileSystemInfo | None, names: SnapshotNames, clock
) -> Snapshot:
    """A new snapshot under the next free name; the clock is read just before it is taken."""
    if isinstance(provider, LiveProvider):
        return provider.create(path, fs, "", clock())
    for _ in range(1000):
        name = names.reserve()
        try:
            return provider.create(path, fs, name, clock())
        except NameTaken:
            continue  # left over from before a reboot: the counter moves on
    raise SnapshotError("no free snapshot_for_backup.N name after 1000 tries")


def release_snapshot(provider: Provider, snapshot: Snapshot, keep: bool = False) -> None:
    """Remove a snapshot this dump made; unmount one it only used (LVM) or keeps for a restart."""
    if snapshot.owned and not keep:
        provider.delete(snapshot)
    elif hasattr(provider, "release"):
        provider.release(snapshot)


__all__ = [
    "PROVIDER_NAMES",
    "Commands",
    "LiveProvider",
    "Provider",
    "Snapshot",
    "SnapshotError",
    "SnapshotNames",
    "choose_provider",
    "make_provider",
    "release_snapshot",
    "take_snapshot",
]
