"""ndmpcopy: a dump piped into restore -r, here and through a real sshd on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ndmptools.engine.treediff import CompareRules, compare_trees
from tests.btrfs import btrfs_subvolume
from tests.trees import build_tree_from_spec

pytestmark = pytest.mark.root

WORKTREE = Path(__file__).resolve().parent.parent
NDMPTOOLS_BIN = WORKTREE / ".venv" / "bin" / "ndmptools"
EXACT = CompareRules(compare_holes=False)

SPEC = {
    "a.txt": b"alpha\n",
    "empty": b"",
    "sub": {
        "b.bin": bytes(range(256)) * 40,
        "deeper": {"c": b"c" * 5000, "gone-later": {"x": b"x"}},
        "link": ("link", "../a.txt"),
    },
    "hard1": b"linked",
    "hard2": ("hard", "hard1"),
    "exec": ("mode", 0o755, b"#!/bin/sh\n"),
    "sparse": ("sparse", 2 << 20, 1 << 20, b"data in the middle"),
    "old": ("file", b"old times\n", 0o640, (315_532_800_123_456_789, 315_532_801_987_654_321)),
    "emptydir": {},
    "to-rename": {"inside": b"moves with its directory\n"},
}


def build_source(root: Path) -> None:
    build_tree_from_spec(str(root), SPEC)
    os.setxattr(root / "a.txt", "user.colour", b"blue")
    os.setxattr(root / "sub", "user.dir", b"on a directory")
    os.chown(root / "sub" / "b.bin", 1234, 5678)


def change_source(root: Path) -> None:
    """Every kind of change a later level must carry over."""
    (root / "a.txt").write_bytes(b"alpha, changed and longer\n")  # modified
    (root / "new.txt").write_bytes(b"new at level 1\n")  # added
    (root / "newdir" / "deep").mkdir(parents=True)  # added, with a file below
    (root / "newdir" / "deep" / "f").write_bytes(b"f")
    os.unlink(root / "empty")  # deleted
    shutil.rmtree(root / "sub" / "deeper" / "gone-later")  # a directory deleted
    os.rename(root / "exec", root / "sub" / "exec-renamed")  # a file renamed into another directory
    os.rename(root / "to-rename", root / "renamed")  # a directory renamed
    os.link(root / "hard1", root / "sub" / "hard3")  # a hard link added
    os.unlink(root / "sub" / "link")
    os.symlink("b.bin", root / "sub" / "link")  # a symlink replaced
    os.chmod(root / "old", 0o600)  # metadata only
    os.chown(root / "hard1", 42, 43)
    os.utime(root / "sub" / "b.bin", ns=(1_000_000_000_123_456_789, 1_100_000_000_987_654_321))
    os.setxattr(root / "a.txt", "user.colour", b"green")
    os.removexattr(root / "sub", "user.dir")
    os.setxattr(root / "sub" / "deeper" / "c", "user.new", b"added")


def xattrs_of(root: Path) -> dict[str, dict[str, bytes]]:
    found = {}
    for path in [root, *root.rglob("*")]:
        rel = str(path.relative_to(root))
        if path.is_symlink() or rel.split("/")[0] == ".snapshot":
            continue
        found[rel] = {name: os.getxattr(path, name) for name in sorted(os.listxattr(path))}
    return found


def assert_same(source: Path, target: Path) -> None:
    _, problems = compare_trees(str(source), str(target), EXACT)
    # A btrfs source keeps its snapshots in .snapshot, which a dump leaves out.
    problems = [p for p in problems if not p.startswith(".snapshot")]
    assert problems == []
    assert xattrs_of(source) == xattrs_of(target)


class Runner:
    """The real command in a new process, with this side's state directory."""

    def __init__(self, state: Path) -> None:
        self.state = str(state)

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ndmptools", "--state-dir", self.state, *args],
            capture_output=True,
            timeout=timeout,
            text=True,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        done = self(*args)
        assert done.returncode == 0, (done.returncode, done.stderr)
        return done

    def fails(self, code: int, *args: str) -> str:
        """The one line a failed run prints (ssh's notes aside)."""
        done = self(*args)
        assert done.returncode == code, (done.returncode, done.stderr)
        assert "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("ndmptools: error: ")]
        assert len(errors) == 1, done.stderr
        return errors[0]

    def sql(self, query: str):
        import sqlite3

        with sqlite3.connect(os.path.join(self.state, "ndmptools.db")) as db:
            return db.execute(query).fetchall()


