"""Media: where records go to and come from.

The engine talks to every backend through the Medium protocol of base.py and
never learns which one it has. ``open_medium`` turns what the user typed after
``-f`` into a backend.
"""

from __future__ import annotations

from ndmptools.media.base import Medium
from ndmptools.media.file import FileMedium


def open_medium(spec: str, mode: str) -> Medium:
    """Open ``spec`` for reading (``"r"``) or writing (``"w"``); ``-`` is stdin/stdout."""
    if mode not in ("r", "w"):
        raise ValueError(f"mode must be 'r' or 'w', not {mode!r}")
    return FileMedium.open(spec, mode)


__all__ = ["Medium", "open_medium"]
