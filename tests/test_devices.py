"""`ndmptools devices` and -f auto/--device, under umockdev: real libudev reads a mocked /sys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

DEVICES = os.path.join(os.path.dirname(__file__), "data", "lto-and-changer.umockdev")


def _under_umockdev(*args: str, device: str | None = DEVICES) -> subprocess.CompletedProcess:
    runner = shutil.which("umockdev-run")
    if runner is None:
        pytest.fail("umockdev-run is not installed: `make test` installs it")
    command = [
        runner,
        *(["--device", device] if device else []),
        "--",
        sys.executable,
        "-m",
        "ndmptools",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_drive_and_the_changer_are_listed():
    done = _under_umockdev("devices")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    drive = next(line for line in lines if line.startswith("/dev/st0"))
    assert drive.split() == ["/dev/st0", "/dev/nst0", "IBM", "ULTRIUM-HH8", "1097000123", "512", "KiB"]
    changer = next(line for line in lines if line.startswith("/dev/sg"))
    assert changer.split() == ["/dev/sg1", "IBM", "3573-TL", "00L4U78A5815_LL0"]
    assert not any(line.startswith("/dev/sg0") for line in lines)  # the drive's own sg node is no changer


def test_json_lists_every_attribute():
    done = _under_umockdev("devices", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["drives"] == [
        {
            "node": "/dev/st0",
            "nonrewinding_node": "/dev/nst0",
            "vendor": "IBM",
            "model": "ULTRIUM-HH8",
            "serial": "1097000123",
            "max_block": 512 * 1024,
        }
    ]
    assert found["changers"] == [
        {"node": "/dev/sg1", "vendor": "IBM", "model": "3573-TL", "serial": "00L4U78A5815_LL0"}
    ]


def test_no_devices_is_said_and_is_not_an_error():
    done = _under_umockdev("devices", device=None)
    assert done.returncode == 0
    assert done.stdout.strip() == "No tape drives or media changers found."
    assert json.loads(_under_umockdev("devices", "--json", device=None).stdout) == {
        "drives": [],
        "changers": [],
    }


def test_auto_and_device_pick_the_drive_by_its_serial(small_tree):
    # The mocked node is no tape drive: opening it shows which one was picked.
    for args in (["-f", "auto"], ["--device", "1097000123", "-f", "auto"]):
        done = _under_umockdev("dump", *args, small_tree)
        assert done.returncode == 5
        assert done.stderr.strip().splitlines()[-1].startswith("ndmptools: error: /dev/nst0:"), done.stderr
    done = _under_umockdev("dump", "--device", "0000", "-f", "auto", small_tree)
    assert done.returncode == 5
    assert "no tape drive with serial 0000 (drives found: 1097000123)" in done.stderr
    done = _under_umockdev("dump", "-f", "auto", small_tree, device=None)
    assert done.returncode == 5 and "no tape drive found" in done.stderr
