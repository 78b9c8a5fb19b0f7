#!/usr/bin/env python3
"""Benchmark: a backup stream through the NDMP mover of `ndmptools serve`, against a direct write.

    python benchmarks/ndmp_mover.py [--mb 256] [--record 10240,65536,262144] [--repeat 3]

Starts `ndmptools serve --auth none` on a free loopback port, and for each
record size sends MB of random bytes over a MOVER_LISTEN TCP data connection
into a .tap in a work folder (default: /dev/shm), timing from the first byte
to NOTIFY_MOVER_HALTED. The baseline writes the same records with the media
layer's virtual tape (media/vtape.py) in process. It reports the medians and
the mover's share of the direct write's speed: read the ratios, not the
seconds (machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ndmptools.media.vtape import SingleTape  # noqa: E402
from ndmptools.ndmp import messages as m  # noqa: E402
from ndmptools.ndmp.wire import encode_message, frame, read_record, split_record  # noqa: E402

M = m.Message


class Control:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sequence = 0
        self.posts: list[int] = []
        self.receive()  # NOTIFY_CONNECTION_STATUS

    def receive(self):
        incoming = split_record(read_record(self.sock))
        return incoming.header, incoming.body

    def call(self, code, body=None):
        self.sequence += 1
        kind = m.MESSAGES[code].request
        self.sock.sendall(frame(encode_message(self.sequence, m.MESSAGE_REQUEST, code, body, kind)))
        while True:
            head, raw = self.receive()
            if head.message_type == m.MESSAGE_REPLY and head.reply_sequence == self.sequence:
                return m.MESSAGES[code].reply.decode(raw) if m.MESSAGES[code].reply else None
            self.posts.append(head.message_code)

    def wait_post(self, code):
        while code not in self.posts:
            head, _ = self.receive()
            self.posts.append(head.message_code)
        self.posts.remove(code)


def through_mover(control: Control, path: str, record: int, chunk: bytes, total: int) -> float:
    control.call(M.TAPE_OPEN, m.tape_open_request(device=path, mode=m.TAPE_RDWR_MODE))
    control.call(M.MOVER_SET_RECORD_SIZE, m.mover_set_record_size_request(len=record))
    listen = control.call(
        M.MOVER_LISTEN, m.mover_listen_request(mode=m.MOVER_MODE_READ, addr_type=m.ADDR_TCP)
    )
    (addr,) = listen.connect_addr.tcp_addr
    start = time.perf_counter()
    with socket.create_connection((socket.inet_ntoa(struct.pack(">I", addr.ip_addr)), addr.port)) as data:
        for _ in range(total // len(chunk)):
            data.sendall(chunk)
    control.wait_post(M.NOTIFY_MOVER_HALTED)
    elapsed = time.perf_counter() - start
    control.call(M.MOVER_STOP)
    control.call(M.TAPE_CLOSE)
    os.unlink(path)
    return elapsed


def direct(path: str, record: int, chunk: bytes, total: int) -> float:
    start = time.perf_counter()
    tape = SingleTape(path, "w")
    view = memoryview(chunk)
    for _ in range(total // len(chunk)):
        for offset in range(0, len(chunk), record):
            tape.write_record(view[offset : offset + record])
    tape.close()
    elapsed = time.perf_counter() - start
    os.unlink(path)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--record", default="10240,65536,262144")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="ndmp-bench-", dir="/dev/shm")
    total = args.mb << 20
    chunk = os.urandom(1 << 20)
    server = subprocess.Popen(
        [sys.executable, "-m", "ndmptools", "serve", "--listen", "127.0.0.1:0", "--auth", "none"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stderr.readline()
        port = int(re.search(r":(\d+) ", line).group(1))
        control = Control(port)
        print(f"{args.mb} MiB per run, {args.repeat} runs, work folder {workdir}")
        for record in (int(r) for r in args.record.split(",")):
            path = os.path.join(workdir, "bench.tap")
            mover, plain = [], []
            for _ in range(args.repeat):
                mover.append(through_mover(control, path, record, chunk, total))
                plain.append(direct(path, record, chunk, total))
            mover_rate = total / statistics.median(mover) / 1e6
            plain_rate = total / statistics.median(plain) / 1e6
            print(
                f"record {record:>6}: mover {mover_rate:6.0f} MB/s, direct vtape {plain_rate:6.0f} MB/s, "
                f"mover/direct {mover_rate / plain_rate:.2f}"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
