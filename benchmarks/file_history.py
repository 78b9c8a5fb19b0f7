#!/usr/bin/env python3
"""Benchmark: what the file history (HIST=Y) costs a dump of many small files, and its size.

    python benchmarks/file_history.py [--files 20000] [--dirs 200] [--repeat 7] [--workdir DIR]

Builds FILES small files (256 B-8 KiB, as the shared corpus's small/ part;
--max-size shrinks them for a tree of a million files) over DIRS folders,
then dumps the tree (to a file; with --output -, to nowhere) through the
command, a new Python process each run as a user runs it, alternating
HIST=Y and --no-history (in ABBA order, after a pair not counted), both
--no-update so that nothing but the history differs. It prints the medians
and the ratios of wall and CPU time, each side's peak memory (the largest
resident set of a run), the catalog's size in the state database per 1,000
entries, and how long `chain find` takes over all of it. With
--instructions it also counts the instructions of one run of each side
under valgrind, which a busy machine does not change.

Machines are shared and noisy: read the ratio, not the seconds. The work
directory defaults to a new folder in /dev/shm (tmpfs).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from ndmptools.state.catalog import FileCatalog  # noqa: E402
from ndmptools.state.db import StateDB  # noqa: E402


def small_files(root: str, count: int, dirs: int, min_size: int, max_size: int, seed: int = 7) -> None:
    """``count`` files of random bytes over ``dirs`` folders, named as make_corpus.py names them."""
    rng = random.Random(seed)
    blob = os.urandom(1 << 20)
    for d in range(dirs):
        os.makedirs(os.path.join(root, "small", f"d{d:04d}"), exist_ok=True)
    for i in range(count):
        n = rng.randint(min_size, max_size)
        offset = rng.randint(0, len(blob) - n)
        with open(os.path.join(root, "small", f"d{i % dirs:04d}", f"f{i:06d}"), "wb") as f:
            f.write(blob[offset : offset + n])


def command(state: str, *args: str) -> tuple[float, float, int]:
    """One run of the command: its seconds, its CPU seconds and its peak resident set (KiB)."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "ndmptools", "--state-dir", state, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    errors = child.stderr.read().decode(errors="replace").strip()
    child.stderr.close()
    if child.returncode not in (0, 1):
        raise SystemExit(f"ndmptools {' '.join(args)} failed ({child.returncode}): {errors}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


VALGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]


