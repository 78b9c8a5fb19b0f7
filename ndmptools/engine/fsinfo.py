"""Which mounted file system holds a path, what it is called, and what it is.

Linux dump fills c_dev with the mounted device and c_label with the file
system's label ("none" when it has none). The dump history keys a path's
dumps by the file system's identity (its UUID where it has one) and the path
inside it, so a device that is renamed or moved keeps its increment chain,
and a reformatted one does not.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import dataclass

from ndmptools.engine.statx import libc

MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class FileSystemInfo:
    mount_point: str
    device: str
    fstype: str
    mount_root: str = "/"  # which directory of the file system is mounted there (bind mounts, subvolumes)
    read_only: bool = False
    label: str | None = None
    uuid: str | None = None
    fsid: str | None = None

    @property
    def identity(self) -> str:
        """What names this file system wherever it is mounted from."""
        if self.uuid:
            return f"uuid:{self.uuid}"
        if self.fsid:
            return f"fsid:{self.fsid}"
        return f"dev:{self.fstype}:{self.device}"

    def path_inside(self, path: str) -> str:
        """``path`` (resolved, on this mount) as a path from the file system's own root."""
        relative = os.path.relpath(path, self.mount_point)
        inside = os.path.normpath(os.path.join(self.mount_root, relative))
        return inside if inside.startswith("/") else "/" + inside


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
    """The mount that holds ``path`` (an absolute, resolved path), or None if unknown.

    The deepest mount point above the path is the one: device numbers cannot
    tell, since every btrfs subvolume has a device number of its own.
    """
    try:
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
        if len(fields) < 6 or len(tail) < 2:
            continue
        mount_point = _unescape(fields[4])
        if not _is_within(path, mount_point):
            continue
        options = set(fields[5].split(",")) | set(tail[2].split(",") if len(tail) > 2 else [])
        if best is None or len(mount_point) >= len(best.mount_point):
            best = FileSystemInfo(
                mount_point=mount_point,
                device=_unescape(tail[1]),
                fstype=tail[0],
                mount_root=_unescape(fields[3]),
                read_only="ro" in options,
            )
    return best


def mount_points_below(path: str, mountinfo: str = MOUNTINFO) -> list[str]:
    """Every mount point strictly below ``path`` (absolute, resolved), as this process sees them.

    A snapshot does not show the mounts of the live tree (they look like
    empty directories there): this is how a dump of one knows them.
    """
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = set()
    for line in lines:
        fields = line.partition(" - ")[0].split()
        if len(fields) >= 5:
            mount_point = _unescape(fields[4])
            if mount_point != path and _is_within(mount_point, path):
                found.add(mount_point)
    return sorted(found)


def _is_within(path: str, directory: str) -> bool:
    return directory == "/" or path == directory or path.startswith(directory.rstrip("/") + "/")


def probe_block_device(device: str) -> tuple[str | None, str | None]:
    """(label, uuid) of a block device, probed afresh (blkid -p: its cache can be stale), or (None, None)."""
    if not device.startswith("/dev/") or shutil.which("blkid") is None:
        return None, None
    try:
        done = subprocess.run(
            ["blkid", "-p", "-o", "export", device], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return values.get("LABEL") or None, values.get("UUID") or None


class _StatFs(ctypes.Structure):
    _fields_ = [
        ("f_type", ctypes.c_long),
        ("f_bsize", ctypes.c_long),
        ("f_blocks", ctypes.c_ulong),
        ("f_bfree", ctypes.c_ulong),
        ("f_bavail", ctypes.c_ulong),
        ("f_files", ctypes.c_ulong),
        ("f_ffree", ctypes.c_ulong),
        ("f_fsid", ctypes.c_int * 2),
        ("f_namelen", ctypes.c_long),
        ("f_frsize", ctypes.c_long),
        ("f_flags", ctypes.c_long),
        ("f_spare", ctypes.c_long * 4),
    ]


def statfs_fsid(path: str) -> str | None:
    """The kernel's f_fsid for the file system of ``path`` (ext4 and btrfs derive it from their UUID)."""
    try:
        buffer = _StatFs()
        if libc().statfs(os.fsencode(path), ctypes.byref(buffer)) != 0:
            return None
    except OSError:
        return None
    words = [w & 0xFFFFFFFF for w in buffer.f_fsid]
    return None if words == [0, 0] else f"{words[0]:08x}{words[1]:08x}"


def describe(path: str) -> FileSystemInfo | None:
    """The file system holding ``path`` with its label, UUID and fsid where they are known."""
    mount = find_mount(path)
    if mount is None:
        return None
    label, uuid = probe_block_device(mount.device)
    return FileSystemInfo(
        mount.mount_point,
        mount.device,
        mount.fstype,
        mount.mount_root,
        mount.read_only,
        label,
        uuid,
        statfs_fsid(path),
    )
