#!/usr/bin/env python3
"""Benchmark: what the restore marks cost, on the restore that sets them and on the dump that reads them.

    python benchmarks/restore_marks.py [--workdir DIR] [--small 20000] [--repeat 7]

Builds the shared corpus (../shared/bench/make_corpus.py) with SMALL small
files and one 1 MiB file, dumps it once, then, in this process (the engine
alone, no Python start-up in the figures), alternates:

- restores of the dump with marking on and off (a setxattr and a
  removexattr per regular file, against neither);
- dumps of the tree (live, no history) with the mark check on and off (a
  listxattr per regular file in pass I), and pass I alone the same way.

Medians of the alternating runs, and their ratios. The work directory
defaults to a new folder in /dev/shm (tmpfs); --workdir on a disk file system
(ext4 keeps small xattrs in the inode) measures that one instead.
Machines are shared and noisy: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
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

from ndmptools.engine.dump import run_dump  # noqa: E402
from ndmptools.engine.dump.mapping import map_tree  # noqa: E402
from ndmptools.engine.dump.marks import MarkFilter  # noqa: E402
from ndmptools.engine.options import DumpOptions, RestoreOptions  # noqa: E402
from ndmptools.engine.progress import RunContext  # noqa: E402
from ndmptools.engine.restore import run_restore  # noqa: E402
from ndmptools.engine.restoremarks import MARK_XATTR, RestoreMarker  # noqa: E402
from ndmptools.media import open_path  # noqa: E402


def restore_once(dump: str, target: str, mark: bool) -> float:
    shutil.rmtree(target, ignore_errors=True)
    options = RestoreOptions(file=dump, target=target, mark_files=mark, prompt=False)
    start = time.perf_counter()
    with open_path(dump, "r") as medium:
        result = run_restore(options, medium, RunContext())
    seconds = time.perf_counter() - start
    assert result.not_restored == 0 and not result.stats.warnings, result.stats.warnings[:3]
    return seconds


def dump_once(tree: str, out: str, state: str, check: bool) -> float:
    options = DumpOptions(
        path=tree,
        file=out,
        snapshot_provider="none",
        state_dir=state,
        restore_marks=check,
        file_history=False,
    )
    start = time.perf_counter()
    run_dump(options, lambda: open_path(out, "w"), RunContext())
    return time.perf_counter() - start


def map_once(tree: str, check: bool) -> float:
    run = RunContext()
    marks = MarkFilter(run, tree.encode()) if check else None
    start = time.perf_counter()
    map_tree(tree.encode(), run, marks=marks)
    return time.perf_counter() - start


def marking_alone(target: str, repeat: int) -> float:
    """Seconds a file that RestoreMarker.mark and .unmark take on their own (the median of ``repeat``)."""
    marker = RestoreMarker(RunContext())
    directories = [root for root, _, files in os.walk(target) if files]
    runs = []
    for _ in range(repeat):
        spent, count = 0.0, 0
        for directory in directories:
            fds = [
                os.open(e.path, os.O_WRONLY)
                for e in os.scandir(directory)
                if e.is_file(follow_symlinks=False)
            ]
            start = time.perf_counter()
            for fd in fds:  # as a restore does: every file marked, then each one unmarked
                marker.mark(fd)
            for fd in fds:
                marker.unmark(fd)
            spent += time.perf_counter() - start
            count += len(fds)
            for fd in fds:
                os.close(fd)
        runs.append(spent / count)
    return statistics.median(runs)


def alternate(repeat: int, on, off) -> tuple[float, float, float, float]:
    """Medians of ``on`` and ``off`` run in turn (the first of each pair alternates), the median of
    the pair ratios, and the ratio of the fastest runs (the least disturbed by other load)."""
    with_on, with_off = [], []
    for i in range(repeat):
        pair = ((on, with_on), (off, with_off))
        for run, times in pair if i % 2 == 0 else reversed(pair):
            times.append(run())
    ratios = [a / b for a, b in zip(with_on, with_off, strict=True)]
    return (
        statistics.median(with_on),
        statistics.median(with_off),
        statistics.median(ratios),
        min(with_on) / min(with_off),
    )


def report(what: str, on: float, off: float, ratio: float, fastest: float) -> float:
    cost = 100 * (on / off - 1)
    pairs, best = 100 * (ratio - 1), 100 * (fastest - 1)
    print(
        f"{what}: on {on:.3f} s, off {off:.3f} s: {cost:+.1f} % (pairs {pairs:+.1f} %, fastest {best:+.1f} %)"
    )
    return cost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir")
    parser.add_argument("--small", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="ndmptools-marks-", dir="/dev/shm")
    os.makedirs(work, exist_ok=True)
    tree, state = os.path.join(work, "tree"), os.path.join(work, "state")
    dump, target, out = (os.path.join(work, n) for n in ("tree.dump", "restored", "again.dump"))
    try:
        if not os.path.exists(tree):
            subprocess.run([sys.executable, CORPUS, tree, str(args.small), "200", "1", "1"], check=True)
        dump_once(tree, dump, state, True)
        print(
            f"{args.small} small files in {work} ({os.path.getsize(dump) >> 20} MiB dump), "
            f"{args.repeat} runs each"
        )

        restore_once(dump, target, True)  # warm the cache, and check the marks go
        probe = os.path.join(target, "small", "d0000", "f000000")
        assert MARK_XATTR not in os.listxattr(probe), "a restored file kept its mark"
        cost_restore = report(
            "restore, marking",
            *alternate(
                args.repeat,
                lambda: restore_once(dump, target, True),
                lambda: restore_once(dump, target, False),
            ),
        )
        per_file = marking_alone(target, args.repeat)
        restore_per_file = restore_once(dump, target, False) / args.small
        share = 100 * per_file / restore_per_file
        print(
            f"  the two calls alone: {per_file * 1e6:.2f} us a file, {share:.1f} % of the restore's "
            f"{restore_per_file * 1e6:.0f} us a file"
        )
        shutil.rmtree(target, ignore_errors=True)
        cost_dump = report(
            "dump, checking marks",
            *alternate(
                args.repeat,
                lambda: dump_once(tree, out, state, True),
                lambda: dump_once(tree, out, state, False),
            ),
        )
        timings = alternate(args.repeat, lambda: map_once(tree, True), lambda: map_once(tree, False))
        report("pass I alone, checking marks", *timings)
        check_per_file = (timings[0] - timings[1]) / args.small
        dump_per_file = dump_once(tree, out, state, False) / args.small
        share = 100 * check_per_file / dump_per_file
        print(
            f"  the check alone: {check_per_file * 1e6:.2f} us a file, {share:.1f} % of the dump's "
            f"{dump_per_file * 1e6:.0f} us a file"
        )
        print(f"restore slowdown {cost_restore:+.1f} %, dump slowdown {cost_dump:+.1f} %")
        return 0
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
