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
