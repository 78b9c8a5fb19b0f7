#!/usr/bin/env python3
"""Benchmark: direct access restore (DAR) against a scan, and what the file history costs a dump.

    python benchmarks/dar.py [--workdir DIR] [--large 8] [--large-mb 256] [--repeat 3]

Builds the shared corpus (../shared/bench/make_corpus.py: 20,000 small files
and LARGE x LARGE_MB MiB of random data, 2 GiB and more by default), dumps it
to a virtual tape library with its file history, then restores one small
file (the one furthest into the dump) twice: by direct access, and with
--no-direct, which reads the dump from the start. It reports the records
each read (counted by the reader, against the records on the cartridge)
and the time ratio, measured in-process (the engine alone) and through the
command (a new Python process each time, as a user runs it). It also times
the dump with and without its file history (HIST=Y vs --no-history) and GNU
tar on the same tree, alternating them, and reports medians and ratios.

Machines are shared and noisy: read the ratios, not the seconds. The work
directory defaults to a new folder in /dev/shm (tmpfs), as the peers' runs do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CORPUS = os.path.join(REPO, "..", "shared", "bench", "make_corpus.py")
sys.path.insert(0, REPO)

from ndmptools.engine.options import RestoreOptions  # noqa: E402
from ndmptools.engine.progress import RunContext  # noqa: E402
from ndmptools.engine.restore import run_restore  # noqa: E402
from ndmptools.media import MediaRequest, open_medium  # noqa: E402
from ndmptools.state.db import StateDB  # noqa: E402
from ndmptools.state.history import History  # noqa: E402


def cli(state: str, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ndmptools", "--state-dir", state, *args], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"ndmptools {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, done


def timed(*command: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def engine_restore(state: str, spec: str, target: str, path: str, direct: bool) -> tuple[float, int]:
    """One restore in this process: seconds and reads from the medium."""
    shutil.rmtree(target, ignore_errors=True)
    db = StateDB(state)
    try:
        options = RestoreOptions(file=spec, target=target, paths=(path,), direct=direct, prompt=False)
        start = time.perf_counter()
        with open_medium(MediaRequest(specs=(spec,), mode="r")) as medium:
            result = run_restore(options, medium, RunContext(), History(db))
        seconds = time.perf_counter() - start
    finally:
        db.close()
    assert result.direct == direct and result.restored == 1, result
    return seconds, result.media_reads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir")
    parser.add_argument("--small", type=int, default=20000)
    parser.add_argument("--large", type=int, default=8)
    parser.add_argument("--large-mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the work directory behind")
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="ndmptools-dar-", dir="/dev/shm")
    os.makedirs(work, exist_ok=True)
    tree, state, library = (os.path.join(work, n) for n in ("tree", "state", "lib"))
    spec = f"vtape:{library}"
    try:
        if not os.path.exists(tree):
            print(f"corpus: {args.small} small files, {args.large} x {args.large_mb} MiB", flush=True)
            subprocess.run(
                [sys.executable, CORPUS, tree, str(args.small), "200", str(args.large), str(args.large_mb)],
                check=True,
            )

        # The dump with and without its file history, and tar, alternating.
        with_hist, without_hist, tar = [], [], []
        for _ in range(args.repeat):
            for times, extra in ((with_hist, []), (without_hist, ["--no-history"])):
                shutil.rmtree(library, ignore_errors=True)
                seconds, _ = cli(state, "dump", "-q", "--no-update", "-b", "64", *extra, "-f", spec, tree)
                times.append(seconds)
            tar.append(timed("tar", "-C", tree, "-cf", os.path.join(work, "t.tar"), "."))
            os.unlink(os.path.join(work, "t.tar"))
        h, n, t = (statistics.median(x) for x in (with_hist, without_hist, tar))
        print(f"dump with file history {h:.2f} s, without {n:.2f} s: HIST=Y costs {100 * (h / n - 1):+.1f} %")
        print(f"  (GNU tar -cf {t:.2f} s: dump/tar {n / t:.1f}x without, {h / t:.1f}x with the history)")

        # The last dump written holds no history: write the one DAR uses.
        shutil.rmtree(library, ignore_errors=True)
        cli(state, "dump", "-q", "--no-update", "-b", "64", "-f", spec, tree)
        cartridges = sorted(os.listdir(library))
        tape_bytes = sum(os.path.getsize(os.path.join(library, c)) for c in cartridges)
        records = tape_bytes // (64 * 1024 + 8)
        _, listing = cli(state, "--json", "restore", "-t", "--catalog", "-f", spec, "small")
        entries = [e for e in json.loads(listing.stdout) if e["type"] == "file"]
        last = max(entries, key=lambda e: (e["volume"], e["record"]))
        gib = tape_bytes / 2**30
        print(f"dump: {gib:.2f} GiB, {records} records of 64 KiB on {len(cartridges)} cartridge(s)")
        print(f"restoring {last['path']} ({last['size']} bytes, record {last['record']} of {records})")

        target = os.path.join(work, "restored")
        dar, scan = [], []
        for _ in range(args.repeat):
            dar.append(engine_restore(state, spec, target, last["path"], True))
            scan.append(engine_restore(state, spec, target, last["path"], False))
        dar_s, scan_s = statistics.median(s for s, _ in dar), statistics.median(s for s, _ in scan)
        dar_reads, scan_reads = dar[0][1], scan[0][1]
        share = 100 * dar_reads / records
        print(f"engine: DAR {dar_s * 1000:.1f} ms, {dar_reads} records read ({share:.3f} % of the dump)")
        ratio = scan_s / dar_s
        print(f"        scan {scan_s * 1000:.1f} ms, {scan_reads} records read: DAR {ratio:.0f}x faster")

        dar_cli = statistics.median(
            cli(state, "restore", "-q", "-f", spec, "--target", target, last["path"])[0]
            for _ in range(args.repeat)
        )
        scan_cli = statistics.median(
            cli(state, "restore", "-q", "--no-direct", "-f", spec, "--target", target, last["path"])[0]
            for _ in range(args.repeat)
        )
        print(
            f"command: DAR {dar_cli:.2f} s, scan {scan_cli:.2f} s: {scan_cli / dar_cli:.0f}x "
            "(each includes starting Python)"
        )
        ok = share < 1 and scan_s / dar_s >= 20
        print(f"{'PASS' if ok else 'FAIL'}: under 1 % of the records and at least 20x faster than a scan")
        return 0 if ok else 1
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
