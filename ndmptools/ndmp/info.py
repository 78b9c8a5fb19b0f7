"""The CONFIG service: what the server tells a DMA about itself, its file systems and drives."""

from __future__ import annotations

import logging
import os
import platform
import secrets
import socket

from ndmptools import __version__
from ndmptools.ndmp import messages as m
from ndmptools.ndmp.session import NdmpError, Session

log = logging.getLogger("ndmptools.ndmp")

BUTYPE_NAME = "dump"
# What a DMA gets when it asks which environment `dump` takes, with the values used when the
# DMA gives none. The DATA service (data.py) is what reads them.
DUMP_DEFAULT_ENV = (
    ("FILESYSTEM", ""),
    ("LEVEL", "0"),
    ("UPDATE", "Y"),
    ("HIST", "N"),
    ("TYPE", "dump"),
    ("EXCLUDE", ""),
    ("DIRECT", "Y"),  # as data.py and `restore` default: a recover with fh_info seeks
    ("EXTRACT", "Y"),
    ("RECURSIVE", "Y"),
)
DUMP_ATTRS = (
    m.BUTYPE_BACKUP_INCREMENTAL
    | m.BUTYPE_RECOVER_INCREMENTAL
    | m.BUTYPE_RECOVER_FILELIST
    | m.BUTYPE_BACKUP_DIRECT
    | m.BUTYPE_RECOVER_DIRECT
    | m.BUTYPE_BACKUP_UTF8
    | m.BUTYPE_RECOVER_UTF8
    | m.BUTYPE_BACKUP_FH_DIR
)
# File systems the dump engine backs up; the others in the mount table are not offered.
DUMPABLE_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "vfat"}
AUTH_TYPES = {"none": m.AUTH_NONE, "text": m.AUTH_TEXT, "md5": m.AUTH_MD5}


def _hostid() -> str:
    try:
        with open("/etc/machine-id", encoding="ascii") as handle:
            return handle.read().strip()[:8] or "0"
    except OSError:
        return "0"


def get_host_info(session: Session, request) -> object:
    return m.config_get_host_info_reply(
        hostname=socket.gethostname(), os_type=platform.system(), os_vers=platform.release(), hostid=_hostid()
    )


def get_server_info(session: Session, request) -> object:
    offered = [AUTH_TYPES[session.settings.auth]]
    if session.settings.auth == "text":
        offered.append(m.AUTH_MD5)
    return m.config_get_server_info_reply(
        vendor_name="ndmptools",
        product_name="ndmptools serve",
        revision_number=__version__,
        auth_type=offered,
    )


def get_connection_type(session: Session, request) -> object:
    return m.config_get_connection_type_reply(addr_types=[m.ADDR_LOCAL, m.ADDR_TCP])


def get_auth_attr(session: Session, request) -> object:
    kind = request.auth_type
    if kind == m.AUTH_MD5:
        session.md5_challenge = secrets.token_bytes(m.MD5_CHALLENGE_LENGTH)
        return m.config_get_auth_attr_reply(server_attr=m.auth_attr(m.AUTH_MD5, session.md5_challenge))
    if kind in (m.AUTH_NONE, m.AUTH_TEXT):
        return m.config_get_auth_attr_reply(server_attr=m.auth_attr(kind))
    raise NdmpError(m.Error.ILLEGAL_ARGS_ERR, f"auth type {kind}")


def get_butype_info(session: Session, request) -> object:
    env = [m.pval(name=name, value=value) for name, value in DUMP_DEFAULT_ENV]
    info = m.butype_info(butype_name=BUTYPE_NAME, default_env=env, attrs=DUMP_ATTRS)
    return m.config_get_butype_info_reply(butype_info=[info])


def _mounts() -> list[tuple[str, str, str]]:
    """(device, mount point, type) of the mounted file systems dump can back up."""
    found = []
    seen = set()
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or fields[2] not in DUMPABLE_FS:
            continue
        device, point, kind = (f.replace("\\040", " ").replace("\\011", "\t") for f in fields[:3])
        if point in seen:
            continue
        seen.add(point)
        found.append((device, point, kind))
    return found


def get_fs_info(session: Session, request) -> object:
    infos = []
    for device, point, kind in _mounts():
        try:
            vfs = os.statvfs(point)
        except OSError:
            continue
        infos.append(
            m.fs_info(
                unsupported=0,
                fs_type=kind,
                fs_logical_device=point,
                fs_physical_device=device,
                total_size=vfs.f_blocks * vfs.f_frsize,
                used_size=(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize,
                avail_size=vfs.f_bavail * vfs.f_frsize,
                total_inodes=vfs.f_files,
                used_inodes=vfs.f_files - vfs.f_ffree,
                fs_env=[m.pval(name="TYPE", value=kind)],
                fs_status="online",
            )
        )
    return m.config_get_fs_info_reply(fs_info=infos)


def get_tape_info(session: Session, request) -> object:
    """The SCSI tape drives udev lists (a virtual tape is named in TAPE_OPEN, not listed)."""
    drives = []
    try:
        from ndmptools.media.discovery import list_devices

        found, _changers = list_devices()
    except Exception as err:  # no udev here: no drives to list, and that is no error
        log.debug("tape drives not listed: %s", err)
        found = []
    for drive in found:
        capability = m.device_capability(
            device=drive.nonrewinding_node or drive.node,
            attr=0,
            capability=[m.pval(name="SERIAL_NUMBER", value=drive.serial)],
        )
        drives.append(m.device_info(model=f"{drive.vendor} {drive.model}".strip(), caplist=[capability]))
    return m.config_get_tape_info_reply(tape_info=drives)


def get_scsi_info(session: Session, request) -> object:
    return m.config_get_scsi_info_reply(scsi_info=[])


def get_ext_list(session: Session, request) -> object:
    return m.config_get_ext_list_reply(class_list=[])


def set_ext_list(session: Session, request) -> None:
    if request.ndmp4_accepted_ext:
        raise NdmpError(m.Error.CLASS_NOT_SUPPORTED, "no extension classes are offered")


HANDLERS = {
    m.Message.CONFIG_GET_HOST_INFO: get_host_info,
    m.Message.CONFIG_GET_SERVER_INFO: get_server_info,
    m.Message.CONFIG_GET_CONNECTION_TYPE: get_connection_type,
    m.Message.CONFIG_GET_AUTH_ATTR: get_auth_attr,
    m.Message.CONFIG_GET_BUTYPE_INFO: get_butype_info,
    m.Message.CONFIG_GET_FS_INFO: get_fs_info,
    m.Message.CONFIG_GET_TAPE_INFO: get_tape_info,
    m.Message.CONFIG_GET_SCSI_INFO: get_scsi_info,
    m.Message.CONFIG_GET_EXT_LIST: get_ext_list,
    m.Message.CONFIG_SET_EXT_LIST: set_ext_list,
}