# -- on this machine -----------------------------------------------------------------------------------


def test_local_copy_level_0_then_1_from_a_btrfs_snapshot(tmp_path):
    """Level 0 copies, level 1 brings DST up to date; the dump reads real btrfs snapshots."""
    run = Runner(tmp_path / "state")
    target = tmp_path / "copy"
    with btrfs_subvolume(tmp_path) as source:
        build_source(source)
        done = run.ok("ndmpcopy", str(source), str(target))
        assert "ndmpcopy: " in done.stderr and "level 0 into" in done.stderr
        assert "live tree" not in done.stderr  # it read a snapshot
        assert_same(source, target)
        change_source(source)
        done = run.ok("--json", "ndmpcopy", "-level", "1", str(source), str(target))
        import json

        result = json.loads(done.stdout)
        assert result["level"] == 1 and result["removed"] >= 2 and result["moved"] >= 2
        assert_same(source, target)
        snapshots = subprocess.run(
            ["btrfs", "subvolume", "list", str(tmp_path / "mnt")], capture_output=True, text=True, check=True
        ).stdout
        assert "snapshot_for_backup" not in snapshots  # each copy removed the snapshot it took
    rows = run.sql("SELECT level, status, is_base FROM dumps ORDER BY id")
    assert rows == [(0, "completed", 1), (1, "completed", 1)]


def test_local_errors_are_one_line_each(tmp_path):
    run = Runner(tmp_path / "state")
    source = tmp_path / "src"
    build_tree_from_spec(str(source), {"f": b"f", "d": {"g": b"g"}})
    assert "no such file" in run.fails(4, "ndmpcopy", str(tmp_path / "missing"), str(tmp_path / "x"))
    assert "into itself" in run.fails(2, "ndmpcopy", str(source), str(source / "d" / "inside"))
    assert "own source" in run.fails(2, "ndmpcopy", str(source / "d"), str(source))
    line = run.fails(9, "ndmpcopy", "-level", "1", str(source), str(tmp_path / "never-copied"))
    assert "holds no copy" in line and "level 0 first" in line
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "stray").write_bytes(b"")
    assert "not empty" in run.fails(7, "ndmpcopy", str(source), str(tmp_path / "busy"))
    (tmp_path / "a-file").write_bytes(b"")
    assert "not a directory" in run.fails(7, "ndmpcopy", str(source), str(tmp_path / "a-file"))
    assert "host:path" in run.fails(2, "ndmpcopy", "@host:/x", str(tmp_path / "y"))
    assert run.sql("SELECT COUNT(*) FROM dumps") == [(0,)]  # nothing ran, nothing was recorded
    run.ok("ndmpcopy", str(source), str(tmp_path / "copy"))
    line = run.fails(9, "ndmpcopy", str(source), str(tmp_path / "copy"))
    assert "already holds a copy" in line and "-level 1" in line


def test_a_copy_whose_restore_fails_leaves_no_base(tmp_path):
    """DST fills up: the copy fails (7), and its dump, although whole, is no base."""
    run = Runner(tmp_path / "state")
    source = tmp_path / "src"
    build_tree_from_spec(str(source), {"small": b"s", "big": os.urandom(3 << 20)})
    target = tmp_path / "small-fs"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    try:
        line = run.fails(7, "ndmpcopy", str(source), str(target / "copy"))
        assert "is full" in line
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert run.sql("SELECT status FROM dumps") == [("failed",)]
    assert "no earlier dump" in run.fails(9, "dump", "-level", "1", "-f", os.devnull, str(source))


def test_a_failed_dump_stops_the_restore_and_is_no_base(tmp_path):
    """The dump fails (its snapshot provider does not fit the source): the restore stops, nothing is kept."""
    run = Runner(tmp_path / "state")
    source = tmp_path / "src"
    build_tree_from_spec(str(source), {"f": b"f"})
    line = run.fails(10, "ndmpcopy", "--snapshot-provider", "btrfs", str(source), str(tmp_path / "copy"))
    assert "btrfs" in line
    assert not (tmp_path / "copy").exists() or not os.listdir(tmp_path / "copy")
    assert run.sql("SELECT COUNT(*) FROM dumps WHERE status = 'completed'") == [(0,)]


