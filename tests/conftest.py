"""Shared fixtures: the sample tree, its dump, a CLI runner, and the no-skip rule.

Under ``make test`` and CI (NDMPTOOLS_NO_SKIP=1) a skipped test fails: every
test this machine can run must run. Skips only show (with -ra) when pytest is
run by hand on a machine missing root or Debian's tools.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

import pytest
from click.testing import CliRunner

from tests.debian import missing_tools
from tests.trees import build_sample_tree

IS_ROOT = os.geteuid() == 0

# Every run of the suite keeps its dump history in a directory of its own, never in
# /var/lib/ndmptools; tests that need a history to themselves pass --state-dir.
os.environ["NDMPTOOLS_STATE_DIR"] = tempfile.mkdtemp(prefix="ndmptools-test-state-")
atexit.register(shutil.rmtree, os.environ["NDMPTOOLS_STATE_DIR"], True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under NDMPTOOLS_NO_SKIP=1 (make test, CI) a skip is reported as a failure."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("NDMPTOOLS_NO_SKIP") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if SKIPPED_FOR_REAL in reason:
            return  # this machine cannot run it (no kernel support): a stand-in test ran instead
        report.outcome = "failed"
        report.longrepr = f"skipped under NDMPTOOLS_NO_SKIP=1: {reason}; `make test` installs what is missing"


SKIPPED_FOR_REAL = "skipped-for-real"


def pytest_terminal_summary(terminalreporter):
    """Say plainly which providers ran for real and which only against a stand-in."""
    skipped = terminalreporter.stats.get("skipped", [])
    lines = []
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if SKIPPED_FOR_REAL in reason:
            lines.append(f"{report.nodeid}: {reason.split(SKIPPED_FOR_REAL + ': ', 1)[-1]}")
    if lines:
        terminalreporter.section("skipped-for-real (this machine cannot run them)")
        for line in lines:
            terminalreporter.line(line)


def pytest_collection_modifyitems(config, items):
    missing = missing_tools()
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root"))
        if "debian" in item.keywords and missing:
            item.add_marker(pytest.mark.skip(reason=f"Debian tools missing: {', '.join(missing)}"))


@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()


class Ndmptools:
    """Runs the real command in a new process, as a user or cron would."""

    def __call__(
        self, *args: str, input: bytes | None = None, cwd: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ndmptools", *args],
            input=input,
            cwd=cwd,
            capture_output=True,
            timeout=timeout,
        )

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        done = self(*args, **kw)
        assert done.returncode == 0, (done.returncode, done.stderr.decode(errors="replace"))
        return done


class StateRun:
    """The real command in a new process, with a state directory (dump history) of its own."""

    def __init__(self, tmp_path, ndmptools: Ndmptools) -> None:
        self.state = str(tmp_path / "state")
        self.ndmptools = ndmptools

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.ndmptools("--state-dir", self.state, *args, **kw)

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.ndmptools.ok("--state-dir", self.state, *args, **kw)

    def json(self, *args: str, **kw):
        """The --json document of a run that ended with 0 or 1."""
        done = self("--json", *args, **kw)
        assert done.returncode in (0, 1), done.stderr.decode(errors="replace")
        return json.loads(done.stdout)

    def result(self, *args: str) -> tuple[int, dict]:
        """The exit code and the --json document, whatever the code."""
        done = self("--json", *args)
        assert done.stdout, done.stderr.decode(errors="replace")
        return done.returncode, json.loads(done.stdout)

    def ndmptools_args(self) -> list[str]:
        return [sys.executable, "-m", "ndmptools", "--state-dir", self.state]

    def sql(self, query: str, *params):
        with sqlite3.connect(os.path.join(self.state, "ndmptools.db")) as db:
            return db.execute(query, params).fetchall()


@pytest.fixture(scope="session")
def ndmptools() -> Ndmptools:
    return Ndmptools()


@pytest.fixture(scope="session")
def sample_tree(tmp_path_factory) -> str:
    """The tree with every entry type (built once; tests must not change it)."""
    if not IS_ROOT:
        pytest.skip("needs root (device nodes, foreign owners)")
    return build_sample_tree(str(tmp_path_factory.mktemp("sample") / "tree"))


@pytest.fixture(scope="session")
def sample_dump(tmp_path_factory, sample_tree, ndmptools) -> str:
    """A level-0 dump of the sample tree made by the CLI."""
    out = str(tmp_path_factory.mktemp("dumps") / "sample.dump")
    ndmptools.ok("dump", "-level", "0", "-f", out, sample_tree)
    return out


SMALL_SPEC = {
    "a.txt": b"alpha\n",
    "empty": b"",
    "sub": {"b.bin": bytes(range(256)) * 40, "deeper": {"c": b"c" * 5000}, "link": ("link", "../a.txt")},
    "hard1": b"linked",
    "hard2": ("hard", "hard1"),
    "exec": ("mode", 0o755, b"#!/bin/sh\n"),
    "sparse": ("sparse", 2 << 20, 1 << 20, b"data in the middle"),
    "emptydir": {},
}


@pytest.fixture(scope="session")
def small_tree(tmp_path_factory) -> str:
    """A small tree of plain entries (no devices), for tests about options and media."""
    from tests.trees import build_tree_from_spec

    root = str(tmp_path_factory.mktemp("small") / "tree")
    build_tree_from_spec(root, SMALL_SPEC)
    return root
