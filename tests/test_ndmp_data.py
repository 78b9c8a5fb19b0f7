"""The DATA service driven by the real DMA: Amanda's ndmjob against `ndmptools serve`.

Three topologies, as ndmjob offers them: the server is data and tape agent
(the data stream is the server's own socketpair); ndmjob's own tape agent
(`-T .`, the stream goes over TCP to ndmjob); and `-o tape-tcp=` (the stream
goes to a plain socket this test listens on and stores, or sends from).
ndmjob exits 0 even when a job fails: its output says "Operation ended OKAY".
The image that went through NDMP is a dump Debian's restore reads.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ndmptools.engine.treediff import CompareRules, compare_trees
from ndmptools.ndmp import messages as m
from tests.debian import missing_tools
from tests.debian import restore as debian_restore
from tests.ndmpclient import NDMJOB, Client, ServeProcess
from tests.trees import build_tree_from_spec

pytestmark = pytest.mark.root

OKAY = "Operation ended OKAY"

SPEC = {
    "a.txt": b"alpha\n",
    "big": bytes(range(256)) * 12288,  # 3 MiB: a file after it is far from the start of the stream
    "sub": {
        "b.bin": os.urandom(70_000),
        "deeper": {"c": b"c" * 5000, "empty": b""},
        "link": ("link", "../a.txt"),
        "zz-last": b"the file direct access is for\n",
    },
    "hard1": b"linked",
    "hard2": ("hard", "hard1"),
    "exec": ("mode", 0o755, b"#!/bin/sh\n"),
    "emptydir": {},
}


def _ndmjob_available() -> bool:
    return os.access(NDMJOB, os.X_OK)


if not _ndmjob_available():
    pytestmark = [pytest.mark.root, pytest.mark.skip(reason=f"{NDMJOB} is not installed (amanda-server)")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("ndmp-state")
    with ServeProcess(env={"NDMPTOOLS_STATE_DIR": str(state)}) as serving:
        yield serving
    assert "Traceback" not in serving.stderr_text, serving.stderr_text


def agent(server) -> str:
    return f"127.0.0.1:{server.port}/4n"


def ndmjob(*args: str, timeout: float = 120) -> str:
    done = subprocess.run([NDMJOB, "-v", *args], capture_output=True, text=True, timeout=timeout)
    return done.stdout + done.stderr


def okay(*args: str) -> str:
    out = ndmjob(*args)
    assert OKAY in out, out
    return out


def same(source, restored, rules: CompareRules | None = None) -> None:
    count, problems = compare_trees(str(source), str(restored), rules or CompareRules())
    assert not problems, "\n".join(problems[:30])
    assert count > 5


def index_places(index) -> dict[str, int]:
    """path -> fh_info, from an ndmjob -I index (the DHd names and DHn nodes the server sent)."""
    with open(index, encoding="utf-8") as lines:
        text = lines.read().splitlines()
    entries: list[tuple[int, str, int]] = []
    places: dict[int, int] = {}
    root = None
    for line in text:
        if line.startswith("DHr "):
            root = int(line.split()[1])
        elif line.startswith("DHd "):
            _, parent, name, _, node = line.split()
            if name not in (".", ".."):
                entries.append((int(parent), name, int(node)))
        elif line.startswith("DHn "):
            places[int(line.split()[1])] = int(re.search(r" @(\d+)", line).group(1))
    directory_paths = {root: ""}
    for _ in range(len(entries)):  # parents before children, however the lines are sorted
        for parent, name, node in entries:
            if parent in directory_paths and node not in directory_paths:
                directory_paths[node] = f"{directory_paths[parent]}/{name}".lstrip("/")
    paths = {".": places[root]}
    for parent, name, node in entries:
        if node in places:  # an incremental names unchanged entries that are not on its media
            paths[f"{directory_paths[parent]}/{name}".lstrip("/")] = places[node]
    return paths


def index_env(index) -> dict[str, str]:
    with open(index, encoding="utf-8") as lines:
        return dict(line[3:].strip().split("=", 1) for line in lines if line.startswith("DE "))


def mover_read_kb(out: str) -> int:
    return max(int(kb) for kb in re.findall(r"MOVER: read (\d+)KB", out))


class Socket:
    """A plain TCP socket for `-o tape-tcp=`: stores what comes (a backup) or sends a file (a recover)."""

    def __init__(self, store: str | None = None, send: str | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.store, self.send = store, send
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(60)
        conn, _ = self.listener.accept()
        with conn:
            if self.store:
                with open(self.store, "wb") as out:
                    while chunk := conn.recv(1 << 16):
                        out.write(chunk)
            else:
                with open(self.send, "rb") as image:
                    conn.sendall(image.read())
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(1 << 16):
                    pass
        self.listener.close()

    def done(self) -> None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()

    @property
    def spec(self) -> str:
        return f"tape-tcp=127.0.0.1:{self.port}"


@pytest.fixture
def tree():
    """The tree to back up, at a path short enough for c_filesys (63 bytes): Debian's restore -C uses it."""
    base = tempfile.mkdtemp(prefix="ndd", dir="/tmp")
    root = Path(base) / "tree"
    build_tree_from_spec(str(root), SPEC)
    yield root
    shutil.rmtree(base)