def instructions(state: str, *args: str) -> int:
    """Instructions one run of the command executes, counted by valgrind (the same on a busy machine)."""
    done = subprocess.run(
        [*VALGRIND, sys.executable, "-m", "ndmptools", "--state-dir", state, *args],
        stdout=subprocess.DEVNULL,  # the dump itself, with --output -
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONHASHSEED="0"),
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode not in (0, 1) or found is None:
        raise SystemExit(f"valgrind ndmptools {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return int(found.group(1))


def catalog_size(state: str) -> tuple[int, int, int]:
    """Bytes of the catalog's tables and indexes in the state database, the entries and dumps they hold."""
    db = StateDB(state)
    try:
        ids = [
            r[0] for r in db.conn.execute("SELECT id FROM dumps WHERE status = 'completed' AND file_history")
        ]
        entries = sum(FileCatalog(db).count(i) for i in ids)
    finally:
        db.close()
    with sqlite3.connect(os.path.join(state, "ndmptools.db")) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE name LIKE 'catalog%'")]
        marks = ",".join("?" * len(tables))
        (size,) = conn.execute(f"SELECT SUM(pgsize) FROM dbstat WHERE name IN ({marks})", tables).fetchone()
    return size or 0, entries, len(ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir")
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--dirs", type=int, default=200)
    parser.add_argument(
        "--max-size", type=int, default=8192, help="largest file (bytes); the smallest is 256"
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--output", help="where the dumps go (default: a file in the work dir; -: nowhere)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each side's instructions under valgrind (slow)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the work directory behind")
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="ndmptools-hist-", dir="/dev/shm")
    os.makedirs(work, exist_ok=True)
    tree, state, out = (os.path.join(work, n) for n in ("tree", "state", "dump"))
    out = args.output or out
    try:
        if not os.path.exists(tree):
            print(f"tree: {args.files} files of 256 B-{args.max_size} B in {args.dirs} folders", flush=True)
            small_files(tree, args.files, args.dirs, min(256, args.max_size), args.max_size)
        shutil.rmtree(state, ignore_errors=True)

        def dump(history: bool) -> tuple[float, float, int]:
            if out != "-" and os.path.exists(out):
                os.unlink(out)
            extra = [] if history else ["--no-history"]
            return command(state, "dump", "-q", "--no-update", "-b", "64", *extra, "-f", out, tree)

        dump(True), dump(False)  # a first pair, not counted: caches warm up
        runs: dict[bool, list[tuple[float, float, int]]] = {True: [], False: []}
        for round_ in range(args.repeat):
            for history in (True, False) if round_ % 2 == 0 else (False, True):  # ABBA: drift cancels
                runs[history].append(dump(history))
        with_s, without_s = (statistics.median(r[0] for r in runs[h]) for h in (True, False))
        with_cpu, without_cpu = (statistics.median(r[1] for r in runs[h]) for h in (True, False))
        with_kib, without_kib = (statistics.median(r[2] for r in runs[h]) for h in (True, False))
        print(f"dump of {args.files} files, medians of {args.repeat} alternating runs each:")
        print(
            f"  with file history {with_s:.3f} s, without {without_s:.3f} s: "
            f"HIST=Y costs {100 * (with_s / without_s - 1):+.1f} %"
        )
        print(
            f"  CPU time {with_cpu:.3f} s with, {without_cpu:.3f} s without: "
            f"{100 * (with_cpu / without_cpu - 1):+.1f} %"
        )
        pairs = sorted(a[0] / b[0] for a, b in zip(runs[True], runs[False], strict=True))
        middle = statistics.median(pairs)
        print(
            f"  each pair's ratio (two runs side by side): median {100 * (middle - 1):+.1f} % "
            f"(from {100 * (pairs[0] - 1):+.1f} % to {100 * (pairs[-1] - 1):+.1f} %)"
        )
        print(
            f"  peak memory {with_kib / 1024:.0f} MiB with, {without_kib / 1024:.0f} MiB without "
            f"({(with_kib - without_kib) / 1024:+.0f} MiB)"
        )
        if args.instructions and shutil.which("valgrind"):
            counts = {}
            for history in (True, False):  # each from a copy of the same database, one dump each
                copy = f"{state}.{history}"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(state, copy)
                extra = [] if history else ["--no-history"]
                target = out if out == "-" else f"{out}.{history}"
                counts[history] = instructions(
                    copy, "dump", "-q", "--no-update", "-b", "64", *extra, "-f", target, tree
                )
                shutil.rmtree(copy)
                if target != "-":
                    os.unlink(target)
            with_g, without_g = counts[True] / 1e9, counts[False] / 1e9
            print(
                f"  instructions (valgrind): {with_g:.3f} G with, {without_g:.3f} G without: "
                f"{100 * (with_g / without_g - 1):+.2f} %"
            )
        size, entries, dumps = catalog_size(state)
        if entries:
            print(
                f"catalog: {size / 2**20:.1f} MiB for {entries} entries ({dumps} dumps): "
                f"{size / entries * 1000 / 1024:.1f} KiB per 1,000 entries"
            )
        found = statistics.median(command(state, "chain", "find", "f0000[0-9]*", tree)[0] for _ in range(3))
        print(
            f"chain find over {entries} entries: {found:.2f} s (median of 3), "
            f"{found / entries * 1e6:.2f} s per million"
        )
        return 0
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
