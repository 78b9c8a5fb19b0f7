"""Media: where records go to and come from.

The engine talks to every backend through the Medium protocol of base.py and
never learns which one it has. ``open_medium`` turns what the user typed after
``-f`` into a backend:

    -               standard input or output
    auto            the first tape drive udev lists (or the one with --device SERIAL)
    /dev/nst0       a SCSI tape drive (any character device of the st driver)
    vtape:DIR       a library of virtual tapes (DIR/CARTRIDGE.tap to start at one)
    NAME.tap        one virtual tape
    anything else   a plain file
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ndmptools.errors import MediaError
from ndmptools.media.base import Medium, NotSupported, Position, Prompt
from ndmptools.media.file import FileMedium

ST_MAJOR = 9
VTAPE_PREFIX = "vtape:"


@dataclass(frozen=True)
class MediaRequest:
    """How to open media: the -f values and the options that go with them."""

    specs: tuple[str, ...]
    mode: str  # "r" or "w"
    capacity: int | None = None  # virtual tapes: bytes per cartridge
    append: bool = False  # dump: after the last dump on the tape
    file_number: int | None = None  # restore: the Nth dump on the tape (1 = first)
    device_serial: str | None = None  # -f auto / --device: pick a drive by serial
    prompt: Prompt | None = None  # asks the operator for the next volume; None: fail instead


def _is_st_device(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == ST_MAJOR


def describe_spec(spec: str) -> str:
    """The kind of medium a -f value names, for messages."""
    if spec == "-":
        return "stream"
    if spec == "auto" or _is_st_device(spec):
        return "tape drive"
    if spec.startswith(VTAPE_PREFIX):
        return "virtual tape library"
    if spec.endswith(".tap"):
        return "virtual tape"
    return "file"


def open_medium(request: MediaRequest) -> Medium:
    """Open the medium ``request`` names, positioned for the dump or restore to start."""
    if request.mode not in ("r", "w"):
        raise ValueError(f"mode must be 'r' or 'w', not {request.mode!r}")
    specs = request.specs
    first = specs[0]
    kind = "tape drive" if request.device_serial else describe_spec(first)
    if len(specs) > 1 and (kind != "file" or request.mode != "r"):
        raise MediaError("several -f values are for reading a dump whose volumes are files")
    if request.capacity is not None and kind not in ("virtual tape", "virtual tape library"):
        raise MediaError("--capacity is for virtual tapes (NAME.tap or vtape:DIR)")
    if request.append and kind in ("file", "stream"):
        raise MediaError(
            f"{first} cannot be appended to: a file holds a single dump (use a tape or NAME.tap)"
        )
    if kind == "file" or kind == "stream":
        medium: Medium = FileMedium.open_volumes(list(specs), request.mode, request.prompt)
    elif kind == "virtual tape library":
        from ndmptools.media.vtape import VirtualLibrary

        path = first[len(VTAPE_PREFIX) :]
        directory, start = os.path.split(path) if path.endswith(".tap") else (path, None)
        medium = VirtualLibrary(
            directory or ".", request.mode, request.capacity, start=start, append=request.append
        )
    elif kind == "virtual tape":
        from ndmptools.media.vtape import SingleTape

        medium = SingleTape(first, request.mode, request.capacity, request.prompt)
        if request.append:
            medium.seek_end_of_data()
    else:
        medium = _open_drive(request)
        if request.append:
            medium.seek_end_of_data()
    if request.file_number is not None:
        _go_to_file(medium, request.file_number)
    return medium


def open_path(spec: str, mode: str) -> Medium:
    """One medium by its -f value, with no options (library and test use)."""
    return open_medium(MediaRequest((spec,), mode))


def _open_drive(request: MediaRequest) -> Medium:
    from ndmptools.media.st import ScsiTape

    host_limit = None
    path = request.specs[0]
    if path == "auto" or request.device_serial:
        from ndmptools.media.discovery import find_drive

        drive = find_drive(request.device_serial)
        path = drive.nonrewinding_node or drive.node
        host_limit = drive.max_block
    return ScsiTape(path, request.mode, prompt=request.prompt, host_limit=host_limit)


def _go_to_file(medium: Medium, number: int) -> None:
    """Position at the start of the Nth dump on the medium (1 is the first)."""
    if number < 1:
        raise MediaError("dump numbers on a tape start at 1")
    if number == 1 and not medium.keeps_records:
        return
    try:
        medium.seek(Position(number - 1, 0))
    except NotSupported as err:
        raise MediaError(f"{err.message}: --file-number {number} needs a tape") from None


def seal_volume(info: dict) -> None:
    """Finish a volume a dump left at a checkpoint (``Medium.checkpoint``), ending it there.

    A file is cut back to the checkpoint and renamed into place; a cartridge
    gets its filemark there. Sealing twice does no harm. A tape or a stream
    stays as it is: a restore skips what its next volume repeats.
    """
    kind = info.get("kind")
    if kind == "file":
        temp, final = info["temp"], info["final"]
        if os.path.exists(temp):
            try:
                os.truncate(temp, info["bytes"])
                fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(temp, final)
            except OSError as err:
                raise MediaError(f"cannot finish {final}: {err.strerror}") from err
        elif not os.path.exists(final):
            raise MediaError(f"{final}, a volume of this dump, is gone (neither it nor {temp} exists)")
    elif kind == "vtape":
        from ndmptools.media.vtape import seal_tap

        seal_tap(info["path"], info["offset"])


def discard_volume(info: dict) -> None:
    """Undo a volume begun after the last checkpoint: it holds nothing a restart keeps."""
    kind = info.get("kind")
    if kind == "file":
        try:
            os.unlink(info["temp"])
        except FileNotFoundError:
            pass
        except OSError as err:
            raise MediaError(f"cannot remove {info['temp']}: {err.strerror}") from err
    elif kind == "vtape":
        from ndmptools.media.vtape import blank_from

        blank_from(info["path"], info["offset"])


__all__ = [
    "MediaRequest",
    "Medium",
    "describe_spec",
    "discard_volume",
    "open_medium",
    "open_path",
    "seal_volume",
]
