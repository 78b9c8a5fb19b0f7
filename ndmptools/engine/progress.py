"""How the engine tells the outside world what it is doing.

The engine calls a Reporter; the CLI plugs in one that draws a tqdm bar and
prints warnings, tests plug in one that records. The engine never prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class Reporter(Protocol):
    def phase(self, name: str, total_bytes: int | None = None) -> None:
        """A new phase starts (pass I, stage 3 ...); ``total_bytes`` sizes its bar."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more of the current phase are done."""

    def warning(self, message: str) -> None:
        """Something was skipped or changed; the run goes on and ends with exit code 1."""

    def note(self, message: str) -> None:
        """Something the operator should know that is not a fault (the exit code stays 0)."""

    def close(self) -> None:
        """The run is over; tidy the display."""


class NullReporter:
    """Reports nothing: for library use and tests that only look at results."""

    def phase(self, name: str, total_bytes: int | None = None) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class RunStats:
    """What a run did, for the one-line summary and for --json."""

    entries: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    warnings: list[str] = field(default_factory=list)  # the first MAX_KEPT_WARNINGS
    warning_count: int = 0
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.finished = time.monotonic()

    @property
    def seconds(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return max(end - self.started, 1e-9)

    @property
    def mib_per_second(self) -> float:
        return self.bytes / (1 << 20) / self.seconds


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB': sizes as people read them, in messages and summaries."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


MAX_KEPT_WARNINGS = 1000


class RunContext:
    """The reporter and the statistics of one run, handed down through the engine."""

    def __init__(self, reporter: Reporter | None = None) -> None:
        self.reporter: Reporter = reporter if reporter is not None else NullReporter()
        self.stats = RunStats()

    def note(self, message: str) -> None:
        self.stats.notes.append(message)
        self.reporter.note(message)

    def warn(self, message: str) -> None:
        self.stats.warning_count += 1
        if len(self.stats.warnings) < MAX_KEPT_WARNINGS:
            self.stats.warnings.append(message)
        self.reporter.warning(message)