def change(tree) -> None:
    time.sleep(1.05)  # a new second: the level 1 sees what changed after the level 0's date
    (tree / "a.txt").write_bytes(b"alpha, changed\n")
    (tree / "sub" / "new").write_bytes(b"new at level 1\n")


def test_server_as_data_and_tape_agent(server, tree, tmp_path):
    """Level 0 and level 1 with indexes, a whole restore of each, and a direct-access restore of one file."""
    tape0, tape1 = str(tmp_path / "l0.tap"), str(tmp_path / "l1.tap")
    index0, index1 = str(tmp_path / "index0"), str(tmp_path / "index1")
    a = agent(server)
    out = okay("-c", "-D", a, "-B", "dump", "-C", str(tree), "-E", "LEVEL=0", "-I", index0, "-f", tape0)
    assert 'DLMn "ndmptools: dump of' in out
    places = index_places(index0)
    assert {"a.txt", "big", "sub/zz-last", "sub/deeper/c", "hard1", "hard2"} <= set(places)
    assert places["hard1"] == places["hard2"]  # one inode, one place
    assert all(place % 1024 == 0 for place in places.values())

    whole = tmp_path / "whole"
    whole.mkdir()
    out = okay("-x", "-D", a, "-B", "dump", "-C", str(whole), "-f", tape0, "-J", index0, "/")
    assert "LOG_FILE messages: 1 OK, 0 ERROR" in out
    same(tree, whole)

    # Direct access: the file's place from the index, far past the 3 MiB file: little is read.
    assert places["sub/zz-last"] > 3 << 20
    one = tmp_path / "one"
    one.mkdir()
    out = okay("-x", "-D", a, "-B", "dump", "-C", str(one), "-f", tape0, "-J", index0, "sub/zz-last")
    assert (one / "sub" / "zz-last").read_bytes() == SPEC["sub"]["zz-last"]
    assert sorted(p.name for p in one.rglob("*")) == ["sub", "zz-last"]
    assert mover_read_kb(out) < 1024, out  # not the 3 MiB before it

    change(tree)
    okay("-c", "-D", a, "-B", "dump", "-C", str(tree), "-E", "LEVEL=1", "-I", index1, "-f", tape1)
    changed = index_places(index1)
    assert {"a.txt", "sub/new"} <= set(changed) and "big" not in changed
    assert index_env(index1)["BASE_DATE"] == index_env(index0)["DUMP_DATE"]
    assert index_env(index1)["LEVEL"] == "1"
    okay("-x", "-D", a, "-B", "dump", "-C", str(whole), "-f", tape1, "-J", index1, "/")
    same(tree, whole)


def test_ndmjob_tape_agent(server, tree, tmp_path):
    """`-T .`: ndmjob's own tape agent, the data stream over TCP between it and the server's DATA."""
    image = tmp_path / "sim.img"
    image.touch()  # ndmjob's tape simulator opens, never creates
    index = str(tmp_path / "index")
    a = agent(server)
    okay(
        "-c",
        "-D",
        a,
        "-T",
        ".",
        "-B",
        "dump",
        "-C",
        str(tree),
        "-E",
        "LEVEL=0",
        "-I",
        index,
        "-f",
        str(image),
    )
    whole = tmp_path / "whole"
    whole.mkdir()
    okay("-x", "-D", a, "-T", ".", "-B", "dump", "-C", str(whole), "-f", str(image), "-J", index, "/")
    same(tree, whole)
    one = tmp_path / "one"
    one.mkdir()
    out = okay(
        "-x", "-D", a, "-T", ".", "-B", "dump", "-C", str(one), "-f", str(image), "-J", index, "sub/zz-last"
    )
    assert (one / "sub" / "zz-last").read_bytes() == SPEC["sub"]["zz-last"]
    assert "the mover is another agent's: the stream is read on in order" in out


