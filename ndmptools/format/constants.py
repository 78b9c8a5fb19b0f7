"""Constants of the BSD dump "new" format, Linux dump 0.4b47 flavour.

Every value here was checked against images written by Debian's dump 0.4b47
(see shared/FORMAT.md and docs/format.md).
"""

from enum import IntEnum

TP_BSIZE = 1024  # one tape block; every size on media counts in these
TP_NINDIR = 512  # c_addr entries in one header
LBLSIZE = 16
NAMELEN = 64
NFS_MAGIC = 60012
OFS_MAGIC = 60011  # the old format, refused with a clear message
CHECKSUM = 84446  # the 256 little-endian i32 words of a header sum to this
ROOTINO = 2  # the dumped path is always inode 2 on media

DIRBLKSIZ = 512  # directory entries never cross a 512-byte boundary on media

MIN_BLOCKING_FACTOR = 4
MAX_BLOCKING_FACTOR = 256
DEFAULT_BLOCKING_FACTOR = 64


class RecordType(IntEnum):
    """c_type: what a header block introduces."""

    TAPE = 1  # volume header
    INODE = 2  # start of an inode's data
    BITS = 3  # map of the inodes on this dump
    ADDR = 4  # continuation of an inode's c_addr list
    END = 5  # end of the dump, repeated to fill the last record
    CLRI = 6  # map of the inodes in use when the dump was taken


# c_flags
DR_NEWHEADER = 0x0001
DR_NEWINODEFMT = 0x0002
DR_INODEINFO = 0x0002  # on TS_END: c_inos holds the first inode of each volume
DR_COMPRESSED = 0x0080
DR_METAONLY = 0x0100
DR_EXTATTRIBUTES = 0x8000

# c_extattributes
EXT_REGULAR = 0
EXT_MACOSFNDRINFO = 1
EXT_MACOSRESFORK = 2
EXT_XATTR = 3

# d_type of BSD directory entries (same values as Linux dirent d_type)
DT_UNKNOWN = 0
DT_FIFO = 1
DT_CHR = 2
DT_DIR = 4
DT_BLK = 6
DT_REG = 8
DT_LNK = 10
DT_SOCK = 12

# ndmptools keeps what the format has no field for (the nanoseconds under the
# microsecond of each time) in c_spare, behind a marker so that a header from
# another dump program is never misread. Readers that do not know it ignore it.
NDMPTOOLS_SPARE_MAGIC = 0x4E445431  # "NDT1" read as a little-endian word
# Behind it: c_spare[1..3] the nanoseconds under the microsecond of atime, mtime and ctime; c_spare[4]
# which of the rest are there; [5], [6] the birth time (seconds, nanoseconds); [7] the project id.
SPARE_BIRTH = 0x1
SPARE_PROJECT = 0x2

# Times on media: c_date is a signed 32-bit word, inode times unsigned 32-bit
# seconds (Linux dump's struct bsdtimeval).
MAX_INODE_TIME = 2**32 - 1
