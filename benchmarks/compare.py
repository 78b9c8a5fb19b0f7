#!/usr/bin/env python3
"""Benchmark: restore -C against a restore of the same dump, and against Debian's restore -C.

    python benchmarks/compare.py [--workdir DIR] [--small 20000] [--large 2] [--large-mb 256] [--repeat 3]

Builds the shared corpus (../shared/bench/make_corpus.py), dumps it to a file,
then runs, alternating, `ndmptools restore -C` (the dump against the corpus),
`ndmptools restore` into an empty directory, and Debian's `restore -C` on the
same dump and tree. A compare reads every byte twice (the media's and the
tree's) where a restore reads one and writes one. It reports medians, their
ratios, and the compare's peak resident memory, which must stay far below
the largest file (a file's data is never held whole).

Machines are shared and noisy: read the ratios, not the seconds. The work
directory defaults to a new folder in /dev/shm (tmpfs), as the peers' runs do.
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
RESTORE = shutil.which("restore") or "/usr/sbin/restore"


def timed(command: list[str], ok: tuple[int, ...] = (0,), cwd: str | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, input="y\n")
    seconds = time.perf_counter() - start
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return seconds


def peak_rss_kib(command: list[str]) -> int:
    """The largest resident set of ``command``, measured in a child that runs only it."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True)
    return int(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir")
    parser.add_argument("--small", type=int, default=20000)
    parser.add_argument("--large", type=int, default=2)
    parser.add_argument("--large-mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the work directory behind")
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="ndc-bench-", dir="/dev/shm")
    os.makedirs(work, exist_ok=True)
    tree, image, target = (os.path.join(work, n) for n in ("tree", "corpus.dump", "restored"))
    ndmptools = [sys.executable, "-m", "ndmptools", "--state-dir", os.path.join(work, "state")]
    try:
        if not os.path.exists(tree):
            print(f"corpus: {args.small} small files, {args.large} x {args.large_mb} MiB", flush=True)
            subprocess.run(
                [sys.executable, CORPUS, tree, str(args.small), "200", str(args.large), str(args.large_mb)],
                check=True,
            )
        timed([*ndmptools, "dump", "-q", "-f", image, tree])
        print(f"dump: {os.path.getsize(image) / 2**20:.0f} MiB", flush=True)

        ours, restores, debian = [], [], []
        for _ in range(args.repeat):
            ours.append(timed([*ndmptools, "restore", "-q", "-C", "-f", image, "-D", tree]))
            shutil.rmtree(target, ignore_errors=True)
            restores.append(timed([*ndmptools, "restore", "-q", "-f", image, "-D", target]))
            debian.append(timed([RESTORE, "-C", "-y", "-D", tree, "-f", image], cwd=work))
        c, r, d = (statistics.median(x) for x in (ours, restores, debian))
        print(f"ndmptools restore -C {c:.2f} s, ndmptools restore {r:.2f} s: compare/restore {c / r:.2f}x")
        print(f"Debian restore -C {d:.2f} s: ndmptools/Debian {c / d:.2f}x (medians of {args.repeat})")

        peak = peak_rss_kib([*ndmptools, "restore", "-q", "-C", "-f", image, "-D", tree])
        largest = args.large_mb * 1024
        print(f"compare peak RSS {peak / 1024:.0f} MiB, largest file {largest / 1024:.0f} MiB")
        ok = peak < largest / 2
        print(f"{'PASS' if ok else 'FAIL'}: the compare holds less than half the largest file in memory")
        return 0 if ok else 1
    finally:
        shutil.rmtree(target, ignore_errors=True)
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
