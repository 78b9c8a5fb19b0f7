"""Errors the engine raises; each carries its exit code (see ndmptools.errors.EXIT_CODES)."""

from ndmptools.errors import (
    EXIT_CODES,
    ChainError,
    FormatError,
    MediaError,
    NdmpToolsError,
    SnapshotError,
    StateError,
)

__all__ = [
    "EXIT_CODES",
    "ChainError",
    "FormatError",
    "Interrupted",
    "MediaError",
    "NdmpToolsError",
    "RemoteError",
    "SnapshotError",
    "SourceError",
    "StateError",
    "TargetError",
    "UsageError",
]


class UsageError(NdmpToolsError):
    """Options that cannot work together, found after parsing."""

    exit_code = 2


class SourceError(NdmpToolsError):
    """The path to dump does not exist or cannot be read."""

    exit_code = 4


class TargetError(NdmpToolsError):
    """The restore target cannot be created or written."""

    exit_code = 7


class Interrupted(NdmpToolsError):
    """The user or the system stopped the run (SIGINT, SIGTERM)."""

    exit_code = 130


class RemoteError(NdmpToolsError):
    """The far side of an ndmpcopy failed, or ssh could not reach it.

    It ends with the far side's own exit code when that names an error
    (a far dump without its base is a chain error here too), else 5: the
    stream to or from the far side is the copy's medium.
    """

    exit_code = 5

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
