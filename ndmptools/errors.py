"""The root of the error hierarchy, shared by every layer.

An error class carries its exit code; its message is the one line the user
sees. It lives at the package root (not in engine/) so that format/ and media/
can raise members of the hierarchy without importing the engine above them.
"""


class NdmpToolsError(Exception):
    """Base of every error ndmptools reports to the user in one line."""

    exit_code = 3

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class FormatError(NdmpToolsError):
    """The input is not a dump, or is corrupt or truncated at a known byte offset."""

    exit_code = 6

    def __init__(self, message: str, offset: int | None = None) -> None:
        if offset is not None:
            message = f"{message} (at byte {offset})"
        super().__init__(message)
        self.offset = offset


class MediaError(NdmpToolsError):
    """The medium cannot be opened, read or written."""

    exit_code = 5


class StateError(NdmpToolsError):
    """The state directory or its database (the dump history) cannot be used."""

    exit_code = 8


class ChainError(NdmpToolsError):
    """An incremental cannot be made or applied: no base, a changed file system, a missing dump."""

    exit_code = 9


class SnapshotError(NdmpToolsError):
    """A snapshot cannot be made, found or removed."""

    exit_code = 10


class SessionLimitReached(NdmpToolsError):
    """As many dump and restore sessions run as the machine allows: try again later, or --wait."""

    exit_code = 12


# restore -C found the tree different from the dump: a result, neither a warning nor an error.
DIFFERENCES_FOUND = 11

EXIT_CODES = (
    (0, "success"),
    (1, "finished with warnings (some entries were skipped or changed)"),
    (2, "usage error (bad option or argument)"),
    (3, "internal error (a bug: run again with --debug and report it)"),
    (4, "source error (the path to dump cannot be read)"),
    (5, "media error (the dump file or device cannot be opened, read or written)"),
    (6, "format error (not a dump, or a corrupt or truncated one)"),
    (7, "target error (the restore target is unwritable or full, or the tree to compare is unreadable)"),
    (8, "state error (the dump history cannot be read or written)"),
    (9, "chain error (an incremental without its base, or applied out of order)"),
    (10, "snapshot error (a snapshot cannot be made, found or removed)"),
    (DIFFERENCES_FOUND, "differences found (restore -C: the tree does not match the dump)"),
    (12, "session limit reached (as many dumps and restores run as allowed; ndmptools sessions lists them)"),
    (130, "interrupted"),
)
