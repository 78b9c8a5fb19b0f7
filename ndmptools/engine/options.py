"""What a run is asked to do: frozen option objects the CLI builds and the engine reads."""

from __future__ import annotations

from dataclasses import dataclass

from ndmptools.format.constants import DEFAULT_BLOCKING_FACTOR


@dataclass(frozen=True)
class DumpOptions:
    """``ndmptools dump``: what to back up, where to, and how."""

    path: str
    file: str
    level: int = 0
    blocking_factor: int = DEFAULT_BLOCKING_FACTOR
    label: str | None = None


@dataclass(frozen=True)
class RestoreOptions:
    """``ndmptools restore``: which dump, into which target, which paths (all when empty)."""

    file: str
    target: str = "."
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListOptions:
    """``ndmptools restore -t``: list a dump's entries without restoring anything."""

    file: str
    paths: tuple[str, ...] = ()
