"""`make bench`'s runner works end to end on a small corpus: every case runs, every peer answers.

No figure is judged here (speed is measured in benchmarks/, never in a test):
the rows must exist, with times and ratios, for each case and each peer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(REPO, "benchmarks", "run.py")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Linux dump reads a loop device: root only")


def test_quick_run_has_every_case_and_peer(tmp_path) -> None:
    work = tmp_path / "work"
    done = subprocess.run(
        [sys.executable, RUNNER, "--quick", "--repeat", "1", "--json", "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    rows = report["rows"]
    peers = {(r["case"], r["peer"]) for r in rows}
    assert peers >= {
        ("dump-small", "tar -cf"),
        ("dump-small", "Linux dump -0"),
        ("dump-large", "tar -cf"),
        ("dump-large", "Linux dump -0"),
        ("level1", "tar --listed-incremental"),
        ("restore", "tar -xf"),
        ("restore", "Debian restore -r"),
        ("dar", "ndmptools restore --no-direct"),
        ("dar", "Debian restore -x"),
        ("dump-small-rss", "tar -cf"),
        ("startup", "python -c pass"),
    }
    for row in rows:
        assert row["ndmptools_s"] > 0 and row["peer_s"] > 0, row
        if not row["case"].endswith("-rss"):
            assert row["ratio"] == pytest.approx(row["ndmptools_s"] / row["peer_s"]), row
    # The DAR row names the file it restored: the last of the dump, under small/.
    assert any(r["case"] == "dar" and "small/" in r["what"] for r in rows)
    # Its loop devices are gone again, and the work directory holds no image attached.
    attached = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(work) not in attached


def test_bad_case_is_one_line(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, RUNNER, "--cases", "nosuch", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "invalid choice" in done.stderr
