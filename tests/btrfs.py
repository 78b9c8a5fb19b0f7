"""A btrfs file system on a loop device, for the tests that need real snapshots."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def btrfs_subvolume(base: Path, name: str = "vol") -> Iterator[Path]:
    """A fresh 400 MB btrfs, mounted under ``base``, with one subvolume ``name`` to dump."""
    image, mnt = base / "btrfs.img", base / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "400M", str(image)], check=True)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        subprocess.run(["btrfs", "subvolume", "create", str(mnt / name)], check=True, capture_output=True)
        yield mnt / name
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
