"""Rendering: the progress bar, warnings, the summary line and --json."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TextIO

import click

from ndmptools.engine.progress import RunStats, human_bytes


class OutputClosed(Exception):
    """Standard output was closed by its reader (``restore -t | head``): stop, quietly, with 0.

    A compare whose reader left while it printed a difference exits with ``exit_code`` 11.
    """

    def __init__(self, exit_code: int = 0) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


@dataclass
class App:
    """Global settings shared by every command (on ``ctx.obj``)."""

    json: bool = False
    quiet: bool = False
    verbose: int = 0
    debug: bool = False
    state_dir: str | None = None  # --state-dir / NDMPTOOLS_STATE_DIR; None: the default place
    stderr: TextIO = field(default_factory=lambda: sys.stderr)


class ConsoleReporter:
    """Draws a tqdm bar on a terminal (nothing under cron) and prints warnings as they come."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._bar = None
        self._tty = app.stderr.isatty() and not app.quiet

    def phase(self, name: str, total_bytes: int | None = None) -> None:
        if self.app.verbose and not self.app.quiet:
            self._write(f"ndmptools: {name}")
        if not self._tty:
            return
        if total_bytes is not None or self._bar is None:
            self._close_bar()
            from tqdm import tqdm  # only when there is a terminal to draw on

            self._bar = tqdm(
                total=total_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.app.stderr,
                leave=False,
                dynamic_ncols=True,
                desc=name,
            )
        else:
            self._bar.set_description(name)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.update(nbytes)

    def warning(self, message: str) -> None:
        if not self.app.quiet:
            self._write(f"ndmptools: warning: {message}")

    def note(self, message: str) -> None:
        if not self.app.quiet:
            self._write(f"ndmptools: note: {message}")

    def close(self) -> None:
        self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.app.stderr)
        else:
            click.echo(line, file=self.app.stderr)


def summary_line(verb: str, stats: RunStats, found: str = "", extra: str = "") -> str:
    """``dump: 20,012 entries, 83.2 MiB in 0.45 s (184.9 MiB/s)``, what was ``found``, the warnings,
    and ``extra``."""
    line = (
        f"{verb}: {stats.entries:,} entries, {human_bytes(stats.bytes)} in {stats.seconds:.2f} s "
        f"({stats.mib_per_second:.1f} MiB/s)"
    )
    if found:
        line += f", {found}"
    if stats.warning_count:
        line += f", {stats.warning_count:,} warning{'s' if stats.warning_count != 1 else ''}"
    if extra:
        line += f"; {extra}"
    return line


def finish(app: App, verb: str, stats: RunStats, payload: dict | None = None, extra: str = "") -> int:
    """Print the summary (stderr) or the --json document (stdout); the exit code by warnings."""
    if app.json and payload is not None:
        click.echo(json.dumps(payload, indent=2, sort_keys=True))
    elif not app.quiet:
        click.echo(summary_line(verb, stats, extra=extra), file=app.stderr)
    return 1 if stats.warning_count else 0
