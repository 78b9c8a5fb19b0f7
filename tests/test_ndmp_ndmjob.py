"""Amanda's ndmjob as the DMA: its query, test-mover and test-tape against `ndmptools serve`,
and the same tests against ndmjob's own reference daemon for comparison.

ndmjob exits 0 whatever its tests find: its output says what passed. On the
reference daemon and on ours alike, ndmjob's test-tape stops in T-BW, where
its client cannot send the zero-length TAPE_WRITE it tests (the connection
is dropped on the client side); test_ndmp_server.py runs the rest of that
series against our server with a client of its own.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time

import pytest

from tests.ndmpclient import NDMJOB, ServeProcess, write_credentials

pytestmark = pytest.mark.skipif(not os.access(NDMJOB, os.X_OK), reason="needs ndmjob (Debian amanda-server)")

PASSWORD = "s3cret-pw"
PHASE_PASSED = re.compile(r'TEST "Test (\S+) Passed')


def ndmjob(*args: str, timeout: float = 120) -> str:
    result = subprocess.run([NDMJOB, *args], capture_output=True, text=True, timeout=timeout)
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ndmjob")
    with ServeProcess(auth="md5", credentials=write_credentials(str(directory), password=PASSWORD)) as proc:
        yield proc
    assert "Traceback" not in proc.stderr_text


def agent(server) -> str:
    return f"127.0.0.1:{server.port}/4m,ndmp,{PASSWORD}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def reference_daemon():
    """ndmjob's own NDMP daemon (test-daemon: it ends when its stdin closes)."""
    port = free_port()
    proc = subprocess.Popen(
        [NDMJOB, "-o", "test-daemon", "-p", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}/4t,ndmp,ndmp"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_query_with_md5_auth(server):
    out = ndmjob("-q", "-D", agent(server))
    assert "Host info" in out and "vendor     ndmptools" in out
    assert "Backup type info of dump format" in out
    wrong = ndmjob("-q", "-D", f"127.0.0.1:{server.port}/4m,ndmp,wrong")
    assert "connect-auth-md5-failed" in wrong and "Host info" not in wrong
    text = ndmjob("-q", "-D", f"127.0.0.1:{server.port}/4t,ndmp,{PASSWORD}")
    assert "connect-auth-text-failed" in text  # an md5 server takes no clear-text password


def test_test_mover_passes_in_full(server, tmp_path):
    tape = tmp_path / "mover.tap"
    tape.touch()  # ndmjob first opens the tape read-only
    out = ndmjob("-o", "test-mover", "-T", agent(server), "-f", str(tape))
    assert "FINAL test-mover Passed" in out, out
    assert "LOCAL and TCP addressing tested." in out
    assert "fail=0" in out.split("FINAL test-mover")[1]


def test_test_mover_on_the_reference_daemon(reference_daemon, tmp_path):
    tape = tmp_path / "ref-mover"
    tape.touch()
    out = ndmjob("-o", "test-mover", "-T", reference_daemon, "-f", str(tape))
    assert "FINAL test-mover Passed" in out, out  # the reference passes it too: we match it


def test_test_tape_gets_as_far_as_on_the_reference_daemon(server, reference_daemon, tmp_path):
    ours_tape, ref_tape = tmp_path / "ours.tap", tmp_path / "ref-tape"
    ours_tape.touch()
    ref_tape.touch()
    ours = ndmjob("-o", "test-tape", "-T", agent(server), "-f", str(ours_tape))
    reference = ndmjob("-o", "test-tape", "-T", reference_daemon, "-f", str(ref_tape))
    passed_ours = PHASE_PASSED.findall(ours)
    passed_reference = PHASE_PASSED.findall(reference)
    assert passed_ours[:2] == ["T-OC", "T-BGS"], ours
    assert set(passed_reference) <= set(passed_ours), (ours, reference)
    assert "fail=" not in ours or " fail=0" in ours
    # both stop where ndmjob's client cannot send the zero-length write of T-BW
    assert "Test T-BW -- Tape Write Basics" in ours and "Test T-BW Passed" not in ours
    assert "Test T-BW -- Tape Write Basics" in reference and "Test T-BW Passed" not in reference
