#!/usr/bin/env python3
"""The team's benchmark tree (shared/bench/make_corpus.py), kept here so a fresh clone can build it.

    python benchmarks/corpus.py ROOT [SMALL DIRS LARGE LARGE_MB SEED]

SMALL files of 256 B-8 KiB spread over DIRS folders under small/, LARGE
random files of LARGE_MB MiB under large/, a 512 MiB sparse file holding
1 MiB of data, a symlink and a hard link. Defaults: 20000 files, 200
folders, 2 x 256 MiB. The same arguments give the same names and sizes as
the shared generator (the same seeded sequence); the bytes are random.
"""

from __future__ import annotations

import os
import random
import sys

MiB = 1 << 20


def make_corpus(
    root: str,
    small: int = 20000,
    dirs: int = 200,
    large: int = 2,
    large_mb: int = 256,
    seed: int = 7,
    max_size: int = 8192,
) -> None:
    """Write the tree under ``root``; ``max_size`` below 8192 shrinks the small files (a million of them)."""
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    blob = os.urandom(MiB)
    for d in range(dirs):
        os.makedirs(os.path.join(root, "small", f"d{d:04d}"), exist_ok=True)
    for i in range(small):
        n = rng.randint(min(256, max_size), max_size)
        offset = rng.randint(0, len(blob) - n)
        with open(os.path.join(root, "small", f"d{i % dirs:04d}", f"f{i:06d}"), "wb") as f:
            f.write(blob[offset : offset + n])
    os.makedirs(os.path.join(root, "large"), exist_ok=True)
    for i in range(large):
        with open(os.path.join(root, "large", f"big{i}"), "wb") as f:
            for _ in range(large_mb):
                f.write(os.urandom(MiB))
    sparse = os.path.join(root, "large", "sparse")
    with open(sparse, "wb") as f:
        f.truncate(512 * MiB)
        f.seek(100 * MiB)
        f.write(blob)
    os.symlink("large/big0", os.path.join(root, "link"))
    os.link(os.path.join(root, "large", "big0"), os.path.join(root, "hardlink"))


if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv:
        sys.exit(__doc__)
    make_corpus(argv[0], *(int(x) for x in argv[1:]))
