"""Small real file systems on loop devices, for what only a full disk shows."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def ext4(
    base: Path, size: str, inodes: int | None = None, name: str = "small", features: str = ""
) -> Iterator[Path]:
    """A fresh ext4 of ``size`` (with about ``inodes`` inodes, mke2fs ``features`` added), under ``base``."""
    image, mnt = base / f"{name}.img", base / name
    mnt.mkdir()
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    # No reserved blocks and no journal: what statvfs says is free is what a restore can use.
    options = ["-q", "-F", "-t", "ext4", "-m", "0", "-O", "^has_journal"]
    if inodes is not None:
        options += ["-N", str(inodes)]
    if features:
        options[-1] += "," + features
    subprocess.run(["mke2fs", *options, str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        (mnt / "lost+found").rmdir()  # a restore's target should start empty
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@contextmanager
def xfs(base: Path, name: str = "xfs") -> Iterator[Path]:
    """A fresh XFS (the smallest mkfs.xfs makes), mounted under ``base``: it has project ids."""
    image, mnt = base / f"{name}.img", base / name
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "300M", str(image)], check=True)
    subprocess.run(["mkfs.xfs", "-q", "-f", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