# -- through a real sshd ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """/usr/sbin/sshd on 127.0.0.1 with its own host key, config and authorized key (root, key only)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)  # its privilege-separation directory
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)], check=True
            )
        shutil.copy(base / "client_key.pub", base / "authorized_keys")
        self.port = free_port()
        config = base / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\n"
            f"PidFile {base / 'sshd.pid'}\nAuthorizedKeysFile {base / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n"
        )
        self.log = open(base / "sshd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"sshd did not start: {(base / 'sshd.log').read_text()}") from None
                time.sleep(0.05)
        self.ssh = (
            f"ssh -p {self.port} -i {base / 'client_key'} -o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile={base / 'known_hosts'} -o BatchMode=yes -o LogLevel=ERROR"
        )

    def far(self, state: Path) -> list[str]:
        """--ssh and --remote-command for a far side with its own state directory."""
        return ["--ssh", self.ssh, "--remote-command", f"NDMPTOOLS_STATE_DIR={state} {NDMPTOOLS_BIN}"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def test_remote_source_level_0_then_1(sshd, tmp_path):
    """SRC on the far side: its dump runs there, its history keeps the base; DST is restored here."""
    here, far_state = Runner(tmp_path / "here-state"), tmp_path / "far-state"
    source, target = tmp_path / "src", tmp_path / "copy"
    build_source(source)
    remote = f"root@127.0.0.1:{source}"
    done = here.ok("ndmpcopy", *sshd.far(far_state), remote, str(target))
    assert "level 0 into" in done.stderr
    assert_same(source, target)
    change_source(source)
    here.ok("ndmpcopy", "-level", "1", *sshd.far(far_state), remote, str(target))
    assert_same(source, target)
    far = Runner(far_state)
    assert far.sql("SELECT level, status FROM dumps ORDER BY id") == [(0, "completed"), (1, "completed")]
    assert not os.path.exists(os.path.join(here.state, "ndmptools.db")) or here.sql(
        "SELECT COUNT(*) FROM dumps"
    ) == [(0,)]


def test_remote_target_level_0_then_1(sshd, tmp_path):
    """DST on the far side: the dump runs here and its history keeps the base; the far restore keeps DST's."""
    here, far_state = Runner(tmp_path / "here-state"), tmp_path / "far-state"
    source, target = tmp_path / "src", tmp_path / "copy"
    build_source(source)
    remote = f"127.0.0.1:{target}"
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "stray").write_bytes(b"")
    line = here.fails(7, "ndmpcopy", *sshd.far(far_state), str(source), f"127.0.0.1:{busy}")
    assert line.endswith(f"127.0.0.1:{busy} is not empty: a level-0 copy goes into a new or empty directory")
    here.ok("ndmpcopy", *sshd.far(far_state), str(source), remote)
    assert_same(source, target)
    # A level 1 into a far directory that holds no copy fails there, and its dump is no base.
    line = here.fails(
        9, "ndmpcopy", "-level", "1", *sshd.far(far_state), str(source), f"127.0.0.1:{tmp_path}/x"
    )
    assert line.startswith("ndmptools: error: on 127.0.0.1: ") and "holds no restore" in line
    change_source(source)
    done = here.ok("--json", "ndmpcopy", "-level", "1", *sshd.far(far_state), str(source), remote)
    import json

    assert json.loads(done.stdout)["removed"] >= 2
    assert_same(source, target)
    rows = here.sql("SELECT level, status FROM dumps ORDER BY id")
    assert rows == [(0, "completed"), (1, "failed"), (1, "completed")]


def test_both_sides_far(sshd, tmp_path):
    """Both far: the stream passes through here."""
    here, far_state = Runner(tmp_path / "here-state"), tmp_path / "far-state"
    source, target = tmp_path / "src", tmp_path / "copy"
    build_source(source)
    here.ok("ndmpcopy", *sshd.far(far_state), f"127.0.0.1:{source}", f"127.0.0.1:{target}")
    assert_same(source, target)
    change_source(source)
    here.ok("ndmpcopy", "-level", "1", *sshd.far(far_state), f"127.0.0.1:{source}", f"127.0.0.1:{target}")
    assert_same(source, target)


def test_far_failures_are_one_line(sshd, tmp_path):
    here, far_state = Runner(tmp_path / "here-state"), tmp_path / "far-state"
    source = tmp_path / "src"
    build_tree_from_spec(str(source), {"f": b"f"})
    far = sshd.far(far_state)
    # Nothing listens on that port: ssh cannot connect.
    closed = f"ssh -p {free_port()} -o BatchMode=yes -o ConnectTimeout=5"
    line = here.fails(5, "ndmpcopy", "--ssh", closed, f"127.0.0.1:{source}", str(tmp_path / "c1"))
    assert "cannot reach 127.0.0.1" in line and "refused" in line
    # The far side has no such command.
    line = here.fails(
        5,
        "ndmpcopy",
        "--ssh",
        sshd.ssh,
        "--remote-command",
        "/no/such/ndmptools",
        f"127.0.0.1:{source}",
        str(tmp_path / "c2"),
    )
    assert "cannot run '/no/such/ndmptools'" in line
    # The far dump fails: its source is missing, or it has no base for a level 1.
    line = here.fails(4, "ndmpcopy", *far, f"127.0.0.1:{tmp_path}/missing", str(tmp_path / "c3"))
    assert line.startswith("ndmptools: error: on 127.0.0.1: cannot dump ")
    here.ok("ndmpcopy", *far, str(source), str(tmp_path / "c4"))  # a local level 0: no far base
    line = here.fails(9, "ndmpcopy", "-level", "1", *far, f"127.0.0.1:{source}", str(tmp_path / "c4"))
    assert line.startswith("ndmptools: error: on 127.0.0.1: there is no earlier dump of ")
    assert Runner(far_state).sql("SELECT COUNT(*) FROM dumps WHERE status = 'completed'") == [(0,)]


def interrupt_once_restoring(command: list[str], target: Path) -> subprocess.CompletedProcess:
    """Run ``command`` and send it SIGINT as soon as the restore has made its first file in ``target``."""
    import signal

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if target.is_dir() and any(target.iterdir()):
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.002)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def big_tree(root: Path) -> None:
    build_tree_from_spec(str(root), {f"f{i:02d}": os.urandom(1 << 20) for i in range(64)})


