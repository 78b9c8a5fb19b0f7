"""NDMP version 4 on the wire: message numbers, errors, the header, and every body.

The definitions follow the public ndmp4.x (the NDMP v4 rpcgen file that
ndmjob ships); names drop the ``ndmp4_`` prefix. ``MESSAGES`` maps a
message number to its ``MessageDef``: the request body (None: empty), the
reply body (None: the message is a post, NOTIFY/LOG/FH, answered by no
reply). Both the services and the tests build and read bodies from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ndmptools.ndmp.xdr import (
    VOID,
    Array,
    Enum,
    FixedOpaque,
    Opaque,
    Short,
    String,
    Struct,
    UChar,
    UHyper,
    UInt,
    Union,
    UShort,
    XdrType,
)

PROTOCOL_VERSION = 4
DEFAULT_PORT = 10000
MD5_CHALLENGE_LENGTH = 64
MD5_DIGEST_LENGTH = 16


class Error(IntEnum):
    NO_ERR = 0
    NOT_SUPPORTED_ERR = 1
    DEVICE_BUSY_ERR = 2
    DEVICE_OPENED_ERR = 3
    NOT_AUTHORIZED_ERR = 4
    PERMISSION_ERR = 5
    DEV_NOT_OPEN_ERR = 6
    IO_ERR = 7
    TIMEOUT_ERR = 8
    ILLEGAL_ARGS_ERR = 9
    NO_TAPE_LOADED_ERR = 10
    WRITE_PROTECT_ERR = 11
    EOF_ERR = 12
    EOM_ERR = 13
    FILE_NOT_FOUND_ERR = 14
    BAD_FILE_ERR = 15
    NO_DEVICE_ERR = 16
    NO_BUS_ERR = 17
    XDR_DECODE_ERR = 18
    ILLEGAL_STATE_ERR = 19
    UNDEFINED_ERR = 20
    XDR_ENCODE_ERR = 21
    NO_MEM_ERR = 22
    CONNECT_ERR = 23
    SEQUENCE_NUM_ERR = 24
    READ_IN_PROGRESS_ERR = 25
    PRECONDITION_ERR = 26
    CLASS_NOT_SUPPORTED = 27
    VERSION_NOT_SUPPORTED = 28
    EXT_DUPL_CLASSES = 29
    EXT_DN_ILLEGAL = 30


class Message(IntEnum):
    CONNECT_OPEN = 0x900
    CONNECT_CLIENT_AUTH = 0x901
    CONNECT_CLOSE = 0x902
    CONNECT_SERVER_AUTH = 0x903

    CONFIG_GET_HOST_INFO = 0x100
    CONFIG_GET_CONNECTION_TYPE = 0x102
    CONFIG_GET_AUTH_ATTR = 0x103
    CONFIG_GET_BUTYPE_INFO = 0x104
    CONFIG_GET_FS_INFO = 0x105
    CONFIG_GET_TAPE_INFO = 0x106
    CONFIG_GET_SCSI_INFO = 0x107
    CONFIG_GET_SERVER_INFO = 0x108
    CONFIG_SET_EXT_LIST = 0x109
    CONFIG_GET_EXT_LIST = 0x10A

    SCSI_OPEN = 0x200
    SCSI_CLOSE = 0x201
    SCSI_GET_STATE = 0x202
    SCSI_RESET_DEVICE = 0x204
    SCSI_EXECUTE_CDB = 0x206

    TAPE_OPEN = 0x300
    TAPE_CLOSE = 0x301
    TAPE_GET_STATE = 0x302
    TAPE_MTIO = 0x303
    TAPE_WRITE = 0x304
    TAPE_READ = 0x305
    TAPE_EXECUTE_CDB = 0x307

    DATA_GET_STATE = 0x400
    DATA_START_BACKUP = 0x401
    DATA_START_RECOVER = 0x402
    DATA_ABORT = 0x403
    DATA_GET_ENV = 0x404
    DATA_STOP = 0x407
    DATA_LISTEN = 0x409
    DATA_CONNECT = 0x40A
    DATA_START_RECOVER_FILEHIST = 0x40B

    NOTIFY_DATA_HALTED = 0x501
    NOTIFY_CONNECTION_STATUS = 0x502
    NOTIFY_MOVER_HALTED = 0x503
    NOTIFY_MOVER_PAUSED = 0x504
    NOTIFY_DATA_READ = 0x505

    LOG_FILE = 0x602
    LOG_MESSAGE = 0x603

    FH_ADD_FILE = 0x703
    FH_ADD_DIR = 0x704
    FH_ADD_NODE = 0x705

    MOVER_GET_STATE = 0xA00
    MOVER_LISTEN = 0xA01
    MOVER_CONTINUE = 0xA02
    MOVER_ABORT = 0xA03
    MOVER_STOP = 0xA04
    MOVER_SET_WINDOW = 0xA05
    MOVER_READ = 0xA06
    MOVER_CLOSE = 0xA07
    MOVER_SET_RECORD_SIZE = 0xA08
    MOVER_CONNECT = 0xA09


def message_name(code: int) -> str:
    try:
        return Message(code).name
    except ValueError:
        return f"0x{code:X}"


def error_name(code: int) -> str:
    try:
        return Error(code).name
    except ValueError:
        return str(code)


# -- the header -------------------------------------------------------------------------------

MESSAGE_REQUEST = 0
MESSAGE_REPLY = 1
HEADER_SIZE = 24

message_type = Enum("message_type", {"REQUEST": MESSAGE_REQUEST, "REPLY": MESSAGE_REPLY})
error = Enum("error", {member.name: member.value for member in Error})
message_code = Enum("message", {member.name: member.value for member in Message})

header = Struct(
    "header",
    [
        ("sequence", UInt),
        ("time_stamp", UInt),
        ("message_type", message_type),
        ("message_code", message_code),
        ("reply_sequence", UInt),
        ("error_code", error),
    ],
)

# -- shared types -----------------------------------------------------------------------------

u_quad = UHyper  # ndmp4_u_quad: high word, then low word, as an XDR unsigned hyper
pval = Struct("pval", [("name", String()), ("value", String())])
error_reply = Struct("error_reply", [("error", error)])  # every reply that carries only an error

auth_type = Enum("auth_type", {"NONE": 0, "TEXT": 1, "MD5": 2})
AUTH_NONE, AUTH_TEXT, AUTH_MD5 = 0, 1, 2

auth_text = Struct("auth_text", [("auth_id", String()), ("auth_password", String())])
auth_md5 = Struct("auth_md5", [("auth_id", String()), ("auth_digest", FixedOpaque(MD5_DIGEST_LENGTH))])
auth_data = Union(
    "auth_data",
    "auth_type",
    auth_type,
    {AUTH_NONE: ("", VOID), AUTH_TEXT: ("auth_text", auth_text), AUTH_MD5: ("auth_md5", auth_md5)},
)
auth_attr = Union(
    "auth_attr",
    "auth_type",
    auth_type,
    {
        AUTH_NONE: ("", VOID),
        AUTH_TEXT: ("", VOID),
        AUTH_MD5: ("challenge", FixedOpaque(MD5_CHALLENGE_LENGTH)),
    },
)

addr_type = Enum("addr_type", {"LOCAL": 0, "TCP": 1, "RESERVED": 2, "IPC": 3})
ADDR_LOCAL, ADDR_TCP, ADDR_RESERVED, ADDR_IPC = 0, 1, 2, 3
tcp_addr = Struct("tcp_addr", [("ip_addr", UInt), ("port", UShort), ("addr_env", Array(pval))])
ipc_addr = Struct("ipc_addr", [("comm_data", Opaque())])
addr = Union(
    "addr",
    "addr_type",
    addr_type,
    {
        ADDR_LOCAL: ("", VOID),
        ADDR_TCP: ("tcp_addr", Array(tcp_addr)),
        ADDR_IPC: ("ipc_addr", ipc_addr),
    },
)

# -- CONNECT ----------------------------------------------------------------------------------

connect_open_request = Struct("connect_open_request", [("protocol_version", UShort)])
connect_client_auth_request = Struct("connect_client_auth_request", [("auth_data", auth_data)])
connect_server_auth_request = Struct("connect_server_auth_request", [("client_attr", auth_attr)])
connect_server_auth_reply = Struct(
    "connect_server_auth_reply", [("error", error), ("server_result", auth_data)]
)

# -- CONFIG -----------------------------------------------------------------------------------

config_get_host_info_reply = Struct(
    "config_get_host_info_reply",
    [
        ("error", error),
        ("hostname", String()),
        ("os_type", String()),
        ("os_vers", String()),
        ("hostid", String()),
    ],
)
config_get_server_info_reply = Struct(
    "config_get_server_info_reply",
    [
        ("error", error),
        ("vendor_name", String()),
        ("product_name", String()),
        ("revision_number", String()),
        ("auth_type", Array(auth_type)),
    ],
)
config_get_connection_type_reply = Struct(
    "config_get_connection_type_reply", [("error", error), ("addr_types", Array(addr_type))]
)
config_get_auth_attr_request = Struct("config_get_auth_attr_request", [("auth_type", auth_type)])
config_get_auth_attr_reply = Struct(
    "config_get_auth_attr_reply", [("error", error), ("server_attr", auth_attr)]
)

BUTYPE_BACKUP_FILELIST = 0x0002
BUTYPE_RECOVER_FILELIST = 0x0004
BUTYPE_BACKUP_DIRECT = 0x0008
BUTYPE_RECOVER_DIRECT = 0x0010
BUTYPE_BACKUP_INCREMENTAL = 0x0020
BUTYPE_RECOVER_INCREMENTAL = 0x0040
BUTYPE_BACKUP_UTF8 = 0x0080
BUTYPE_RECOVER_UTF8 = 0x0100
BUTYPE_BACKUP_FH_FILE = 0x0200
BUTYPE_BACKUP_FH_DIR = 0x0400
BUTYPE_RECOVER_FILEHIST = 0x0800
BUTYPE_RECOVER_FH_FILE = 0x1000
BUTYPE_RECOVER_FH_DIR = 0x2000

butype_info = Struct(
    "butype_info", [("butype_name", String()), ("default_env", Array(pval)), ("attrs", UInt)]
)
config_get_butype_info_reply = Struct(
    "config_get_butype_info_reply", [("error", error), ("butype_info", Array(butype_info))]
)

FS_INFO_TOTAL_SIZE_UNS = 0x01
FS_INFO_USED_SIZE_UNS = 0x02
FS_INFO_AVAIL_SIZE_UNS = 0x04
FS_INFO_TOTAL_INODES_UNS = 0x08
FS_INFO_USED_INODES_UNS = 0x10

fs_info = Struct(
    "fs_info",
    [
        ("unsupported", UInt),
        ("fs_type", String()),
        ("fs_logical_device", String()),
        ("fs_physical_device", String()),
        ("total_size", u_quad),
        ("used_size", u_quad),
        ("avail_size", u_quad),
        ("total_inodes", u_quad),
        ("used_inodes", u_quad),
        ("fs_env", Array(pval)),
        ("fs_status", String()),
    ],
)
config_get_fs_info_reply = Struct("config_get_fs_info_reply", [("error", error), ("fs_info", Array(fs_info))])

TAPE_ATTR_REWIND = 0x1
TAPE_ATTR_UNLOAD = 0x2
TAPE_ATTR_RAW = 0x4

device_capability = Struct(
    "device_capability", [("device", String()), ("attr", UInt), ("capability", Array(pval))]
)
device_info = Struct("device_info", [("model", String()), ("caplist", Array(device_capability))])
config_get_tape_info_reply = Struct(
    "config_get_tape_info_reply", [("error", error), ("tape_info", Array(device_info))]
)
config_get_scsi_info_reply = Struct(
    "config_get_scsi_info_reply", [("error", error), ("scsi_info", Array(device_info))]
)
class_list = Struct("class_list", [("class_id", UShort), ("class_version", Array(UShort))])
config_get_ext_list_reply = Struct(
    "config_get_ext_list_reply", [("error", error), ("class_list", Array(class_list))]
)
config_set_ext_list_request = Struct(
    "config_set_ext_list_request", [("error", error), ("ndmp4_accepted_ext", Array(class_list))]
)

# -- SCSI (defined so requests decode; the server answers NOT_SUPPORTED) ----------------------

scsi_open_request = Struct("scsi_open_request", [("device", String())])
scsi_get_state_reply = Struct(
    "scsi_get_state_reply",
    [("error", error), ("target_controller", Short), ("target_id", Short), ("target_lun", Short)],
)
SCSI_DATA_IN = 0x1
SCSI_DATA_OUT = 0x2
execute_cdb_request = Struct(
    "execute_cdb_request",
    [
        ("flags", UInt),
        ("timeout", UInt),
        ("datain_len", UInt),
        ("cdb", Opaque()),
        ("dataout", Opaque()),
    ],
)
execute_cdb_reply = Struct(
    "execute_cdb_reply",
    [
        ("error", error),
        ("status", UChar),
        ("dataout_len", UInt),
        ("datain", Opaque()),
        ("ext_sense", Opaque()),
    ],
)

# -- TAPE -------------------------------------------------------------------------------------

tape_open_mode = Enum("tape_open_mode", {"READ": 0, "RDWR": 1, "RAW": 2})
TAPE_READ_MODE, TAPE_RDWR_MODE, TAPE_RAW_MODE = 0, 1, 2
tape_open_request = Struct("tape_open_request", [("device", String()), ("mode", tape_open_mode)])

TAPE_STATE_NOREWIND = 0x0008
TAPE_STATE_WR_PROT = 0x0010
TAPE_STATE_ERROR = 0x0020
TAPE_STATE_UNLOAD = 0x0040
TAPE_STATE_FILE_NUM_UNS = 0x01
TAPE_STATE_SOFT_ERRORS_UNS = 0x02
TAPE_STATE_BLOCK_SIZE_UNS = 0x04
TAPE_STATE_BLOCKNO_UNS = 0x08
TAPE_STATE_TOTAL_SPACE_UNS = 0x10
TAPE_STATE_SPACE_REMAIN_UNS = 0x20

tape_get_state_reply = Struct(
    "tape_get_state_reply",
    [
        ("unsupported", UInt),
        ("error", error),
        ("flags", UInt),
        ("file_num", UInt),
        ("soft_errors", UInt),
        ("block_size", UInt),
        ("blockno", UInt),
        ("total_space", u_quad),
        ("space_remain", u_quad),
    ],
)

tape_mtio_op = Enum(
    "tape_mtio_op", {"FSF": 0, "BSF": 1, "FSR": 2, "BSR": 3, "REW": 4, "EOF": 5, "OFF": 6, "TUR": 7}
)
MTIO_FSF, MTIO_BSF, MTIO_FSR, MTIO_BSR, MTIO_REW, MTIO_EOF, MTIO_OFF, MTIO_TUR = range(8)
tape_mtio_request = Struct("tape_mtio_request", [("tape_op", tape_mtio_op), ("count", UInt)])
tape_mtio_reply = Struct("tape_mtio_reply", [("error", error), ("resid_count", UInt)])
tape_write_request = Struct("tape_write_request", [("data_out", Opaque())])
tape_write_reply = Struct("tape_write_reply", [("error", error), ("count", UInt)])
tape_read_request = Struct("tape_read_request", [("count", UInt)])
tape_read_reply = Struct("tape_read_reply", [("error", error), ("data_in", Opaque())])

# -- DATA -------------------------------------------------------------------------------------

data_operation = Enum("data_operation", {"NOACTION": 0, "BACKUP": 1, "RECOVER": 2, "RECOVER_FILEHIST": 3})
DATA_OP_NOACTION, DATA_OP_BACKUP, DATA_OP_RECOVER, DATA_OP_RECOVER_FILEHIST = range(4)
data_state = Enum("data_state", {"IDLE": 0, "ACTIVE": 1, "HALTED": 2, "LISTEN": 3, "CONNECTED": 4})
DATA_STATE_IDLE, DATA_STATE_ACTIVE, DATA_STATE_HALTED, DATA_STATE_LISTEN, DATA_STATE_CONNECTED = range(5)
data_halt_reason = Enum(
    "data_halt_reason",
    {"NA": 0, "SUCCESSFUL": 1, "ABORTED": 2, "INTERNAL_ERROR": 3, "CONNECT_ERROR": 4},
)
(
    DATA_HALT_NA,
    DATA_HALT_SUCCESSFUL,
    DATA_HALT_ABORTED,
    DATA_HALT_INTERNAL_ERROR,
    DATA_HALT_CONNECT_ERROR,
) = range(5)

DATA_STATE_EST_BYTES_REMAIN_UNS = 0x1
DATA_STATE_EST_TIME_REMAIN_UNS = 0x2

data_get_state_reply = Struct(
    "data_get_state_reply",
    [
        ("unsupported", UInt),
        ("error", error),
        ("operation", data_operation),
        ("state", data_state),
        ("halt_reason", data_halt_reason),
        ("bytes_processed", u_quad),
        ("est_bytes_remain", u_quad),
        ("est_time_remain", UInt),
        ("data_connection_addr", addr),
        ("read_offset", u_quad),
        ("read_length", u_quad),
    ],
)
data_listen_request = Struct("data_listen_request", [("addr_type", addr_type)])
data_listen_reply = Struct("data_listen_reply", [("error", error), ("connect_addr", addr)])
data_connect_request = Struct("data_connect_request", [("addr", addr)])
data_start_backup_request = Struct(
    "data_start_backup_request", [("butype_name", String()), ("env", Array(pval))]
)
name = Struct(
    "name",
    [
        ("original_path", String()),
        ("destination_path", String()),
        ("name", String()),
        ("other_name", String()),
        ("node", u_quad),
        ("fh_info", u_quad),
    ],
)
data_start_recover_request = Struct(
    "data_start_recover_request",
    [("env", Array(pval)), ("nlist", Array(name)), ("butype_name", String())],
)
data_get_env_reply = Struct("data_get_env_reply", [("error", error), ("env", Array(pval))])

# -- MOVER ------------------------------------------------------------------------------------

mover_mode = Enum("mover_mode", {"READ": 0, "WRITE": 1, "NOACTION": 2})
MOVER_MODE_READ, MOVER_MODE_WRITE, MOVER_MODE_NOACTION = range(3)
mover_state = Enum("mover_state", {"IDLE": 0, "LISTEN": 1, "ACTIVE": 2, "PAUSED": 3, "HALTED": 4})
MOVER_STATE_IDLE, MOVER_STATE_LISTEN, MOVER_STATE_ACTIVE, MOVER_STATE_PAUSED, MOVER_STATE_HALTED = range(5)
mover_pause_reason = Enum(
    "mover_pause_reason",
    {"NA": 0, "EOM": 1, "EOF": 2, "SEEK": 3, "MEDIA_ERROR": 4, "EOW": 5},
)
(
    MOVER_PAUSE_NA,
    MOVER_PAUSE_EOM,
    MOVER_PAUSE_EOF,
    MOVER_PAUSE_SEEK,
    MOVER_PAUSE_MEDIA_ERROR,
    MOVER_PAUSE_EOW,
) = range(6)
mover_halt_reason = Enum(
    "mover_halt_reason",
    {"NA": 0, "CONNECT_CLOSED": 1, "ABORTED": 2, "INTERNAL_ERROR": 3, "CONNECT_ERROR": 4},
)
(
    MOVER_HALT_NA,
    MOVER_HALT_CONNECT_CLOSED,
    MOVER_HALT_ABORTED,
    MOVER_HALT_INTERNAL_ERROR,
    MOVER_HALT_CONNECT_ERROR,
) = range(5)

mover_set_record_size_request = Struct("mover_set_record_size_request", [("len", UInt)])
mover_set_window_request = Struct("mover_set_window_request", [("offset", u_quad), ("length", u_quad)])
mover_connect_request = Struct("mover_connect_request", [("mode", mover_mode), ("addr", addr)])
mover_listen_request = Struct("mover_listen_request", [("mode", mover_mode), ("addr_type", addr_type)])
mover_listen_reply = Struct("mover_listen_reply", [("error", error), ("connect_addr", addr)])
mover_read_request = Struct("mover_read_request", [("offset", u_quad), ("length", u_quad)])
mover_get_state_reply = Struct(
    "mover_get_state_reply",
    [
        ("error", error),
        ("mode", mover_mode),
        ("state", mover_state),
        ("pause_reason", mover_pause_reason),
        ("halt_reason", mover_halt_reason),
        ("record_size", UInt),
        ("record_num", UInt),
        ("bytes_moved", u_quad),
        ("seek_position", u_quad),
        ("bytes_left_to_read", u_quad),
        ("window_offset", u_quad),
        ("window_length", u_quad),
        ("data_connection_addr", addr),
    ],
)

# -- NOTIFY (posts: no reply) -----------------------------------------------------------------

notify_data_halted_post = Struct("notify_data_halted_post", [("reason", data_halt_reason)])
connection_status_reason = Enum("connection_status_reason", {"CONNECTED": 0, "SHUTDOWN": 1, "REFUSED": 2})
CONNECTED, SHUTDOWN, REFUSED = 0, 1, 2
notify_connection_status_post = Struct(
    "notify_connection_status_post",
    [("reason", connection_status_reason), ("protocol_version", UShort), ("text_reason", String())],
)
notify_mover_halted_post = Struct("notify_mover_halted_post", [("reason", mover_halt_reason)])
notify_mover_paused_post = Struct(
    "notify_mover_paused_post", [("reason", mover_pause_reason), ("seek_position", u_quad)]
)
notify_data_read_post = Struct("notify_data_read_post", [("offset", u_quad), ("length", u_quad)])

# -- LOG --------------------------------------------------------------------------------------

has_associated_message = Enum("has_associated_message", {"NO": 0, "YES": 1})
log_type = Enum("log_type", {"NORMAL": 0, "DEBUG": 1, "ERROR": 2, "WARNING": 3})
LOG_NORMAL, LOG_DEBUG, LOG_ERROR, LOG_WARNING = range(4)
log_message_post = Struct(
    "log_message_post",
    [
        ("log_type", log_type),
        ("message_id", UInt),
        ("entry", String()),
        ("associated_message_valid", has_associated_message),
        ("associated_message_sequence", UInt),
    ],
)
recovery_status = Enum(
    "recovery_status",
    {
        "SUCCESSFUL": 0,
        "FAILED_PERMISSION": 1,
        "FAILED_NOT_FOUND": 2,
        "FAILED_NO_DIRECTORY": 3,
        "FAILED_OUT_OF_MEMORY": 4,
        "FAILED_IO_ERROR": 5,
        "FAILED_UNDEFINED_ERROR": 6,
    },
)
(
    RECOVERY_SUCCESSFUL,
    RECOVERY_FAILED_PERMISSION,
    RECOVERY_FAILED_NOT_FOUND,
    RECOVERY_FAILED_NO_DIRECTORY,
    RECOVERY_FAILED_OUT_OF_MEMORY,
    RECOVERY_FAILED_IO_ERROR,
    RECOVERY_FAILED_UNDEFINED_ERROR,
) = range(7)
log_file_post = Struct("log_file_post", [("name", String()), ("recovery_status", recovery_status)])

# -- FILE HISTORY -----------------------------------------------------------------------------

fs_type = Enum("fs_type", {"UNIX": 0, "NT": 1, "OTHER": 2})
FS_UNIX, FS_NT, FS_OTHER = 0, 1, 2
nt_path = Struct("nt_path", [("nt_path", String()), ("dos_path", String())])
file_name = Union(
    "file_name",
    "fs_type",
    fs_type,
    {FS_UNIX: ("unix_name", String()), FS_NT: ("nt_name", nt_path)},
    default_arm=("other_name", String()),
)
file_type = Enum(
    "file_type",
    {
        "DIR": 0,
        "FIFO": 1,
        "CSPEC": 2,
        "BSPEC": 3,
        "REG": 4,
        "SLINK": 5,
        "SOCK": 6,
        "REGISTRY": 7,
        "OTHER": 8,
    },
)
(
    FILE_DIR,
    FILE_FIFO,
    FILE_CSPEC,
    FILE_BSPEC,
    FILE_REG,
    FILE_SLINK,
    FILE_SOCK,
    FILE_REGISTRY,
    FILE_OTHER,
) = range(9)
FILE_STAT_ATIME_UNS = 0x1
FILE_STAT_CTIME_UNS = 0x2
FILE_STAT_GROUP_UNS = 0x4
file_stat = Struct(
    "file_stat",
    [
        ("unsupported", UInt),
        ("fs_type", fs_type),
        ("ftype", file_type),
        ("mtime", UInt),
        ("atime", UInt),
        ("ctime", UInt),
        ("owner", UInt),
        ("group", UInt),
        ("fattr", UInt),
        ("size", u_quad),
        ("links", UInt),
    ],
)
file = Struct(
    "file",
    [("names", Array(file_name)), ("stats", Array(file_stat)), ("node", u_quad), ("fh_info", u_quad)],
)
fh_add_file_post = Struct("fh_add_file_post", [("files", Array(file))])
dir_entry = Struct("dir", [("names", Array(file_name)), ("node", u_quad), ("parent", u_quad)])
fh_add_dir_post = Struct("fh_add_dir_post", [("dirs", Array(dir_entry))])
node = Struct("node", [("stats", Array(file_stat)), ("node", u_quad), ("fh_info", u_quad)])
fh_add_node_post = Struct("fh_add_node_post", [("nodes", Array(node))])


# -- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageDef:
    """One message: its request body and its reply body (None: empty, or no reply for a post)."""

    code: Message
    request: XdrType | None
    reply: XdrType | None
    post: bool = False  # NOTIFY, LOG, FH: the receiver sends no reply


def _defs() -> dict[int, MessageDef]:
    m = Message
    e = error_reply
    table = [
        (m.CONNECT_OPEN, connect_open_request, e),
        (m.CONNECT_CLIENT_AUTH, connect_client_auth_request, e),
        (m.CONNECT_CLOSE, None, None),  # no reply: the server answers with NOTIFY_CONNECTION_STATUS
        (m.CONNECT_SERVER_AUTH, connect_server_auth_request, connect_server_auth_reply),
        (m.CONFIG_GET_HOST_INFO, None, config_get_host_info_reply),
        (m.CONFIG_GET_CONNECTION_TYPE, None, config_get_connection_type_reply),
        (m.CONFIG_GET_AUTH_ATTR, config_get_auth_attr_request, config_get_auth_attr_reply),
        (m.CONFIG_GET_BUTYPE_INFO, None, config_get_butype_info_reply),
        (m.CONFIG_GET_FS_INFO, None, config_get_fs_info_reply),
        (m.CONFIG_GET_TAPE_INFO, None, config_get_tape_info_reply),
        (m.CONFIG_GET_SCSI_INFO, None, config_get_scsi_info_reply),
        (m.CONFIG_GET_SERVER_INFO, None, config_get_server_info_reply),
        (m.CONFIG_SET_EXT_LIST, config_set_ext_list_request, e),
        (m.CONFIG_GET_EXT_LIST, None, config_get_ext_list_reply),
        (m.SCSI_OPEN, scsi_open_request, e),
        (m.SCSI_CLOSE, None, e),
        (m.SCSI_GET_STATE, None, scsi_get_state_reply),
        (m.SCSI_RESET_DEVICE, None, e),
        (m.SCSI_EXECUTE_CDB, execute_cdb_request, execute_cdb_reply),
        (m.TAPE_OPEN, tape_open_request, e),
        (m.TAPE_CLOSE, None, e),
        (m.TAPE_GET_STATE, None, tape_get_state_reply),
        (m.TAPE_MTIO, tape_mtio_request, tape_mtio_reply),
        (m.TAPE_WRITE, tape_write_request, tape_write_reply),
        (m.TAPE_READ, tape_read_request, tape_read_reply),
        (m.TAPE_EXECUTE_CDB, execute_cdb_request, execute_cdb_reply),
        (m.DATA_GET_STATE, None, data_get_state_reply),
        (m.DATA_START_BACKUP, data_start_backup_request, e),
        (m.DATA_START_RECOVER, data_start_recover_request, e),
        (m.DATA_ABORT, None, e),
        (m.DATA_GET_ENV, None, data_get_env_reply),
        (m.DATA_STOP, None, e),
        (m.DATA_LISTEN, data_listen_request, data_listen_reply),
        (m.DATA_CONNECT, data_connect_request, e),
        (m.DATA_START_RECOVER_FILEHIST, data_start_recover_request, e),
        (m.MOVER_GET_STATE, None, mover_get_state_reply),
        (m.MOVER_LISTEN, mover_listen_request, mover_listen_reply),
        (m.MOVER_CONTINUE, None, e),
        (m.MOVER_ABORT, None, e),
        (m.MOVER_STOP, None, e),
        (m.MOVER_SET_WINDOW, mover_set_window_request, e),
        (m.MOVER_READ, mover_read_request, e),
        (m.MOVER_CLOSE, None, e),
        (m.MOVER_SET_RECORD_SIZE, mover_set_record_size_request, e),
        (m.MOVER_CONNECT, mover_connect_request, e),
    ]
    posts = [
        (m.NOTIFY_DATA_HALTED, notify_data_halted_post),
        (m.NOTIFY_CONNECTION_STATUS, notify_connection_status_post),
        (m.NOTIFY_MOVER_HALTED, notify_mover_halted_post),
        (m.NOTIFY_MOVER_PAUSED, notify_mover_paused_post),
        (m.NOTIFY_DATA_READ, notify_data_read_post),
        (m.LOG_FILE, log_file_post),
        (m.LOG_MESSAGE, log_message_post),
        (m.FH_ADD_FILE, fh_add_file_post),
        (m.FH_ADD_DIR, fh_add_dir_post),
        (m.FH_ADD_NODE, fh_add_node_post),
    ]
    defs = {code: MessageDef(code, request, reply) for code, request, reply in table}
    defs.update({code: MessageDef(code, body, None, post=True) for code, body in posts})
    return defs


MESSAGES: dict[int, MessageDef] = _defs()
