"""hypothesis: random trees round-trip; damaged images give a clean error or a correct partial restore."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndmptools.engine.dump import run_dump
from ndmptools.engine.options import DumpOptions, ListOptions, RestoreOptions
from ndmptools.engine.progress import RunContext
from ndmptools.engine.restore import run_list, run_restore
from ndmptools.engine.treediff import compare_trees
from ndmptools.errors import NdmpToolsError
from ndmptools.format.reader import DumpReader
from ndmptools.media import open_path
from tests.trees import build_tree_from_spec

pytestmark = pytest.mark.root

name_chars = st.sampled_from([*"abcXYZ019 -_.é名", "\\", "'", '"', "*"])
names = st.text(name_chars, min_size=1, max_size=24).filter(lambda n: n not in (".", ".."))
times = st.tuples(st.integers(0, 4_000_000_000 * 10**9), st.integers(0, 4_000_000_000 * 10**9))
modes = st.sampled_from([0o644, 0o600, 0o755, 0o4755, 0o2750, 0o000, 0o777])
contents = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=1000, max_size=5000),
    st.builds(lambda n, b: b * n, st.integers(1, 300), st.binary(min_size=1000, max_size=1000)),
)
leaves = st.one_of(
    contents,
    st.builds(lambda d, m, t: ("file", d, m, t), contents, modes, times),
    st.builds(
        lambda t: ("link", t), st.text(name_chars, min_size=1, max_size=300).filter(lambda t: "\0" not in t)
    ),
    st.builds(
        lambda size, off, d: ("sparse", size, min(off, size), d),
        st.integers(0, 3 << 20),
        st.integers(0, 3 << 20),
        st.binary(min_size=1, max_size=100),
    ),
)
trees = st.recursive(
    st.dictionaries(names, leaves, max_size=6),
    lambda children: st.dictionaries(names, st.one_of(leaves, children), max_size=6),
    max_leaves=40,
)


def _with_hard_links(spec: dict, choices) -> dict:
    """Turn some files into second names of an earlier file of the same directory."""
    out, files = {}, []
    for name, value in spec.items():
        if isinstance(value, dict):
            out[name] = _with_hard_links(value, choices)
        elif isinstance(value, bytes) and files and choices.draw(st.booleans()):
            out[name] = ("hard", choices.draw(st.sampled_from(files)))
        else:
            out[name] = value
            if isinstance(value, bytes):
                files.append(name)
    return out


def _dump(tree: str, image: str, blocking_factor: int = 10) -> None:
    run = RunContext()
    run_dump(
        DumpOptions(path=tree, file=image, blocking_factor=blocking_factor),
        lambda: open_path(image, "w"),
        run,
    )
    assert run.stats.warnings == []


def _restore(image: str, target: str) -> RunContext:
    run = RunContext()
    with open_path(image, "r") as medium:
        run_restore(RestoreOptions(file=image, target=target), medium, run)
    return run


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=trees, choices=st.data(), blocking_factor=st.sampled_from([4, 10, 64, 256]))
def test_random_trees_round_trip(spec, choices, blocking_factor):
    spec = _with_hard_links(spec, choices)
    with tempfile.TemporaryDirectory() as work:
        tree, image, target = (os.path.join(work, n) for n in ("tree", "image", "target"))
        build_tree_from_spec(tree, spec)
        _dump(tree, image, blocking_factor)
        run = _restore(image, target)
        assert run.stats.warnings == []
        _, problems = compare_trees(tree, target)
        assert not problems, problems[:20]


# -- damaged images ------------------------------------------------------------------------

FUZZ_SPEC = {
    "top.txt": b"top level\n",
    "big": bytes(range(256)) * 600,
    "sparse": ("sparse", 600_000, 300_000, b"island"),
    "link": ("link", "top.txt"),
    "hard-1": b"shared",
    "hard-2": ("hard", "hard-1"),
    "d1": {"a": b"a" * 3000, "b": b"b" * 10, "d2": {"c": b"c" * 7000, "e": b"", "l": ("link", "../a")}},
    "d3": {f"f{i:02d}": bytes([i]) * (i * 97) for i in range(30)},
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A valid image, the tree it came from, and for every path the byte ranges it depends on."""
    base = tmp_path_factory.mktemp("fuzz")
    tree, image = str(base / "tree"), str(base / "image")
    build_tree_from_spec(tree, FUZZ_SPEC)
    _dump(tree, image)
    spans: dict[int, list[tuple[int, int]]] = {}
    with open_path(image, "r") as medium:
        reader = DumpReader(medium, lambda _m: None)
        reader.read_volume_start()
        prelude_end = reader.blocks.offset
        header = reader.next_inode()
        while header is not None:
            start = reader.last_offset
            reader.skip_data(header)
            reader.read_attributes(header.inumber)
            spans.setdefault(header.inumber, []).append((start, reader.blocks.offset))
            header = reader.next_inode()
    entries = []
    with open_path(image, "r") as medium:
        run_list(ListOptions(file=image), medium, RunContext(), entries.append)
    inode_of = {e.path: e.inode for e in entries}
    with open(image, "rb") as f:
        return Pristine(tree, f.read(), spans, inode_of, prelude_end)


