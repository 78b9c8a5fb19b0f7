"""Restartable dumps: killed in pass IV at twenty points, restarted in a new process, restored whole.

The dumps read a btrfs snapshot on a loop device and are killed with SIGKILL
at an exact record (tests/fault_dump.py, at the medium seam), some in the
middle of a write, some long after their last checkpoint, some at a change of
volume. Each restart runs in a new process; each restore (ndmptools', and
Debian's for files) must give back the tree byte for byte.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from ndmptools.engine.treediff import CompareRules, compare_trees
from tests.btrfs import btrfs_subvolume
from tests.debian import restore as debian_restore
from tests.test_multivolume import _records

pytestmark = pytest.mark.root

FAULT = os.path.join(os.path.dirname(__file__), "fault_dump.py")
RECORD_KIB = 16
CARTRIDGE = "1M"  # about 58 records of 16 KiB per cartridge


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A btrfs subvolume on a loop device; the dumps take ``data`` below it (snapshots go beside it)."""
    with btrfs_subvolume(tmp_path_factory.mktemp("restart")) as vol:
        data = vol / "data"
        (data / "a" / "deep").mkdir(parents=True)
        (data / "c").mkdir()
        rng = random.Random(6)
        for i in range(40):
            (data / "a" / f"f{i:02d}").write_bytes(rng.randbytes(rng.randrange(0, 150_000)))
        (data / "a" / "deep" / "tiny").write_bytes(b"x")
        (data / "c" / "big").write_bytes(rng.randbytes(3_000_000))
        with open(data / "c" / "sparse", "wb") as f:
            f.truncate(10 << 20)
            f.seek(5 << 20)
            f.write(b"in the middle of nowhere\n")
        os.link(data / "a" / "f01", data / "c" / "second-name")
        os.symlink("../a/f02", data / "c" / "sym")
        os.mkfifo(data / "c" / "fifo")
        yield data


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def _cli(state, *args: str) -> subprocess.CompletedProcess:
    return _run(sys.executable, "-m", "ndmptools", "--state-dir", str(state), *args)


def _killed_dump(state, kill_after: int, partial: bool, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FAULT_KILL_AFTER_RECORDS=str(kill_after), FAULT_PARTIAL="1" if partial else "0")
    return _run(sys.executable, FAULT, "dump", "--state-dir", str(state), *args, env=env)


