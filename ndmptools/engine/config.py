"""The settings file: ``config.toml`` in the state directory, TOML, read with tomllib.

It sits next to the dump history because what it limits (the sessions) is
counted per state directory. Today it knows one key:

    max_sessions = 8    # at most this many dump and restore sessions at once

A missing file means no settings. A key it does not know, a value of the
wrong type, or a file that is not TOML is refused with one line naming the
file, so that a typo never silently leaves a limit unset.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass

from ndmptools.engine.errors import UsageError
from ndmptools.errors import StateError

CONFIG_NAME = "config.toml"

# key -> (type, what a value must be); the only place a new setting needs adding
KNOWN_KEYS: dict[str, tuple[type, str]] = {
    "max_sessions": (int, "a whole number of sessions, 1 or more"),
}


@dataclass(frozen=True)
class Config:
    """The settings of one state directory, and the file they came from."""

    path: str
    max_sessions: int | None = None


def config_path(state_dir: str) -> str:
    return os.path.join(state_dir, CONFIG_NAME)


def load_config(state_dir: str) -> Config:
    """The settings in ``<state_dir>/config.toml``; none when it does not exist."""
    path = config_path(state_dir)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return Config(path)
    except OSError as err:  # the state directory is not this user's: a state problem, not a usage one
        raise StateError(f"cannot read the settings file {path}: {err.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:  # TOML is UTF-8 text
        raise UsageError(f"the settings file {path} is not TOML: {err}") from None
    for key, value in data.items():
        if key not in KNOWN_KEYS:
            known = ", ".join(sorted(KNOWN_KEYS))
            raise UsageError(f"the settings file {path} has an unknown setting {key!r} (it knows {known})")
        kind, expected = KNOWN_KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 1):
            raise UsageError(f"the settings file {path}: {key} = {value!r} must be {expected}")
    return Config(path, max_sessions=data.get("max_sessions"))