@pytest.mark.skipif(bool(missing_tools()), reason="Debian dump/restore not installed")
def test_tape_tcp_images_are_dumps_debian_restores(server, tree, tmp_path):
    """`-o tape-tcp=`: the raw stream lands in a file; Debian restore lists, compares and applies it."""
    a = agent(server)
    raw0, raw1 = str(tmp_path / "l0.dump"), str(tmp_path / "l1.dump")
    index0 = str(tmp_path / "index0")
    sink = Socket(store=raw0)
    okay(
        "-c",
        "-D",
        a,
        "-B",
        "dump",
        "-C",
        str(tree),
        "-E",
        "LEVEL=0",
        "-I",
        index0,
        "-f",
        "tcp",
        "-o",
        sink.spec,
    )
    sink.done()
    listed = debian_restore(["-t", "-f", raw0], cwd=str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    assert "./sub/zz-last" in listed.stdout and "./big" in listed.stdout
    compared = debian_restore(["-C", "-a", "-y", "-D", str(tree), "-f", raw0], cwd=str(tmp_path))
    assert compared.returncode == 0 and "compare errors" not in compared.stderr, compared.stderr

    # ndmjob recovers from the stored stream, sent back over a plain socket.
    back = tmp_path / "back"
    back.mkdir()
    source = Socket(send=raw0)
    okay("-x", "-D", a, "-B", "dump", "-C", str(back), "-J", index0, "-f", "tcp", "-o", source.spec, "/")
    source.done()
    same(tree, back)
    one = tmp_path / "one"
    one.mkdir()
    source = Socket(send=raw0)
    okay(
        "-x",
        "-D",
        a,
        "-B",
        "dump",
        "-C",
        str(one),
        "-J",
        index0,
        "-f",
        "tcp",
        "-o",
        source.spec,
        "sub/zz-last",
    )
    source.done()
    assert (one / "sub" / "zz-last").read_bytes() == SPEC["sub"]["zz-last"]
    assert sorted(p.name for p in one.rglob("*")) == ["sub", "zz-last"]

    # A level 1 after changes (a deletion too), and Debian's restore -r applies the chain.
    change(tree)
    os.unlink(tree / "exec")
    sink = Socket(store=raw1)
    okay("-c", "-D", a, "-B", "dump", "-C", str(tree), "-E", "LEVEL=1", "-f", "tcp", "-o", sink.spec)
    sink.done()
    target = tmp_path / "debian"
    target.mkdir()
    for image in (raw0, raw1):
        applied = debian_restore(["-r", "-y", "-f", image], cwd=str(target))
        assert applied.returncode == 0, applied.stderr
    os.unlink(target / "restoresymtable")
    same(tree, target, CompareRules(time_resolution_ns=1000, compare_root=False))  # Debian's microseconds


def test_test_data_passes(server):
    out = ndmjob("-o", "test-data", "-D", agent(server))
    assert "FINAL test-data Passed" in out and "fail=0" in out.split("FINAL test-data")[1], out


def test_failures_end_in_failure_and_leave_no_base(server, tmp_path):
    """A DMA asking the impossible gets a clear log line and a job that does not end OKAY."""
    a = agent(server)
    out = ndmjob("-c", "-D", a, "-B", "dump", "-C", str(tmp_path / "missing"), "-f", str(tmp_path / "x.tap"))
    assert OKAY not in out and "cannot dump" in out and "no such file or directory" in out, out
    tree = tmp_path / "t"
    build_tree_from_spec(str(tree), {"f": b"x"})
    out = ndmjob("-c", "-D", a, "-B", "dump", "-C", str(tree), "-E", "LEVEL=1", "-f", str(tmp_path / "y.tap"))
    assert OKAY not in out and "a level 0 is needed first" in out, out
    out = ndmjob(
        "-c", "-D", a, "-B", "dump", "-C", str(tree), "-E", "LEVEL=99", "-f", str(tmp_path / "z.tap")
    )
    assert OKAY not in out and "LEVEL=99: the value must be a level from 0 to 31" in out, out
    assert server.alive()


def test_environment_over_ndmp(server, tree, tmp_path):
    """ndmjob's -e (EXCLUDE), NO_ACLS, a name nobody knows, and NOWRITE on the way back."""
    a = agent(server)
    subprocess.run(["setfacl", "-m", "u:1234:r", str(tree / "a.txt")], check=True)
    tape, index = str(tmp_path / "x.tap"), str(tmp_path / "index")
    out = okay(
        "-c", "-D", a, "-B", "dump", "-C", str(tree), "-e", "big", "-E", "NO_ACLS=Y",
        "-E", "FROBNICATE=1", "-I", index, "-f", tape,
    )  # fmt: skip
    assert "FROBNICATE=1 is not an environment variable ndmptools knows" in out
    assert "EXCLUDE left out 1 entries" in out
    assert "big" not in index_places(index)
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    out = okay(
        "-x", "-D", a, "-B", "dump", "-C", str(nothing), "-E", "NOWRITE=Y", "-E", "EXTRACT=N",
        "-f", tape, "-J", index, "/",
    )  # fmt: skip
    assert "NOWRITE:" in out and list(nothing.iterdir()) == []
    assert "EXTRACT=N: over NDMP the name list says what is restored" in out
    out = okay("-x", "-D", a, "-B", "dump", "-C", str(nothing), "-E", "LIST=Y", "-f", tape, "-J", index, "/")
    assert 'DLMn "file sub/zz-last"' in out and list(nothing.iterdir()) == []
    back = tmp_path / "back"
    back.mkdir()
    okay("-x", "-D", a, "-B", "dump", "-C", str(back), "-f", tape, "-J", index, "/")
    with pytest.raises(OSError):
        os.getxattr(back / "a.txt", "system.posix_acl_access")
    shutil.rmtree(tree / "big") if (tree / "big").is_dir() else os.unlink(tree / "big")
    subprocess.run(["setfacl", "-b", str(tree / "a.txt")], check=True)
    same(tree, back, CompareRules(compare_root=False))  # the root changed: big went from it


def _tcp(port: int):
    return m.addr(m.ADDR_TCP, [m.tcp_addr(ip_addr=0x7F000001, port=port, addr_env=[])])


def _backup_request(path: str, level: int):
    env = [m.pval(name="FILESYSTEM", value=path), m.pval(name="LEVEL", value=str(level))]
    return m.data_start_backup_request(butype_name="dump", env=env)


def test_abort_mid_backup_halts_aborted_and_leaves_no_base(server, tmp_path):
    """DATA_ABORT while the engine writes (to a socket nobody reads): ABORTED, and no base for a level 1."""
    tree = tmp_path / "t"
    build_tree_from_spec(str(tree), {"large": b"L" * (48 << 20), "small": b"s"})
    stuck = socket.create_server(("127.0.0.1", 0))  # accepts, and never reads
    with Client(server.port) as dma:
        dma.open()
        dma.auth_none()
        where = _tcp(stuck.getsockname()[1])
        _, reply = dma.call(m.Message.DATA_CONNECT, m.data_connect_request(addr=where))
        assert reply.error == m.Error.NO_ERR
        peer, _ = stuck.accept()
        _, reply = dma.call(m.Message.DATA_START_BACKUP, _backup_request(str(tree), 0))
        assert reply.error == m.Error.NO_ERR
        time.sleep(1)
        _, state = dma.call(m.Message.DATA_GET_STATE)
        assert state.state == m.DATA_STATE_ACTIVE and state.operation == m.DATA_OP_BACKUP
        _, reply = dma.call(m.Message.DATA_ABORT)
        assert reply.error == m.Error.NO_ERR
        halted = dma.wait_post(m.Message.NOTIFY_DATA_HALTED)
        assert halted.reason == m.DATA_HALT_ABORTED
        _, state = dma.call(m.Message.DATA_GET_STATE)
        assert (state.state, state.halt_reason) == (m.DATA_STATE_HALTED, m.DATA_HALT_ABORTED)
        _, reply = dma.call(m.Message.DATA_STOP)
        assert reply.error == m.Error.NO_ERR
        peer.close()

        # The aborted level 0 is no base: a level 1 of the same tree fails, saying why, and the DMA hears it.
        reader = Socket(store=str(tmp_path / "l1"))
        dma.call(m.Message.DATA_CONNECT, m.data_connect_request(addr=_tcp(reader.port)))
        _, reply = dma.call(m.Message.DATA_START_BACKUP, _backup_request(str(tree), 1))
        assert reply.error == m.Error.NO_ERR
        halted = dma.wait_post(m.Message.NOTIFY_DATA_HALTED)
        assert halted.reason == m.DATA_HALT_INTERNAL_ERROR
        logged = [body.entry for code, body in dma.posts if code == m.Message.LOG_MESSAGE]
        assert any("a level 0 is needed first" in entry for entry in logged), logged
        reader.done()
        _, reply = dma.call(m.Message.DATA_GET_ENV)  # a failed backup reports no DUMP_DATE
        assert not any(p.name == "DUMP_DATE" for p in reply.env)
    stuck.close()
    assert server.alive()


def test_swap_connect_data_listens(server, tree, tmp_path):
    """`-o swap-connect`: DATA_LISTEN and MOVER_CONNECT, over TCP to ndmjob's tape agent and LOCAL here."""
    a = agent(server)
    image = tmp_path / "sim.img"
    image.touch()
    index = str(tmp_path / "index")
    okay(
        "-c",
        "-o",
        "swap-connect",
        "-D",
        a,
        "-T",
        ".",
        "-B",
        "dump",
        "-C",
        str(tree),
        "-I",
        index,
        "-f",
        str(image),
    )
    tape = str(tmp_path / "x.tap")
    okay("-c", "-o", "swap-connect", "-D", a, "-B", "dump", "-C", str(tree), "-I", index, "-f", tape)
    whole = tmp_path / "whole"
    whole.mkdir()
    okay("-x", "-o", "swap-connect", "-D", a, "-B", "dump", "-C", str(whole), "-f", tape, "-J", index, "/")
    same(tree, whole)
