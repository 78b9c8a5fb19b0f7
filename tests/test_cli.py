"""What a user at a shell or cron sees: exit codes, one-line errors, progress, summary, --json."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from ndmptools import __version__
from ndmptools.cli import cli, main
from ndmptools.cli.dump_cmd import run_dump
from ndmptools.cli.output import App
from ndmptools.engine.options import DumpOptions


def _one_error_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_help_lists_commands_and_exit_codes(ndmptools):
    out = ndmptools.ok("--help").stdout.decode()
    assert "dump" in out and "restore" in out
    assert "Exit codes:" in out and "6  format error" in out
    assert __version__ in ndmptools.ok("--version").stdout.decode()


def test_summary_line_and_quiet(tmp_path, ndmptools, small_tree):
    done = ndmptools.ok("dump", "-f", str(tmp_path / "d"), small_tree)
    assert done.stdout == b""
    note, line = done.stderr.decode().strip().splitlines()  # ext4 has no snapshots: the live tree is read
    assert note.startswith("ndmptools: note: dumping the live tree of")
    assert line.startswith("dump: ") and " entries, " in line and " s (" in line and "MiB/s)" in line
    assert ndmptools.ok("dump", "-q", "-f", str(tmp_path / "d"), small_tree).stderr == b""
    done = ndmptools.ok("-q", "restore", "-f", str(tmp_path / "d"), "-D", str(tmp_path / "r"))
    assert done.stderr == b""


def test_json_results(tmp_path, ndmptools, small_tree):
    dumped = json.loads(ndmptools.ok("dump", "--json", "-f", str(tmp_path / "d"), small_tree).stdout)
    assert dumped["level"] == 0 and dumped["path"] == small_tree and dumped["blocking_factor"] == 64
    assert dumped["bytes"] == os.path.getsize(tmp_path / "d") and dumped["warnings"] == []
    restored = json.loads(
        ndmptools.ok("--json", "restore", "-f", str(tmp_path / "d"), "-D", str(tmp_path / "r")).stdout
    )
    assert restored["restored"] == dumped["inodes"] - dumped["directories"]
    listing = json.loads(ndmptools.ok("restore", "-t", "-f", str(tmp_path / "d"), "--json").stdout)
    by_path = {e["path"]: e for e in listing}
    assert by_path["sub/b.bin"] == {
        "path": "sub/b.bin",
        "inode": by_path["sub/b.bin"]["inode"],
        "type": "file",
        "size": 10240,
    }
    assert by_path["hard1"]["inode"] == by_path["hard2"]["inode"]
    assert by_path["sub/link"]["type"] == "symlink" and by_path["emptydir"]["type"] == "dir"


def test_listing_text(tmp_path, ndmptools, small_tree):
    ndmptools.ok("dump", "-q", "-f", str(tmp_path / "d"), small_tree)
    lines = ndmptools.ok("restore", "-t", "-f", str(tmp_path / "d")).stdout.decode().splitlines()
    rows = {line.split()[-1]: line.split() for line in lines}
    assert rows["sub/deeper/c"][1:3] == ["file", "5000"]
    assert rows["."][1] == "dir"


def test_json_cannot_share_stdout_with_the_dump(ndmptools, small_tree):
    done = ndmptools("dump", "--json", "-f", "-", small_tree)
    assert done.returncode == 2 and done.stdout == b""
    assert "standard output" in _one_error_line(done.stderr)


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["dump", "-f", "{tmp}/x", "{tmp}/no-such-dir"], 4, "no such file"),
        (["restore", "-f", "{tmp}/no-such-file", "-D", "{tmp}/r"], 5, "cannot open"),
        (["restore", "-f", "{tmp}/garbage", "-D", "{tmp}/r"], 6, "not a dump"),
        (["restore", "-f", "{tmp}/empty", "-D", "{tmp}/r"], 6, "empty"),
        (["restore", "-t", "-f", "{tmp}/garbage"], 6, "not a dump"),
        (["dump", "-level", "32", "-f", "{tmp}/x", "{tmp}"], 2, "0<=x<=31"),
        (["dump", "-level", "1", "-f", "{tmp}/x", "{tmp}"], 9, "a level 0 is needed"),
        (["dump", "-L", "a-label-that-is-too-long", "-f", "{tmp}/x", "{tmp}"], 2, "15 bytes"),
        (["restore", "-f", "{tmp}/garbage", "-D", "{tmp}/garbage"], 2, "is a file"),
        (["restore", "-f", "{tmp}/valid", "-D", "/proc/ndmptools-cannot-be-here"], 7, "cannot restore into"),
        (["dump", "-f", "/proc/ndmptools-cannot-be-here", "{tmp}/garbage"], 5, "cannot create"),
    ],
)
def test_bad_input_gets_one_line_and_its_exit_code(args, code, words, tmp_path, ndmptools):
    from tests.craft import DT_REG, craft, directory, regular

    (tmp_path / "garbage").write_bytes(os.urandom(5000))
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "valid").write_bytes(craft([directory(2, 2, (3, DT_REG, b"f")), regular(3, b"x")]))
    done = ndmptools(*[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == code, done.stderr
    lines = done.stderr.decode().strip().splitlines()
    assert "Traceback" not in done.stderr.decode()
    assert words in lines[-1]


def test_debug_shows_the_traceback(tmp_path, ndmptools):
    (tmp_path / "garbage").write_bytes(b"x" * 4096)
    done = ndmptools("--debug", "restore", "-f", str(tmp_path / "garbage"), "-D", str(tmp_path / "r"))
    assert done.returncode == 6
    assert b"Traceback" in done.stderr and b"FormatError" in done.stderr


def test_an_unexpected_exception_is_one_line_and_exit_3(monkeypatch, capsys, tmp_path, small_tree):
    import ndmptools.engine.dump as engine_dump

    def broken(*_args, **_kw):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(engine_dump, "run_dump", broken)
    with pytest.raises(SystemExit) as exit_info:
        main(["dump", "-f", str(tmp_path / "x"), small_tree])
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "simulated bug" in err and "Traceback" not in err


def test_interrupt_stops_cleanly_and_leaves_nothing(tmp_path, small_tree):
    fifo = tmp_path / "nobody-reads"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ndmptools", "dump", "-f", str(fifo), small_tree], stderr=subprocess.PIPE
    )
    time.sleep(1.5)  # mapped, and blocked opening the FIFO
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.decode().strip().endswith("interrupted") and b"Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["nobody-reads"]


def test_progress_bar_only_on_a_terminal(tmp_path, small_tree):
    image = str(tmp_path / "d")
    primary, secondary = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "ndmptools", "dump", "-f", image, small_tree],
        stderr=secondary,
        stdout=subprocess.PIPE,
        timeout=60,
    )
    os.close(secondary)
    drawn = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(primary)
    assert done.returncode == 0
    assert b"B/s" in drawn or b"it/s" in drawn  # tqdm drew on the terminal
    assert b"dump:" in drawn


def test_listing_into_a_closed_pipe_is_not_an_error(tmp_path):
    from tests.trees import build_tree_from_spec

    tree = tmp_path / "t"
    build_tree_from_spec(str(tree), {f"file-with-a-rather-long-name-{i:05d}": b"" for i in range(4000)})
    image = tmp_path / "d"
    subprocess.run([sys.executable, "-m", "ndmptools", "dump", "-q", "-f", str(image), str(tree)], check=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ndmptools", "restore", "-t", "-f", str(image)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in err and b"Exception ignored" not in err


def test_click_wiring_in_process(cli_runner, tmp_path, small_tree):
    app = App()
    result = cli_runner.invoke(
        cli,
        ["dump", "-level", "0", "-b", "16", "-f", str(tmp_path / "d"), small_tree],
        obj=app,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    result = cli_runner.invoke(
        cli,
        ["restore", "-f", str(tmp_path / "d"), "-D", str(tmp_path / "r"), "sub"],
        obj=App(),
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    assert sorted(os.listdir(tmp_path / "r")) == ["sub"]


def test_run_dump_directly(tmp_path, small_tree):
    app = App(quiet=True)
    result = run_dump(DumpOptions(path=small_tree, file=str(tmp_path / "d"), blocking_factor=4), app)
    assert result.blocking_factor == 4 and result.records * 4 == result.blocks
    assert os.path.getsize(tmp_path / "d") == result.blocks * 1024
