#!/usr/bin/env python3
"""`make demo`: dump a sample tree to a file, restore it into a new folder, compare the two.

Runs the installed `ndmptools` command exactly as a user would, from the virtual
environment this script runs in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

BIN = os.path.dirname(sys.executable)


def build_sample_tree(root: str) -> None:
    """A small tree with the kinds of entry a backup must keep."""
    os.makedirs(os.path.join(root, "docs", "drafts"))
    os.makedirs(os.path.join(root, "empty-folder"))
    with open(os.path.join(root, "docs", "readme.txt"), "w") as f:
        f.write("ndmptools demo: every entry below must come back exactly as it was.\n")
    with open(os.path.join(root, "docs", "drafts", "report.bin"), "wb") as f:
        f.write(os.urandom(300_000))
    with open(os.path.join(root, "disk-image.sparse"), "wb") as f:  # 64 MiB, 8 KiB of it data
        f.truncate(64 << 20)
        f.seek(40 << 20)
        f.write(os.urandom(8192))
    with open(os.path.join(root, "run.sh"), "w") as f:
        f.write("#!/bin/sh\necho hello\n")
    os.chmod(os.path.join(root, "run.sh"), 0o755)
    os.chmod(os.path.join(root, "docs", "drafts"), 0o700)
    os.symlink("docs/readme.txt", os.path.join(root, "readme-link"))
    os.link(os.path.join(root, "docs", "readme.txt"), os.path.join(root, "readme-hardlink"))
    os.mkfifo(os.path.join(root, "a-fifo"))
    os.utime(
        os.path.join(root, "docs", "readme.txt"), ns=(1_600_000_000_123_456_789, 1_600_000_000_987_654_321)
    )


STATE = ["--state-dir"]  # the demo keeps its dump history to itself, never in /var/lib/ndmptools


def run(*args: str) -> None:
    print("$ ndmptools", " ".join(args), flush=True)
    subprocess.run([os.path.join(BIN, "ndmptools"), *STATE, *args], check=True)


def main() -> int:
    base = sys.argv[1] if len(sys.argv) > 1 else "demo"
    shutil.rmtree(base, ignore_errors=True)
    source, image, restored = (os.path.join(base, n) for n in ("source", "source.dump", "restored"))
    build_sample_tree(source)
    STATE.append(os.path.join(base, "state"))
    run("dump", "-level", "0", "-f", image, source)
    run("restore", "-f", image, "-D", restored)
    run("restore", "-t", "-f", image)
    print("$ compare", source, restored, flush=True)
    return subprocess.run([sys.executable, "-m", "ndmptools.engine.treediff", source, restored]).returncode


if __name__ == "__main__":
    sys.exit(main())
