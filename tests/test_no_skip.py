"""The rule that keeps CI honest: under NDMPTOOLS_NO_SKIP=1 a skipped test fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, no_skip: bool) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_makereport  # noqa: F401\n"
    )
    (tmp_path / "test_sample.py").write_text(
        textwrap.dedent("""
        import pytest

        def test_skipped():
            pytest.skip("a tool is missing")

        def test_passing():
            pass
    """)
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("NDMPTOOLS_NO_SKIP", None)
    if no_skip:
        env["NDMPTOOLS_NO_SKIP"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_skip_fails_under_no_skip(tmp_path):
    done = _run(tmp_path, no_skip=True)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 passed" in done.stdout and "a tool is missing" in done.stdout


def test_a_skip_is_only_a_visible_skip_otherwise(tmp_path):
    done = _run(tmp_path, no_skip=False)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 1 skipped" in done.stdout
