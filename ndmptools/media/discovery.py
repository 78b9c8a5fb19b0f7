"""Tape drives and media changers, as udev knows them. The only module that imports pyudev.

A drive is a scsi_tape device (st0, nst0 and their modes share one SCSI
device); a changer is a SCSI generic node (sgN) of a SCSI device of type 8.
The largest record a drive takes here is what its host adapter moves in one
command (max_sectors); opening the drive adds the drive's own READ BLOCK
LIMITS (media/st.py), which listing never does: it would disturb a backup.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

from ndmptools.errors import MediaError

SCSI_TYPE_TAPE = 1
SCSI_TYPE_CHANGER = 8
_MODE0 = re.compile(r"^n?st\d+$")


@dataclass(frozen=True)
class TapeDrive:
    node: str
    nonrewinding_node: str | None
    vendor: str
    model: str
    serial: str
    max_block: int | None  # bytes; None when the system does not say

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Changer:
    node: str
    vendor: str
    model: str
    serial: str

    def as_dict(self) -> dict:
        return asdict(self)


def _attribute(device, name: str) -> str:
    try:
        return device.attributes.asstring(name).strip()
    except (KeyError, UnicodeDecodeError):
        return ""


def _serial(node_device, scsi_device) -> str:
    for key in ("ID_SCSI_SERIAL", "ID_SERIAL_SHORT", "ID_SERIAL"):
        value = node_device.properties.get(key) or scsi_device.properties.get(key)
        if value:
            return value
    try:  # VPD page 0x80 (unit serial number): 4 header bytes, then the serial
        page = scsi_device.attributes.get("vpd_pg80")
        if page:
            return page[4:].decode("ascii", "replace").strip("\0 ")
    except KeyError:
        pass
    return ""


def host_max_transfer(scsi_device) -> int | None:
    """Bytes the SCSI host adapter moves in one command (its max_sectors of 512 bytes)."""
    host = scsi_device.find_parent("scsi", "scsi_host")
    if host is None:
        return None
    try:
        with open(os.path.join(host.sys_path, "scsi_host", host.sys_name, "max_sectors")) as f:
            return int(f.read().strip()) * 512
    except (OSError, ValueError):
        return None


def list_devices() -> tuple[list[TapeDrive], list[Changer]]:
    """Every tape drive and changer udev knows, sorted by node."""
    try:
        import pyudev
    except ImportError as err:  # pragma: no cover - pyudev is a dependency
        raise MediaError(f"cannot look for devices: {err}") from err
    try:
        context = pyudev.Context()
    except Exception as err:  # libudev missing or unusable
        raise MediaError(f"cannot ask udev for devices: {err}") from err
    drives: dict[str, dict] = {}
    for device in context.list_devices(subsystem="scsi_tape"):
        if not _MODE0.match(device.sys_name):
            continue  # st0l, nst0a ...: other modes of the same drive
        scsi = device.find_parent("scsi", "scsi_device")
        if scsi is None:
            continue
        entry = drives.setdefault(
            scsi.sys_path, {"scsi": scsi, "node": None, "nonrewinding": None, "device": device}
        )
        node = device.device_node or f"/dev/{device.sys_name}"
        entry["nonrewinding" if device.sys_name.startswith("n") else "node"] = node
    tapes = []
    for entry in drives.values():
        scsi = entry["scsi"]
        tapes.append(
            TapeDrive(
                node=entry["node"] or entry["nonrewinding"],
                nonrewinding_node=entry["nonrewinding"],
                vendor=_attribute(scsi, "vendor"),
                model=_attribute(scsi, "model"),
                serial=_serial(entry["device"], scsi),
                max_block=host_max_transfer(scsi),
            )
        )
    changers = []
    for device in context.list_devices(subsystem="scsi_generic"):
        scsi = device.find_parent("scsi", "scsi_device")
        if scsi is None or _attribute(scsi, "type") != str(SCSI_TYPE_CHANGER):
            continue
        changers.append(
            Changer(
                node=device.device_node or f"/dev/{device.sys_name}",
                vendor=_attribute(scsi, "vendor"),
                model=_attribute(scsi, "model"),
                serial=_serial(device, scsi),
            )
        )
    return sorted(tapes, key=lambda d: d.node), sorted(changers, key=lambda c: c.node)


def find_drive(serial: str | None = None) -> TapeDrive:
    """The drive with this serial number, or the first drive when no serial is given."""
    drives, _ = list_devices()
    if not drives:
        raise MediaError("no tape drive found (ndmptools devices lists what udev sees)")
    if serial is None:
        return drives[0]
    for drive in drives:
        if drive.serial == serial:
            return drive
    known = ", ".join(d.serial or "?" for d in drives)
    raise MediaError(f"no tape drive with serial {serial} (drives found: {known})")
