"""Runs ``ndmptools`` and kills it with SIGKILL at the medium seam: a crash at an exact record.

FAULT_KILL_AFTER_RECORDS=N lets N records reach the medium and kills the
process as it hands over the next; with FAULT_PARTIAL=1 half of that record
is written first, as a power cut in the middle of a write would leave it.
FAULT_HISTORY_BATCH=N makes the file history go to the state database every
N inodes, so that a kill finds batches written after the last checkpoint.
Nothing else is changed: the dump, its media and its state are the real ones.
"""

from __future__ import annotations

import os
import signal
import sys

from ndmptools.media.file import FileMedium
from ndmptools.media.vtape import VirtualTape

_written = 0


def _install(cls, partial_write) -> None:
    original = cls.write_record

    def write_record(self, record):
        global _written
        if _written == int(os.environ["FAULT_KILL_AFTER_RECORDS"]):
            if os.environ.get("FAULT_PARTIAL") == "1":
                partial_write(self, bytes(record))
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, record)
        _written += 1

    cls.write_record = write_record


def _half_to_file(medium: FileMedium, record: bytes) -> None:
    os.write(medium._fd, record[: len(record) // 2])


def _half_to_tape(medium: VirtualTape, record: bytes) -> None:
    os.pwrite(medium._fd, len(record).to_bytes(4, "little") + record[: len(record) // 2], medium._offset)


if __name__ == "__main__":
    _install(FileMedium, _half_to_file)
    _install(VirtualTape, _half_to_tape)
    if os.environ.get("FAULT_HISTORY_BATCH"):
        from ndmptools.engine.dump.filehistory import FileHistoryRecorder

        FileHistoryRecorder.BATCH = int(os.environ["FAULT_HISTORY_BATCH"])
    from ndmptools.cli import main

    main(sys.argv[1:])