class Pristine(tuple):
    def __new__(cls, *fields):
        return super().__new__(cls, fields)

    def __repr__(self) -> str:  # hypothesis prints the fixtures of a failing example
        return f"<pristine image of {len(self[1])} bytes>"


def _same_entry(source: str, restored: str) -> list[str]:
    a, b = os.lstat(source), os.lstat(restored)
    problems = []
    if (a.st_mode, a.st_uid, a.st_gid, a.st_size, a.st_mtime_ns) != (
        b.st_mode,
        b.st_uid,
        b.st_gid,
        b.st_size,
        b.st_mtime_ns,
    ):
        problems.append("metadata differs")
    if stat.S_ISLNK(a.st_mode):
        if os.readlink(source) != os.readlink(restored):
            problems.append("link target differs")
    else:
        with open(source, "rb") as fa, open(restored, "rb") as fb:
            if fa.read() != fb.read():
                problems.append("content differs")
    return problems


def _depends_on(path: str, inode_of: dict, spans: dict, prelude_end: int) -> list[tuple[int, int]]:
    """The bytes that decide what ends up at ``path``: its inode and every directory above it."""
    ranges = [(0, prelude_end), *spans[inode_of[path]], *spans[inode_of["."]]]
    parts = path.split("/")
    for depth in range(1, len(parts)):
        ranges.extend(spans[inode_of["/".join(parts[:depth])]])
    return ranges


class Hang(Exception):
    pass


@contextmanager
def _deadline(seconds: int):
    def expire(_signum, _frame):
        raise Hang(f"no answer in {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_images_fail_cleanly_or_restore_correctly(pristine, data):
    tree, image, spans, inode_of, prelude_end = pristine
    damaged = bytearray(image)
    hits = data.draw(st.lists(st.integers(0, len(image) - 1), max_size=6), label="positions")
    for position in hits:
        damaged[position] ^= data.draw(st.integers(1, 255), label="xor")
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(image))), label="truncate at")
    if cut is not None:
        damaged = damaged[:cut]
        hits = [*hits, cut]
    with tempfile.TemporaryDirectory() as work:
        path, target = os.path.join(work, "damaged"), os.path.join(work, "target")
        with open(path, "wb") as f:
            f.write(damaged)
        failed = None
        with _deadline(30):
            try:
                _restore(path, target)
            except NdmpToolsError as err:  # a clean, classified error is a fine answer
                failed = err
        if not os.path.isdir(target):
            assert failed is not None
            return
        for rel in inode_of:
            source = os.path.join(tree, rel)
            if stat.S_ISDIR(os.lstat(source).st_mode):
                continue
            ranges = _depends_on(rel, inode_of, spans, prelude_end)
            if any(
                lo <= hit < hi or (cut is not None and hit == cut and cut < hi)
                for hit in hits
                for lo, hi in ranges
            ):
                continue  # this entry's bytes were damaged: any outcome but a write outside is allowed
            restored = os.path.join(target, rel)
            if not os.path.lexists(restored):
                assert failed is not None, f"{rel} is intact on media but was not restored"
                continue
            problems = _same_entry(source, restored)
            assert not problems, (rel, problems)
        shutil.rmtree(target)