def _contexts(state) -> list[dict]:
    done = _cli(state, "contexts", "list", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _snapshots(data) -> list[str]:
    container = data.parent / ".snapshot"
    return sorted(os.listdir(container)) if container.exists() else []


def _same(data, restored) -> None:
    compared, problems = compare_trees(str(data), str(restored))
    assert problems == [] and compared > 40


def _the_one_context(state) -> dict:
    found = _contexts(state)
    assert len(found) == 1, found
    assert found[0]["is_context_busy"] is False
    return found[0]


# (kill after N records, half a record written first, seconds between checkpoints, medium)
# A dump of the tree is ~400 records; the library changes cartridge every ~58.
POINTS = [
    (3, False, 0, "file"),
    (12, True, 0, "file"),
    (40, False, 3600, "file"),  # only the checkpoint at the start of pass IV: nothing on media
    (77, True, 0, "file"),
    (120, False, 0.05, "file"),
    (180, True, 0.02, "file"),
    (233, False, 0, "file"),
    (290, True, 0, "file"),
    (345, False, 0.02, "file"),
    (392, True, 0, "file"),
    (6, True, 3600, "library"),
    (57, False, 0, "library"),
    (58, True, 3600, "library"),
    (59, False, 0, "library"),
    (116, True, 0, "library"),
    (117, False, 3600, "library"),
    (175, True, 0, "library"),
    (236, False, 3600, "library"),
    (300, True, 0, "library"),
    (389, False, 0, "library"),
]


@pytest.mark.parametrize(
    ("kill_after", "partial", "interval", "medium"),
    POINTS,
    ids=[f"{m}-{n}{'-mid-write' if p else ''}-every-{i}s" for n, p, i, m in POINTS],
)
def test_a_dump_killed_in_pass_iv_restarts_and_restores_whole(
    volume, tmp_path, ndmptools, kill_after, partial, interval, medium
):
    state = tmp_path / "state"
    if medium == "file":
        first, media = [str(tmp_path / "vol001")], ["-f", str(tmp_path / "vol001")]
    else:
        first, media = [], ["--capacity", CARTRIDGE, "-f", f"vtape:{tmp_path / 'lib'}"]
    killed = _killed_dump(
        state,
        kill_after,
        partial,
        "-b",
        str(RECORD_KIB),
        "--checkpoint-interval",
        str(interval),
        *media,
        str(volume),
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    context = _the_one_context(state)
    assert context["dump_path"] == str(volume) and not context["is_cleanup_pending"]
    assert len(_snapshots(volume)) == 1  # kept for the restart
    assert not any(os.path.exists(p) for p in first)  # the unfinished volume is not in place yet

    next_media = ["-f", str(tmp_path / "vol002")] if medium == "file" else media[:-2] + media[-2:]
    restarted = _cli(state, "dump", "--json", "--restart", context["context_id"], *next_media)
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["restarted"] == context["context_id"]
    assert _contexts(state) == [] and _snapshots(volume) == []

    target = tmp_path / "restored"
    if medium == "file":
        files = [str(tmp_path / v) for v in ("vol001", "vol002") if (tmp_path / v).exists()]
        if interval in (0, 3600):  # a restart from nothing on media is the whole dump, on one volume
            assert len(files) == (2 if interval == 0 else 1)
        ndmptools.ok("restore", *[a for f in files for a in ("-f", f)], "-D", str(target))
    else:
        ndmptools.ok("restore", "-f", f"vtape:{tmp_path / 'lib'}", "-D", str(target))
    _same(volume, target)
    if medium == "file" and kill_after % 3 == 0 and (tmp_path / "vol001").exists():
        debian = tmp_path / "debian"
        debian.mkdir()
        done = debian_restore(["-x", "-a", "-y", "-M", "-f", str(tmp_path / "vol")], cwd=str(debian))
        assert done.returncode == 0, done.stderr
        _compared, problems = compare_trees(str(volume), str(debian), CompareRules(time_resolution_ns=1000))
        assert problems == []


def test_a_restart_killed_in_turn_restarts_again(volume, tmp_path, ndmptools):
    state = tmp_path / "state"
    lib = f"vtape:{tmp_path / 'lib'}"
    media = ["-b", str(RECORD_KIB), "--capacity", CARTRIDGE, "--checkpoint-interval", "0", "-f", lib]
    assert _killed_dump(state, 90, True, *media, str(volume)).returncode == -signal.SIGKILL
    context = _the_one_context(state)["context_id"]
    again = _killed_dump(state, 100, True, "--restart", context, "--capacity", CARTRIDGE, "-f", lib)
    assert again.returncode == -signal.SIGKILL
    assert _the_one_context(state)["context_id"] == context
    ndmptools.ok(
        "--state-dir", str(state), "dump", "--restart", context[:8], "--capacity", CARTRIDGE, "-f", lib
    )
    ndmptools.ok("restore", "-f", lib, "-D", str(tmp_path / "r"))
    _same(volume, tmp_path / "r")
    # The restarted dump is complete, and a base for the next level.
    shown = json.loads(_cli(state, "chain", "show", "--json", str(volume)).stdout)
    assert [d["status"] for d in shown["dumps"]] == ["completed"]
    assert len(shown["dumps"][0]["media"]["volumes"]) >= 4
    assert _cli(state, "dump", "-level", "1", "-f", str(tmp_path / "l1"), str(volume)).returncode == 0


def _blocked_dump(state, fifo, data, *extra) -> subprocess.Popen:
    """A dump into a FIFO nobody reads: it fills the pipe and waits in pass IV, holding its context."""
    os.mkfifo(fifo)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ndmptools",
            "--state-dir",
            str(state),
            "dump",
            "-b",
            "4",
            *extra,
            "-f",
            str(fifo),
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_busy_contexts_refuse_delete_and_restart_and_sigterm_leaves_one(volume, tmp_path, ndmptools):
    state = tmp_path / "state"
    fifo = tmp_path / "fifo"
    dump = _blocked_dump(state, fifo, volume)
    received = bytearray()
    reader = open(fifo, "rb")  # noqa: SIM115 - held open across the checks below
    try:
        deadline = time.monotonic() + 30
        while not (found := _contexts(state)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert found and found[0]["is_context_busy"] is True
        context = found[0]["context_id"]
        shown = json.loads(_cli(state, "contexts", "show", "--json", context).stdout)
        assert shown["is_context_busy"] is True and shown["state_of_the_context"] == "active"
        refused = _cli(state, "contexts", "delete", context)
        assert refused.returncode == 8 and "busy" in refused.stderr and len(refused.stderr.splitlines()) == 1
        second = _cli(state, "dump", "--restart", context, "-f", str(tmp_path / "other"))
        assert second.returncode == 8 and "busy" in second.stderr
        assert not (tmp_path / "other").exists()

        dump.send_signal(signal.SIGTERM)
        drain = threading.Thread(target=lambda: received.extend(reader.read()))
        drain.start()
        _, err = dump.communicate(timeout=60)
        drain.join(timeout=60)
    finally:
        reader.close()
        if dump.poll() is None:
            dump.kill()
    assert dump.returncode == 130, err
    assert f"--restart {context}" in err
    assert _the_one_context(state)["context_id"] == context
    assert len(_snapshots(volume)) == 1
    # The stream went to a pipe: what the pipe took is volume 1, the restart volume 2, and
    # restore skips what volume 2 repeats.
    (tmp_path / "vol001").write_bytes(bytes(received))
    ndmptools.ok("--state-dir", str(state), "dump", "--restart", context, "-f", str(tmp_path / "vol002"))
    ndmptools.ok(
        "restore", "-f", str(tmp_path / "vol001"), "-f", str(tmp_path / "vol002"), "-D", str(tmp_path / "r")
    )
    _same(volume, tmp_path / "r")


def test_delete_releases_the_snapshot_and_the_unfinished_volume(volume, tmp_path):
    state = tmp_path / "state"
    media = ["-b", str(RECORD_KIB), "-f", str(tmp_path / "vol001")]
    assert _killed_dump(state, 100, True, *media, str(volume)).returncode == -signal.SIGKILL
    context = _the_one_context(state)
    shown = _cli(state, "contexts", "show", context["context_id"])
    for label in (
        "Is Cleanup Pending?: false",
        "Backup Engine Type: dump",
        "Is Snapshot Copy Auto-created?: true",
        "Restart Pass: 4",
        "Is Context Restartable?: true",
        "Is Context Busy?: false",
        "Snapshot Copy Name: snapshot_for_backup.",
        "State of the Context: restartable",
        f"Dump Path: {volume}",
        "Incremental Backup Level ID: 0",
    ):
        assert label in shown.stdout, shown.stdout
    assert [n for n in os.listdir(tmp_path) if n.startswith(".vol001.")]  # the unfinished volume, kept
    deleted = _cli(state, "contexts", "delete", context["context_id"])
    assert deleted.returncode == 0, deleted.stderr
    assert _contexts(state) == [] and _snapshots(volume) == []
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".vol001.")]
    assert not (tmp_path / "vol001").exists()
    gone = _cli(state, "contexts", "show", context["context_id"])
    assert gone.returncode == 8 and gone.stderr.count("\n") == 1
    # A dump given up is no base.
    refused = _cli(state, "dump", "-level", "1", "-f", str(tmp_path / "l1"), str(volume))
    assert refused.returncode == 9


def test_the_end_of_the_last_tape_leaves_a_context(volume, tmp_path, ndmptools):
    state = tmp_path / "state"
    first = tmp_path / "a.tap"
    stopped = _cli(
        state,
        "dump",
        "--no-prompt",
        "-b",
        str(RECORD_KIB),
        "--capacity",
        CARTRIDGE,
        "-f",
        str(first),
        str(volume),
    )
    assert stopped.returncode == 5 and "no volume 2" in stopped.stderr
    context = _the_one_context(state)["context_id"]
    ndmptools.ok("--state-dir", str(state), "dump", "--restart", context, "-f", str(tmp_path / "b.tap"))
    volumes = []
    for n, tap in enumerate((first, tmp_path / "b.tap"), start=1):
        volumes += ["-f", str(tmp_path / f"vol{n:03d}")]
        (tmp_path / f"vol{n:03d}").write_bytes(b"".join(_records(str(tap))))
    ndmptools.ok("restore", *volumes, "-D", str(tmp_path / "r"))
    _same(volume, tmp_path / "r")


def test_a_failure_before_pass_iv_leaves_no_context_and_no_snapshot(volume, tmp_path):
    state = tmp_path / "state"
    failed = _cli(state, "dump", "-b", "4", "-f", "/dev/full", str(volume))
    assert failed.returncode == 5 and "no space" in failed.stderr
    assert _contexts(state) == [] and _snapshots(volume) == []


def test_restart_refusals_are_one_line(volume, tmp_path):
    state = tmp_path / "state"
    vol1 = tmp_path / "vol001"
    assert (
        _killed_dump(state, 50, False, "-b", "16", "-f", str(vol1), str(volume)).returncode == -signal.SIGKILL
    )
    context = _the_one_context(state)["context_id"]
    for args, code, words in (
        (["--restart", context, "-f", str(vol1)], 2, "holds a volume of this dump"),
        (["--restart", context, "-f", str(tmp_path / "x"), str(volume)], 2, "leave it out"),
        (["--restart", context, "-level", "1", "-f", str(tmp_path / "x")], 2, "--level"),
        (["--restart", "0000", "-f", str(tmp_path / "x")], 8, "no context"),
        (["--restart", "not-an-id!", "-f", str(tmp_path / "x")], 8, "not a context identifier"),
    ):
        done = _cli(state, "dump", *args)
        assert done.returncode == code and words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert _the_one_context(state)["context_id"] == context
    assert _cli(state, "contexts", "delete", context).returncode == 0


def test_a_dump_killed_before_pass_iv_is_cleaned_up_by_the_next(volume, tmp_path):
    state = tmp_path / "state"
    killed = _killed_dump(state, 0, False, "-b", "4", "-f", str(tmp_path / "d"), str(volume))
    assert killed.returncode == -signal.SIGKILL
    found = _contexts(state)
    assert len(found) == 1 and found[0]["is_cleanup_pending"] is True
    shown = json.loads(_cli(state, "contexts", "show", "--json", found[0]["context_id"]).stdout)
    assert shown["is_context_restartable"] is False
    assert len(_snapshots(volume)) == 1
    refused = _cli(state, "dump", "--restart", found[0]["context_id"], "-f", str(tmp_path / "e"))
    assert refused.returncode == 8 and "no checkpoint" in refused.stderr
    done = _cli(state, "dump", "-f", str(tmp_path / "d"), str(volume))
    assert done.returncode == 0, done.stderr
    assert "died early" in done.stderr
    assert _contexts(state) == [] and _snapshots(volume) == []


def test_a_context_whose_snapshot_was_removed_by_hand_cannot_restart_but_deletes(volume, tmp_path):
    state = tmp_path / "state"
    assert (
        _killed_dump(state, 60, False, "-b", "16", "-f", str(tmp_path / "vol001"), str(volume)).returncode
        == -9
    )
    context = _the_one_context(state)["context_id"]
    (snapshot,) = _snapshots(volume)
    subprocess.run(
        ["btrfs", "subvolume", "delete", str(volume.parent / ".snapshot" / snapshot)],
        check=True,
        capture_output=True,
    )
    refused = _cli(state, "dump", "--restart", context, "--no-update", "-f", str(tmp_path / "vol002"))
    assert refused.returncode == 2 and "--no-update" in refused.stderr
    refused = _cli(state, "dump", "--restart", context, "-f", str(tmp_path / "vol002"))
    assert refused.returncode == 10 and "is gone" in refused.stderr and refused.stderr.count("\n") == 1
    assert not (tmp_path / "vol002").exists()
    deleted = _cli(state, "contexts", "delete", context)
    assert deleted.returncode == 0, deleted.stderr
    assert _contexts(state) == [] and not [n for n in os.listdir(tmp_path) if n.startswith(".vol001.")]
