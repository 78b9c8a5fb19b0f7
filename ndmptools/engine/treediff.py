"""Compare two trees entry by entry: what a restore must give back.

Content, holes, type, mode, owner, times, symlink targets, device numbers and
the hard-link structure are compared. ``make demo`` uses it to show that a
restore matches its source, and the tests use it as their oracle.

    python -m ndmptools.engine.treediff SOURCE RESTORED
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class CompareRules:
    time_resolution_ns: int = 1  # 1_000 for microsecond media, 1_000_000_000 for Linux dump's
    compare_atime: bool = False  # off unless asked: anything that reads a tree may move atimes
    compare_root: bool = True  # the roots' own mode, owner and times
    compare_holes: bool = True


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """Where a file has data (SEEK_DATA/SEEK_HOLE); the rest are holes."""
    extents = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:
                break
            return [(0, size)]
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        extents.append((start, end))
        offset = end
    return extents


def _walk(root: str) -> dict[str, os.stat_result]:
    found = {"": os.lstat(root)}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for entry in it:
                path = os.path.join(rel, entry.name) if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                found[path] = st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
    return found


def _open_quietly(path: str):
    """Open for reading without moving the file's atime, where the kernel lets us."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOATIME)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    return os.fdopen(fd, "rb")


def _same_content(a: str, b: str, rules: CompareRules) -> str | None:
    with _open_quietly(a) as fa, _open_quietly(b) as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return "content differs"
            if not ca:
                break
        if rules.compare_holes:
            size = os.fstat(fa.fileno()).st_size
            if data_extents(fa.fileno(), size) != data_extents(fb.fileno(), size):
                return "holes differ"
    return None


def compare_trees(a: str, b: str, rules: CompareRules = CompareRules()) -> tuple[int, list[str]]:
    """(entries compared, differences) between tree ``a`` and tree ``b``."""
    left, right = _walk(a), _walk(b)
    problems = []
    for path in sorted(set(left) - set(right)):
        problems.append(f"{path}: only in {a}")
    for path in sorted(set(right) - set(left)):
        problems.append(f"{path}: only in {b}")
    res = rules.time_resolution_ns
    for path in sorted(set(left) & set(right)):
        la, lb = left[path], right[path]
        name = path or "."
        if stat.S_IFMT(la.st_mode) != stat.S_IFMT(lb.st_mode):
            problems.append(f"{name}: type differs")
            continue
        if path == "" and not rules.compare_root:
            continue
        is_link = stat.S_ISLNK(la.st_mode)
        if not is_link and stat.S_IMODE(la.st_mode) != stat.S_IMODE(lb.st_mode):
            problems.append(f"{name}: mode {stat.S_IMODE(la.st_mode):o} != {stat.S_IMODE(lb.st_mode):o}")
        if (la.st_uid, la.st_gid) != (lb.st_uid, lb.st_gid):
            problems.append(f"{name}: owner {la.st_uid}:{la.st_gid} != {lb.st_uid}:{lb.st_gid}")
        if la.st_mtime_ns // res != lb.st_mtime_ns // res:
            problems.append(f"{name}: mtime {la.st_mtime_ns} != {lb.st_mtime_ns}")
        # A symlink's atime moves whenever it is read: never compared.
        if rules.compare_atime and not is_link and la.st_atime_ns // res != lb.st_atime_ns // res:
            problems.append(f"{name}: atime {la.st_atime_ns} != {lb.st_atime_ns}")
        if stat.S_ISREG(la.st_mode):
            if la.st_size != lb.st_size:
                problems.append(f"{name}: size {la.st_size} != {lb.st_size}")
            else:
                why = _same_content(os.path.join(a, path), os.path.join(b, path), rules)
                if why:
                    problems.append(f"{name}: {why}")
        elif is_link:
            if os.readlink(os.path.join(a, path)) != os.readlink(os.path.join(b, path)):
                problems.append(f"{name}: symlink target differs")
        elif (stat.S_ISCHR(la.st_mode) or stat.S_ISBLK(la.st_mode)) and la.st_rdev != lb.st_rdev:
            problems.append(f"{name}: device number differs")
    problems.extend(_compare_links(left, right))
    return len(left), problems


def _compare_links(left: dict[str, os.stat_result], right: dict[str, os.stat_result]) -> list[str]:
    """Paths that share an inode on one side must share one on the other, and only those."""

    def groups(tree: dict[str, os.stat_result]) -> set[frozenset[str]]:
        by_inode: dict[tuple[int, int], set[str]] = {}
        for path, st in tree.items():
            if not stat.S_ISDIR(st.st_mode):
                by_inode.setdefault((st.st_dev, st.st_ino), set()).add(path)
        return {frozenset(paths) for paths in by_inode.values() if len(paths) > 1}

    gl, gr = groups(left), groups(right)
    return [f"hard links differ: {sorted(g)}" for g in sorted(gl ^ gr, key=sorted)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m ndmptools.engine.treediff SOURCE RESTORED", file=sys.stderr)
        return 2
    count, problems = compare_trees(args[0], args[1])
    for line in problems:
        print(line)
    if problems:
        print(f"the trees differ: {len(problems)} differences in {count} entries")
        return 1
    print(
        f"the trees match: {count} entries compared on content, holes, type, mode, owner, "
        "times, link targets and hard links"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