def test_an_interrupted_copy_leaves_no_base_and_can_be_done_again(tmp_path):
    run = Runner(tmp_path / "state")
    source, target = tmp_path / "src", tmp_path / "copy"
    big_tree(source)
    command = [
        sys.executable,
        "-m",
        "ndmptools",
        "--state-dir",
        run.state,
        "ndmpcopy",
        str(source),
        str(target),
    ]
    done = interrupt_once_restoring(command, target)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().endswith("ndmptools: interrupted")
    assert run.sql("SELECT status FROM dumps") == [("failed",)]
    shutil.rmtree(target)
    run.ok("ndmpcopy", str(source), str(target))
    assert_same(source, target)


def test_an_interrupted_or_failed_copy_from_far_commits_nothing_there(sshd, tmp_path):
    here, far_state = Runner(tmp_path / "here-state"), tmp_path / "far-state"
    source, target = tmp_path / "src", tmp_path / "copy"
    big_tree(source)
    command = [
        sys.executable, "-m", "ndmptools", "--state-dir", here.state, "ndmpcopy", *sshd.far(far_state),
        f"127.0.0.1:{source}", str(target),
    ]  # fmt: skip
    done = interrupt_once_restoring(command, target)
    assert done.returncode == 130, done.stderr
    assert Runner(far_state).sql("SELECT status FROM dumps") == [("failed",)]
    left = subprocess.run(["pgrep", "-f", f"commit-from-stdin.*{source}"], capture_output=True, text=True)
    assert left.stdout == ""  # the far dump ended with its stream
    # The restore here fails for a full target: the far dump, although whole, is no base either.
    small = tmp_path / "small-fs"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        line = here.fails(7, "ndmpcopy", *sshd.far(far_state), f"127.0.0.1:{source}", str(small / "copy"))
        assert "is full" in line
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert Runner(far_state).sql("SELECT status FROM dumps") == [("failed",), ("failed",)]
