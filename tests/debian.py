"""Debian's dump and restore 0.4b47, the format oracle in both directions.

Debian's dump reads a file system from its block device; an ext4 image made
with ``mke2fs -d`` and attached with ``losetup`` gives it one without mounting.
"""

from __future__ import annotations

import os
import shutil
import subprocess

DUMP = shutil.which("dump") or "/usr/sbin/dump"
RESTORE = shutil.which("restore") or "/usr/sbin/restore"


def missing_tools() -> list[str]:
    """Debian tools the interop tests need that are not installed (make test installs them)."""
    wanted = {
        "dump": DUMP,
        "restore": RESTORE,
        "mke2fs": shutil.which("mke2fs") or "/usr/sbin/mke2fs",
        "losetup": shutil.which("losetup") or "/usr/sbin/losetup",
    }
    return [name for name, path in wanted.items() if not os.access(path, os.X_OK)]


def debian_dump_of(tree: str, image_dir: str, *, size: str = "256M", blocking_factor: int = 32) -> str:
    """Dump ``tree`` with Debian dump (via an ext4 image of it); returns the dump file."""
    image = os.path.join(image_dir, "fs.img")
    out = os.path.join(image_dir, "debian.dump")
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-I", "256", "-d", tree, image, size], check=True)
    loop = subprocess.run(
        ["losetup", "-f", "--show", image], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        subprocess.run(
            [DUMP, "-0", "-q", "-b", str(blocking_factor), "-f", out, loop], check=True, capture_output=True
        )
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
    return out


def restore(args: list[str], cwd: str, stdin: str = "y\n") -> subprocess.CompletedProcess:
    """Run Debian restore in ``cwd``; the one question it asks (owner/mode of '.') gets ``stdin``."""
    return subprocess.run([RESTORE, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300)
