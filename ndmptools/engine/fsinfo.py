"""Which mounted file system holds a path, and what it is called.

Linux dump fills c_dev with the mounted device and c_label with the file
system's label ("none" when it has none); this module finds both for any path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class FileSystemInfo:
    mount_point: str
    device: str
    fstype: str
    label: str | None = None
    uuid: str | None = None


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def find_mount(path: str, mountinfo: str = MOUNTINFO) -> FileSystemInfo | None:
    """The mount that holds ``path`` (an absolute, resolved path), or None if unknown."""
    try:
        st_dev = os.stat(path).st_dev
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best: FileSystemInfo | None = None
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        major, _, minor = fields[2].partition(":")
        if not (major.isdigit() and minor.isdigit()):
            continue
        if os.makedev(int(major), int(minor)) != st_dev:
            continue
        mount_point = _unescape(fields[4])
        if not _is_within(path, mount_point):
            continue
        if best is None or len(mount_point) >= len(best.mount_point):
            best = FileSystemInfo(mount_point=mount_point, device=_unescape(tail[1]), fstype=tail[0])
    return best


def _is_within(path: str, directory: str) -> bool:
    return directory == "/" or path == directory or path.startswith(directory.rstrip("/") + "/")


def probe_block_device(device: str) -> tuple[str | None, str | None]:
    """(label, uuid) of a block device from blkid, or (None, None) when it cannot tell."""
    if not device.startswith("/dev/") or shutil.which("blkid") is None:
        return None, None
    try:
        done = subprocess.run(
            ["blkid", "-o", "export", device], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return values.get("LABEL") or None, values.get("UUID") or None


def describe(path: str) -> FileSystemInfo | None:
    """The file system holding ``path`` with its label and UUID where blkid knows them."""
    mount = find_mount(path)
    if mount is None:
        return None
    label, uuid = probe_block_device(mount.device)
    return FileSystemInfo(mount.mount_point, mount.device, mount.fstype, label, uuid)
