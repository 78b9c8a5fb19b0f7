"""What every snapshot provider offers, and the one seam its commands go through."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ndmptools.engine.fsinfo import FileSystemInfo
from ndmptools.errors import SnapshotError


class NameTaken(SnapshotError):
    """A snapshot of that name exists already: the next name is tried."""


@dataclass
class Snapshot:
    """A read-only copy of the file system that holds a dumped path."""

    provider: str
    name: str
    path: str  # where the dumped path is inside the snapshot
    created_ns: int  # when it was taken: the dump's date
    owned: bool  # made by this dump, so removed by it
    live: bool = False  # no snapshot at all: the live tree (provider none)
    exclude_at_root: tuple[bytes, ...] = ()  # names at the dump's root that are the snapshots themselves
    handle: dict = field(default_factory=dict)  # what the provider needs to remove it


class Commands:
    """How providers run btrfs, lvcreate, mount, zfs ...: the seam a test replaces with a stand-in."""

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(list(argv), capture_output=True, text=True, timeout=600, check=False)
        except FileNotFoundError:
            raise SnapshotError(f"{argv[0]} is not installed") from None
        except subprocess.TimeoutExpired:
            raise SnapshotError(f"{' '.join(argv)} did not finish in 10 minutes") from None


def check(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    """A failed command as one line: what failed and the last thing it said."""
    if done.returncode == 0:
        return done
    said = (done.stderr or done.stdout or "").strip().splitlines()
    last = said[-1] if said else f"exit status {done.returncode}"
    lowered = last.lower()
    if "no space" in lowered or "insufficient free space" in lowered or "out of space" in lowered:
        raise SnapshotError(f"no space for the snapshot: {what} failed: {last}")
    if "exists" in lowered:
        raise NameTaken(f"{what}: {last}")
    raise SnapshotError(f"{what} failed: {last}")


class Provider(Protocol):
    name: str

    def supports(self, fs: FileSystemInfo, path: str) -> bool:
        """Whether this provider can snapshot the file system holding ``path``."""

    def create(self, path: str, fs: FileSystemInfo, name: str, now_ns: int) -> Snapshot:
        """A new read-only snapshot named ``name``, taken after ``now_ns``."""

    def existing(self, path: str, fs: FileSystemInfo, name: str) -> Snapshot:
        """A snapshot the user made: used as it is, never removed."""

    def delete(self, snapshot: Snapshot) -> None:
        """Remove a snapshot this dump made."""

    def exists(self, snapshot: Snapshot) -> bool:
        """Whether a snapshot kept by a context is still there (its handle says where)."""
