"""The seed's restore rules: room and inodes checked first (FORCE=Y skips it and stops cleanly),
overwrite and merge, EXTRACT=E renames, locks ignored, and the -E environment.

The full-disk cases run on small ext4 file systems on loop devices, where the
kernel, not a stand-in, says when the space or the inodes run out.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ndmptools.engine.progress import human_bytes
from ndmptools.engine.treediff import compare_trees
from tests.conftest import StateRun
from tests.loopfs import ext4

pytestmark = pytest.mark.root  # loop devices and mounts

MiB = 1 << 20


@pytest.fixture
def run(tmp_path, ndmptools) -> StateRun:
    return StateRun(tmp_path, ndmptools)


def _files(root, count: int, size: int, prefix: str = "f") -> None:
    for i in range(count):
        (root / f"{prefix}{i:03d}").write_bytes(os.urandom(size))


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    err = done.stderr.decode()
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def _free(path) -> tuple[int, int]:
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize, vfs.f_favail


# -- room and inodes, checked before anything is written ------------------------------------------


@pytest.mark.parametrize("history", [True, False], ids=["file-history", "media-size"])
def test_too_little_room_is_refused_with_both_numbers_and_nothing_written(tmp_path, run, history):
    tree = tmp_path / "src"
    (tree / "sub").mkdir(parents=True)
    _files(tree / "sub", 6, 1_000_000)
    dump = tmp_path / "d0"
    run.ok("dump", "-q", *([] if history else ["--no-history"]), "-f", str(dump), str(tree))
    with ext4(tmp_path, "40M") as small:
        free_bytes, _ = _free(small)
        done = run("restore", "-f", str(dump), "-D", str(small / "into"))
        assert done.returncode == 7
        line = _one_line_error(done)
        basis = "from the file history" if history else "by the size of the media"
        found = re.search(
            rf"needs (\S+ \S+) \(the data, (\S+ \S+) {basis}, plus 100\.0 MiB\) and it has (\S+ \S+) free",
            line,
        )
        assert found, line
        assert found.group(3) == human_bytes(free_bytes)
        data = float(found.group(2).split()[0])
        assert 5.7 <= data <= 6.2 and found.group(2).endswith("MiB")  # six 1 MB files and a little more
        assert "--force" in line
        assert not (small / "into").exists() and os.listdir(small) == []  # nothing written, not even DIR


def test_too_few_inodes_are_refused_with_both_numbers(tmp_path, run):
    tree = tmp_path / "src"
    tree.mkdir()
    _files(tree, 300, 100)
    dump = tmp_path / "d0"
    run.ok("dump", "-q", "-f", str(dump), str(tree))
    with ext4(tmp_path, "160M", inodes=64) as small:
        _, free_inodes = _free(small)
        done = run("restore", "-f", str(dump), "-D", str(small))
        assert done.returncode == 7
        line = _one_line_error(done)
        assert f"needs 300 inodes and it has {free_inodes:,} free" in line, line
        assert "plus 100.0 MiB" not in line  # the space was enough: only what is short is said
        assert os.listdir(small) == []


def test_room_enough_restores_and_a_partial_restore_counts_only_its_paths(tmp_path, run):
    tree = tmp_path / "src"
    (tree / "big").mkdir(parents=True)
    (tree / "small").mkdir()
    _files(tree / "big", 3, 40 * MiB)
    _files(tree / "small", 3, 1000)
    dump = tmp_path / "d0"
    run.ok("dump", "-q", "-f", str(dump), str(tree))
    with ext4(tmp_path, "140M") as small:
        assert run("restore", "-q", "-f", str(dump), "-D", str(small)).returncode == 7  # 120 MiB + 100
        for direct in ([], ["--no-direct"]):  # sizes from the file history either way
            code, result = run.result("restore", *direct, "-f", str(dump), "-D", str(small), "small")
            assert code == 0 and result["restored"] == 3, result
            assert result["needed"]["inodes"] == 4 and result["needed"]["data_bytes"] < 1 * MiB


def test_holes_cost_no_room_in_the_check(tmp_path, run):
    tree = tmp_path / "src"
    tree.mkdir()
    with open(tree / "sparse", "wb") as f:  # 1 GiB long, 1 MiB of data
        f.truncate(1 << 30)
        f.seek(300 * MiB)
        f.write(os.urandom(MiB))
    dump = tmp_path / "d0"
    run.ok("dump", "-q", "-f", str(dump), str(tree))
    with ext4(tmp_path, "160M") as small:
        code, result = run.result("restore", "-f", str(dump), "-D", str(small))
        assert code == 0, result
        assert MiB <= result["needed"]["data_bytes"] < 2 * MiB  # the blocks on media, not the size
        with open(small / "sparse", "rb") as f:
            f.seek(300 * MiB)
            assert len(f.read(MiB)) == MiB


# -- FORCE=Y: what fits, then a clean stop ---------------------------------------------------


def _check_whole_or_absent(tree, restored) -> tuple[int, int]:
    """Every file in ``restored`` is whole and equal to its source; (present, absent) files."""
    present = absent = 0
    for root, _dirs, files in os.walk(tree):
        for name in files:
            source = os.path.join(root, name)
            copy = os.path.join(restored, os.path.relpath(source, tree))
            if os.path.lexists(copy):
                with open(source, "rb") as a, open(copy, "rb") as b:
                    assert a.read() == b.read(), copy  # never a partial file looking whole
                present += 1
            else:
                absent += 1
    return present, absent


def test_force_restores_what_fits_and_stops_cleanly_when_space_runs_out(tmp_path, run):
    tree = tmp_path / "src"
    for d in ("a", "b", "c"):
        (tree / d).mkdir(parents=True)
        _files(tree / d, 5, 2 * MiB)
    os.chmod(tree / "a", 0o750)
    dump = tmp_path / "d0"
    run.ok("dump", "-q", "-f", str(dump), str(tree))
    with ext4(tmp_path, "20M") as small:
        refused = run("restore", "-f", str(dump), "-D", str(small))
        assert refused.returncode == 7 and os.listdir(small) == []
        done = run("--json", "restore", "--force", "-f", str(dump), "-D", str(small))
        assert done.returncode == 7, done.stderr
        result = json.loads(done.stdout)
        line = _one_line_error(done)
        assert line.startswith("ndmptools: error: the restore stopped: the target is full (No space left on")
        present, absent = _check_whole_or_absent(tree, small)
        assert present == result["restored"] and 3 <= present < 15
        assert absent == result["not_restored"] == 15 - present
        assert result["stopped"].startswith("No space left on device, at ")
        assert len([p for p in result["unrestored"] if not p.endswith("/")]) == absent
        assert f"{present:,} entries restored, {absent:,} not restored" in line
        # The directories that were made have their own attributes, as in any restore.
        assert stat.S_IMODE(os.stat(small / "a").st_mode) == 0o750
        assert os.stat(small / "a").st_mtime_ns // 10**9 == os.stat(tree / "a").st_mtime_ns // 10**9


def test_force_stops_cleanly_when_inodes_run_out(tmp_path, run):
    tree = tmp_path / "src"
    tree.mkdir()
    _files(tree, 200, 3000)
    (tree / "link").symlink_to("f000")
    dump = tmp_path / "d0"
    run.ok("dump", "-q", "-f", str(dump), str(tree))
    with ext4(tmp_path, "160M", inodes=64) as small:
        done = run("--json", "restore", "--force", "-f", str(dump), "-D", str(small))
        assert done.returncode == 7, done.stderr
        result = json.loads(done.stdout)
        present, _ = _check_whole_or_absent(tree, small)
        assert 10 < present == result["restored"] < 200
        assert result["not_restored"] == 201 - present  # the symlink too
        empty = [n for n in os.listdir(small) if os.lstat(small / n).st_size == 0]
        assert empty == []  # no empty file left where stage 2 made room for data that never came


# -- what is there already ---------------------------------------------------------------------


def test_a_file_is_overwritten_a_directory_merged_and_never_replaced(tmp_path, run):
    tree = tmp_path / "src"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "app.conf").write_bytes(b"from the dump\n")
    (tree / "was-a-file").mkdir()
    (tree / "was-a-file" / "inside").write_bytes(b"x")
    (tree / "is-a-dir-there").write_bytes(b"a file in the dump\n")
    os.chmod(tree / "etc", 0o710)
    dump = tmp_path / "d0"
    run.ok("dump", "-q", "-f", str(dump), str(tree))

    target = tmp_path / "target"
    (target / "etc").mkdir(parents=True)
    (target / "etc" / "app.conf").write_bytes(b"local edit, longer than the dump's\n")
    (target / "etc" / "local.only").write_bytes(b"kept\n")
    (target / "was-a-file").write_bytes(b"a file here\n")
    (target / "is-a-dir-there").mkdir()
    (target / "is-a-dir-there" / "mine").write_bytes(b"mine\n")
    done = run("--json", "restore", "-f", str(dump), "-D", str(target))
    assert done.returncode == 1  # a warning: the directory in the way
    result = json.loads(done.stdout)
    assert (target / "etc" / "app.conf").read_bytes() == b"from the dump\n"  # overwritten
    assert (target / "etc" / "local.only").read_bytes() == b"kept\n"  # merged, not replaced
    assert stat.S_IMODE(os.stat(target / "etc").st_mode) == 0o710  # and given the dump's attributes
    assert (target / "was-a-file" / "inside").read_bytes() == b"x"  # a file gives way to a directory
    assert (target / "is-a-dir-there" / "mine").read_bytes() == b"mine\n"  # a directory never does
    assert any("is-a-dir-there" in w and "never replaced" in w for w in result["warnings"])
    assert result["not_restored"] == 1


def test_locks_held_on_target_files_are_ignored(tmp_path, run):
    tree = tmp_path / "src"
    tree.mkdir()
    for name in ("flocked", "posix-locked", "ofd-locked"):
        (tree / name).write_bytes(f"{name}: from the dump\n".encode())
    dump = tmp_path / "d0"
    run.ok("dump", "-q", "-f", str(dump), str(tree))
    target = tmp_path / "target"
    target.mkdir()
    for name in ("flocked", "posix-locked", "ofd-locked"):
        (target / name).write_bytes(b"held by another process\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, struct, sys, time\n"
            "a = open(sys.argv[1] + '/flocked', 'r+'); fcntl.flock(a, fcntl.LOCK_EX)\n"
            "b = open(sys.argv[1] + '/posix-locked', 'r+'); fcntl.lockf(b, fcntl.LOCK_EX)\n"
            "c = open(sys.argv[1] + '/ofd-locked', 'r+')\n"
            "fcntl.fcntl(c, fcntl.F_OFD_SETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0))\n"
            "print('held', flush=True); time.sleep(60)\n",
            str(target),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"held\n"
        with open(target / "flocked", "rb") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the lock is real
        done = run("restore", "-f", str(dump), "-D", str(target))
        assert done.returncode == 0, done.stderr
        for name in ("flocked", "posix-locked", "ofd-locked"):
            assert (target / name).read_bytes() == f"{name}: from the dump\n".encode()
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()


# -- EXTRACT=E: renaming on the way -----------------------------------------------------------


@pytest.fixture
def home(tmp_path, run):
    tree = tmp_path / "src"
    for d in ("home/alice/notes", "home/bob", "etc"):
        (tree / d).mkdir(parents=True)
    (tree / "home" / "alice" / "notes" / "plan.md").write_bytes(b"# plan\n")
    (tree / "home" / "alice" / "photo").write_bytes(os.urandom(50_000))
    (tree / "home" / "bob" / "todo").write_bytes(b"bob\n")
    (tree / "etc" / "app.conf").write_bytes(b"answer = 42\n")
    os.link(tree / "etc" / "app.conf", tree / "home" / "alice" / "app.conf")
    os.chmod(tree / "home" / "alice", 0o700)
    dump = tmp_path / "d0"
    run.ok("dump", "-q", "-f", str(dump), str(tree))
    return tree, dump


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "scan"])
def test_rename_restores_old_as_new_and_nothing_else(tmp_path, run, home, direct):
    tree, dump = home
    target = tmp_path / "r"
    old_umask = os.umask(0o027)
    try:
        code, result = run.result(
            "restore",
            *([] if direct else ["--no-direct"]),
            "-f",
            str(dump),
            "-D",
            str(target),
            "--rename",
            "home/alice=restored/alice-2026",
            "--rename",
            "/etc/app.conf=app.conf.orig",
        )
    finally:
        os.umask(old_umask)
    assert code == 0 and result["direct"] is direct, result
    assert sorted(os.listdir(target)) == ["app.conf.orig", "restored"]  # no empty home/ or etc/
    assert compare_trees(str(tree / "home" / "alice"), str(target / "restored" / "alice-2026"))[1] == []
    assert stat.S_IMODE(os.stat(target / "restored").st_mode) == 0o750  # made as mkdir makes it
    assert (target / "app.conf.orig").read_bytes() == b"answer = 42\n"
    # Two names of one inode restored: still one inode in the target.
    assert os.stat(target / "app.conf.orig").st_ino == os.stat(target / "restored/alice-2026/app.conf").st_ino


def test_rename_goes_with_paths_and_e_extract(tmp_path, run, home):
    _, dump = home
    target = tmp_path / "r"
    run.ok(
        "restore", "-f", str(dump), "-D", str(target), "-E", "EXTRACT=E", "home/bob", "--rename", "etc=cfg"
    )
    assert sorted(os.listdir(target)) == ["cfg", "home"]
    assert os.listdir(target / "home") == ["bob"]
    assert (target / "cfg" / "app.conf").read_bytes() == b"answer = 42\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--rename", ".=x"], "OLD must be a path inside the dump"),
        (["--rename", "etc=/srv/etc"], "not an absolute one"),
        (["--rename", "etc=a/../../b"], "NEW has a name '..'"),
        (["--rename", "etc"], "--rename takes OLD=NEW"),
        (["--rename", "etc=a", "--rename", "etc=b"], "renamed twice"),
        (["--rename", "etc=a", "--rename", "home=a"], "would both be a"),
        (["--rename", "home=home/bob/home"], "cannot go inside itself"),
        (["--rename", "etc=home/bob"], "is restored from the dump already"),
        (["--rename", "etc=home/bob/todo/x"], "todo is a file in the dump"),
        (["-E", "EXTRACT=E", "home"], "EXTRACT=E renames on the way"),
        (["-E", "EXTRACT=Y", "--rename", "etc=x"], "--rename needs EXTRACT=E"),
        (["-t", "--rename", "etc=x"], "go with a restore"),
        (["-r", "--rename", "etc=x"], "-r applies whole dumps"),
        (["-t", "--original"], "go with a restore"),
    ],
)
def test_renames_that_cannot_be_are_refused_before_anything_is_written(tmp_path, run, home, args, words):
    _, dump = home
    target = tmp_path / "r"
    if any(a.startswith(("home=home/bob", "etc=home/bob")) for a in args):
        args = [*args, "home/bob"]
    done = run("restore", "-f", str(dump), "-D", str(target), *args)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr.decode(), done.stderr
    assert not target.exists()


# -- the NDMP-style environment ---------------------------------------------------------------


def test_environment_variables_map_onto_the_options(tmp_path, ndmptools, home):
    tree, _ = home
    run = StateRun(tmp_path / "another-history", ndmptools)
    run.ok("dump", "-q", "-E", "HIST=N", "-E", "UPDATE=f", "-f", str(tmp_path / "n"), str(tree))
    done = run("restore", "-t", "--catalog", "-f", str(tmp_path / "n"))
    assert done.returncode == 9  # HIST=N: no file history
    done = run("dump", "-q", "-E", "LEVEL=1", "-f", str(tmp_path / "x"), str(tree))
    assert done.returncode == 9  # UPDATE=N: that dump is no base
    run.ok("dump", "-q", "-E", "LEVEL=0", "-E", f"FILESYSTEM={tree}", "-f", str(tmp_path / "d0"))
    (tree / "etc" / "new").write_bytes(b"new\n")
    run.ok("dump", "-q", "-E", "level=1", "-f", str(tmp_path / "d1"), str(tree))
    listed = json.loads(run.ok("--json", "restore", "-t", "-f", str(tmp_path / "d1")).stdout)
    assert "etc/new" in {e["path"] for e in listed} and "home/bob/todo" not in {e["path"] for e in listed}
    d0 = str(tmp_path / "d0")
    code, result = run.result("restore", "-E", "DIRECT=N", "-f", d0, "-D", str(tmp_path / "r"), "etc")
    assert code == 0 and result["direct"] is False
    code, result = run.result("restore", "-E", "DIRECT=Y", "-f", d0, "-D", str(tmp_path / "r2"), "etc")
    assert code == 0 and result["direct"] is True and result["needed"] is not None
    code, result = run.result("restore", "-E", "FORCE=T", "-f", d0, "-D", str(tmp_path / "r3"))
    assert code == 0 and result["needed"] is None  # no check made


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["dump", "-E", "BOGUS=1"], "does not take the environment variable BOGUS"),
        (["dump", "-E", "FORCE=Y"], "FORCE is for restore"),
        (["dump", "-E", "LEVEL=32"], "LEVEL=32: the value must be a level from 0 to 31"),
        (["dump", "-E", "HIST=maybe"], "the value must be Y or N"),
        (["dump", "-E", "LEVEL"], "-E takes NAME=VALUE"),
        (["dump", "-E", "LEVEL=1", "-E", "LEVEL=2"], "LEVEL is given twice"),
        (["dump", "-E", "LEVEL=1", "-level", "2"], "-E LEVEL and --level disagree"),
        (["dump", "-E", "HIST=Y", "--no-history"], "-E HIST and --no-history disagree"),
        (["dump", "-E", "FILESYSTEM=/etc"], "-E FILESYSTEM and PATH disagree"),
        (["restore", "-E", "LEVEL=1"], "LEVEL is for dump"),
        (["restore", "-E", "DIRECT=Y", "--no-direct"], "-E DIRECT and --no-direct disagree"),
        (["restore", "-E", "EXTRACT=N", "etc"], "EXTRACT=N restores the whole dump"),
        (["restore", "-E", "EXTRACT=Y"], "give at least one"),
        (["restore", "-E", "EXTRACT=Q"], "the value must be Y, N or E"),
    ],
)
def test_environment_mistakes_get_one_line_and_exit_2(tmp_path, run, home, args, words):
    tree, dump = home
    where = ["-f", str(tmp_path / "out"), str(tree)] if args[0] == "dump" else ["-f", str(dump)]
    done = run(*args, *where)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr.decode(), done.stderr
    assert "Traceback" not in done.stderr.decode()
    assert not (tmp_path / "out").exists()


# -- to the original place ---------------------------------------------------------------------


def test_original_restores_where_the_dump_was_taken_from(tmp_path, run, ndmptools, home):
    tree, dump = home
    (tree / "home" / "alice" / "notes" / "plan.md").write_bytes(b"overwritten by mistake\n")
    (tree / "etc" / "app.conf").unlink()
    code, result = run.result("restore", "--original", "-f", str(dump), "home/alice/notes", "etc")
    assert code == 0 and result["target"] == str(tree), result
    assert (tree / "home" / "alice" / "notes" / "plan.md").read_bytes() == b"# plan\n"
    assert (tree / "etc" / "app.conf").read_bytes() == b"answer = 42\n"
    done = run("restore", "--original", "-D", str(tmp_path / "x"), "-f", str(dump))
    assert done.returncode == 2 and b"give no -D with it" in done.stderr


def test_original_without_a_history_takes_the_place_the_dump_names(tmp_path, ndmptools):
    short = tempfile.mkdtemp(prefix="ndmp-", dir="/tmp")  # c_filesys keeps 63 bytes: a short path
    try:
        tree = Path(short) / "src"
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "f").write_bytes(b"f\n")
        StateRun(tmp_path / "first", ndmptools).ok("dump", "-q", "-f", str(tmp_path / "d"), str(tree))
        (tree / "sub" / "f").unlink()
        code, result = StateRun(tmp_path / "none", ndmptools).result(
            "restore", "--original", "-f", str(tmp_path / "d")
        )
        assert code == 0 and result["target"] == str(tree)
        assert (tree / "sub" / "f").read_bytes() == b"f\n"
    finally:
        shutil.rmtree(short)


def test_original_puts_a_single_file_back_in_its_directory(tmp_path, run, home):
    tree, _ = home
    one = tmp_path / "one"
    # The history tells dumps apart by their date (to the second) and their path's first 63 bytes,
    # which the two dumps of this test share: a second apart, the history knows which is which.
    time.sleep(1.1)
    run.ok("dump", "-q", "-f", str(one), str(tree / "etc" / "app.conf"))
    (tree / "etc" / "app.conf").unlink()  # gone: the file history says it was a file
    code, result = run.result("restore", "--original", "-f", str(one))
    assert code == 0 and result["target"] == str(tree / "etc") and result["restored"] == 1
    assert (tree / "etc" / "app.conf").read_bytes() == b"answer = 42\n"


def test_original_refuses_a_place_the_dump_may_have_cut_short(tmp_path, ndmptools):
    deep = tmp_path / ("a-rather-long-directory-name-" * 3)
    deep.mkdir()
    (deep / "f").write_bytes(b"f\n")
    run = StateRun(tmp_path / "first", ndmptools)
    run.ok("dump", "-q", "-f", str(tmp_path / "d"), str(deep))
    done = StateRun(tmp_path / "another", ndmptools)("restore", "--original", "-f", str(tmp_path / "d"))
    assert done.returncode == 2
    assert "may be cut short" in _one_line_error(done) and "-D" in _one_line_error(done)
    code, result = run.result("restore", "--original", "-f", str(tmp_path / "d"))  # the history knows
    assert code == 0 and result["target"] == str(deep)
