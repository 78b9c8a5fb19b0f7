"""``dump``: a level-0 backup of a path in the BSD dump format.

The passes follow Linux dump: I and II map the tree (mapping.py), III writes
the directories and IV every other inode (passes.py).
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from ndmptools.engine.dump.mapping import map_tree
from ndmptools.engine.dump.passes import DumpWriter
from ndmptools.engine.errors import MediaError, SourceError, UsageError
from ndmptools.engine.fsinfo import describe
from ndmptools.engine.options import DumpOptions
from ndmptools.engine.progress import RunContext, RunStats
from ndmptools.format.constants import MAX_BLOCKING_FACTOR, MIN_BLOCKING_FACTOR, NAMELEN, TP_BSIZE
from ndmptools.format.header import HeaderPacker
from ndmptools.format.records import RecordWriter
from ndmptools.media.base import Medium


@dataclass
class DumpResult:
    """What a completed dump wrote, for the summary, --json and (later) the dump history."""

    path: str
    level: int
    date: int
    label: str
    filesys: str
    device: str
    host: str
    blocking_factor: int
    inodes: int
    directories: int
    files: int
    blocks: int
    records: int
    volumes: int
    medium: str
    stats: RunStats

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "level": self.level,
            "date": self.date,
            "label": self.label,
            "filesys": self.filesys,
            "device": self.device,
            "host": self.host,
            "blocking_factor": self.blocking_factor,
            "inodes": self.inodes,
            "directories": self.directories,
            "files": self.files,
            "blocks": self.blocks,
            "records": self.records,
            "volumes": self.volumes,
            "medium": self.medium,
            "bytes": self.stats.bytes,
            "seconds": round(self.stats.seconds, 3),
            "warnings": self.stats.warnings,
        }


def resolve_source(path: str) -> str:
    """The absolute, resolved path to dump, or a SourceError saying why not."""
    try:
        real = os.path.realpath(path, strict=True)
        st = os.stat(real)
    except FileNotFoundError:
        raise SourceError(f"cannot dump {path}: no such file or directory") from None
    except OSError as err:
        raise SourceError(f"cannot dump {path}: {err.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        try:
            os.close(os.open(real, os.O_RDONLY | os.O_DIRECTORY))
        except OSError as err:
            raise SourceError(f"cannot dump {path}: {err.strerror}") from None
    return real


def _field(text: str) -> bytes:
    """A c_label/c_filesys/c_dev/c_host value: bytes, cut to fit its NUL-terminated field."""
    return os.fsencode(text)[: NAMELEN - 1]


def _when(date: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(date))


def _check_record_size(blocking_factor: int, medium: Medium) -> None:
    """A dump's records must fit the drive: the seed's restoring side must take them too."""
    if medium.max_record_size and blocking_factor * TP_BSIZE > medium.max_record_size:
        largest = medium.max_record_size // TP_BSIZE
        raise MediaError(
            f"blocking factor {blocking_factor} ({blocking_factor} KiB records) is larger than the "
            f"largest block {medium.name} takes ({largest} KiB): use -b {min(largest, 256)} or less"
        )


def run_dump(options: DumpOptions, open_output: Callable[[], Medium], run: RunContext) -> DumpResult:
    """Dump ``options.path`` to the medium ``open_output`` opens.

    The medium is opened only once the source has been checked and mapped, so
    a dump that cannot start creates nothing; one that fails later has its
    output discarded by the medium (a file never looks complete).
    """
    if options.level != 0:
        raise UsageError("only level 0 is supported so far: incremental levels come with the dump history")
    if not MIN_BLOCKING_FACTOR <= options.blocking_factor <= MAX_BLOCKING_FACTOR:
        raise UsageError(f"blocking factor must be {MIN_BLOCKING_FACTOR} to {MAX_BLOCKING_FACTOR}")
    source = resolve_source(options.path)
    dump_date = int(time.time())  # the tree is read from now on: later changes belong to the next dump
    fs = describe(source)
    label = options.label or (fs.label if fs and fs.label else "none")
    host = socket.gethostname()
    packer = HeaderPacker(
        date=dump_date,
        ddate=0,
        level=options.level,
        label=os.fsencode(label)[:15],
        filesys=_field(source),  # Linux restore -C compares against the directory named here
        dev=_field(fs.device if fs else source),
        host=_field(host),
        ntrec=options.blocking_factor,
    )
    tree = map_tree(os.fsencode(source), run)
    with open_output() as medium:
        _check_record_size(options.blocking_factor, medium)
        writer = RecordWriter(
            medium,
            options.blocking_factor,
            volume_header=lambda split: packer.volume_header(
                split.tapea,
                volume=split.volume,
                inumber=split.inumber,
                inode=split.inode,
                continued_blocks=split.continued_blocks,
            ),
            description=f"the dump of {source} taken {_when(dump_date)}",
        )
        dumper = DumpWriter(tree, writer, packer, run)
        run.reporter.phase("dumping", total_bytes=tree.estimated_bytes)
        dumper.write_volume_start()
        dumper.write_directories()
        dumper.write_files()
        dumper.finish()
    run.stats.entries = dumper.inodes_written
    run.stats.bytes = writer.bytes_written
    run.stats.stop()
    return DumpResult(
        path=source,
        level=options.level,
        date=dump_date,
        label=label,
        filesys=os.fsdecode(_field(source)),
        device=fs.device if fs else source,
        host=host,
        blocking_factor=options.blocking_factor,
        inodes=dumper.inodes_written,
        directories=len(tree.directories),
        files=tree.files,
        blocks=writer.blocks_written,
        records=writer.records_written,
        volumes=writer.volume,
        medium=medium.name,
        stats=run.stats,
    )
