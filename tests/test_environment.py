"""The NDMP environment variables: what -E NAME=VALUE (and an NDMP DMA) can say, and what each does."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from ndmptools.engine.errors import UsageError
from ndmptools.engine.options import VARIABLES, read_environment, read_ndmp_environment

ROOT = Path(__file__).resolve().parent.parent

SAMPLE_VALUES = {
    "FILESYSTEM": "/srv",
    "LEVEL": "3",
    "HIST": "T",
    "UPDATE": "n",
    "TYPE": "DUMP",
    "BASE_DATE": "0x65000000",
    "EXCLUDE": "*.o,cache",
    "IGNORE_CTIME": "y",
    "NO_ACLS": "Y",
    "DEBUG": "F",
    "VERBOSE": "Y",
    "EXTRACT": "e",
    "FORCE": "Y",
    "DIRECT": "N",
    "EXTRACT_ACL": "N",
    "LIST": "Y",
    "NOWRITE": "Y",
    "RECURSIVE": "N",
    "RECOVER_FULL_PATHS": "N",
    "DUMP_DATE": "1700000000",
}


@pytest.mark.parametrize("command", ["dump", "restore"])
def test_every_variable_reads_and_sets_its_field(command):
    for name, variable in VARIABLES[command].items():
        found = read_environment(command, [f"{name.lower()}={SAMPLE_VALUES[name]}"])
        assert list(found) == [variable.field], name
    found = read_environment(command, [f"{n}={SAMPLE_VALUES[n]}" for n in VARIABLES[command]])
    assert len(found) == len(VARIABLES[command])


def test_values_read_as_they_should():
    env = read_environment("dump", ["BASE_DATE=0x65000000", "EXCLUDE=*.o, cache", "EXCLUDE=tmp/x", "HIST=T"])
    assert env == {"base_date": 0x65000000, "exclude": ("*.o", "cache", "tmp/x"), "file_history": True}
    assert read_environment("restore", ["DUMP_DATE=1700000000"]) == {"dump_date": 1700000000}
    assert read_environment("dump", ["EXCLUDE="]) == {"exclude": ()}  # a DMA's default, sent back


@pytest.mark.parametrize(
    ("command", "pair", "says"),
    [
        ("dump", "TYPE=tar", "TYPE=tar: the value must be dump"),
        ("dump", "BASE_DATE=yesterday", "seconds since 1970"),
        ("dump", "EXCLUDE=/etc", "no leading '/'"),
        ("dump", "EXCLUDE=a/../b", "no '..'"),
        ("dump", "NO_ACLS=maybe", "Y or N"),
        ("dump", "DUMP_DATE=1", "(DUMP_DATE is for restore)"),
        ("restore", "LEVEL=1", "(LEVEL is for dump)"),
        ("restore", "PREFIX=/x", "does not take the environment variable PREFIX"),
    ],
)
def test_bad_names_and_values_are_refused(command, pair, says):
    with pytest.raises(UsageError) as err:
        read_environment(command, [pair])
    assert says in err.value.message


def test_ndmp_environment_logs_what_does_nothing():
    fields, notes = read_ndmp_environment(
        "restore",
        [
            ("HIST", "y"),
            ("TYPE", "dump"),
            ("PREFIX", "/r"),
            ("LEVEL", "0"),
            ("DUMP_DATE", "5"),
            ("FORCE", "Y"),
        ],
    )
    assert fields == {"type": "dump", "dump_date": 5, "force": True}
    assert any(n.startswith("HIST=y has no effect on a recover") for n in notes)
    assert any(n.startswith("LEVEL=0 has no effect on a recover") for n in notes)
    assert any(n.startswith("PREFIX=/r is not an environment variable ndmptools knows") for n in notes)
    fields, notes = read_ndmp_environment("dump", [("HIST", "y"), ("HIST", "n"), ("USER", "x")])
    assert fields == {"file_history": False}
    assert len(notes) == 2
    with pytest.raises(UsageError):
        read_ndmp_environment("dump", [("LEVEL", "40")])


def test_every_name_is_documented():
    doc = (ROOT / "docs" / "ndmp.md").read_text()
    for command, names in VARIABLES.items():
        for name in names:
            assert f"`{name}`" in doc, f"{name} ({command}) is not in docs/ndmp.md"


# -- what each does, through the real command --------------------------------------------------------


class Run:
    def __init__(self, base: Path, ndmptools) -> None:
        self.base = base
        self.state = str(base / "state")
        self.ndmptools = ndmptools

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return self.ndmptools("--state-dir", self.state, *args)

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        done = self(*args)
        assert done.returncode == 0, done.stderr.decode()
        return done

    def json(self, *args: str) -> dict:
        done = self("--json", *args)
        assert done.returncode in (0, 1), done.stderr.decode()
        return json.loads(done.stdout)

    def listing(self, image: str) -> set[str]:
        return {e["path"] for e in self.json("restore", "-t", "-f", image)}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def tree(tmp_path) -> Path:
    t = tmp_path / "tree"
    _write(t / "keep.c", b"int main;\n")
    _write(t / "drop.o", b"object\n")
    _write(t / "cache" / "big", b"x" * 5000)
    _write(t / "sub" / "cache", b"a file named cache\n")
    _write(t / "sub" / "deep" / "file", b"deep\n")
    _write(t / "sub" / "tmp" / "x", b"path pattern\n")
    _write(t / "acl", b"with an ACL\n")
    subprocess.run(["setfacl", "-m", "u:1234:r", str(t / "acl")], check=True)
    os.chmod(t / "sub", 0o750)
    os.chmod(t / "sub" / "deep", 0o700)
    return t


def _has_acl(path: Path) -> bool:
    try:
        os.getxattr(path, "system.posix_acl_access")
        return True
    except OSError:
        return False


@pytest.mark.root
def test_exclude_and_no_acls_on_dump_extract_acl_on_restore(tree, tmp_path, ndmptools):
    run = Run(tmp_path, ndmptools)
    image = str(tmp_path / "x.dump")
    done = run.ok("dump", "-f", image, "-E", "EXCLUDE=*.o,cache", "-E", "EXCLUDE=sub/tmp", str(tree))
    assert b"EXCLUDE left out 4 entries" in done.stderr
    assert run.listing(image) == {".", "sub", "sub/deep", "keep.c", "acl", "sub/deep/file"}

    plain = str(tmp_path / "plain.dump")
    run.ok("dump", "-f", plain, str(tree))
    run.ok("restore", "-f", plain, "-D", str(tmp_path / "r1"), "acl")
    assert _has_acl(tmp_path / "r1" / "acl")
    run.ok("restore", "-f", plain, "-D", str(tmp_path / "r2"), "-E", "EXTRACT_ACL=N", "acl")
    assert not _has_acl(tmp_path / "r2" / "acl")
    assert (tmp_path / "r2" / "acl").read_bytes() == b"with an ACL\n"

    no_acls = str(tmp_path / "noacl.dump")
    run.ok("dump", "-f", no_acls, "-E", "NO_ACLS=Y", str(tree))
    run.ok("restore", "-f", no_acls, "-D", str(tmp_path / "r3"), "acl")
    assert not _has_acl(tmp_path / "r3" / "acl")


@pytest.mark.root
def test_ignore_ctime_and_base_date(tree, tmp_path, ndmptools):
    run = Run(tmp_path, ndmptools)
    level0 = run.json("dump", "-f", str(tmp_path / "l0"), str(tree))
    time.sleep(1.05)
    os.chmod(tree / "keep.c", 0o600)  # ctime only
    _write(tree / "new", b"new\n")
    ignoring = str(tmp_path / "l1-ignoring")
    result = run.json(
        "dump", "-f", ignoring, "-E", f"BASE_DATE={level0['date']}", "-E", "IGNORE_CTIME=Y", str(tree)
    )
    assert (result["level"], result["base_date"]) == (1, level0["date"])
    assert "keep.c" not in run.listing(ignoring) and "new" in run.listing(ignoring)
    both = str(tmp_path / "l1")
    result = run.json("dump", "-f", both, "-E", f"BASE_DATE={level0['date']}", "-E", "LEVEL=4", str(tree))
    assert (result["level"], result["base_date"]) == (4, level0["date"])
    assert {"keep.c", "new"} <= run.listing(both)
    done = run("dump", "-f", str(tmp_path / "no"), "-E", f"BASE_DATE={level0['date'] - 7}", str(tree))
    assert done.returncode != 0 and b"no completed dump of" in done.stderr and b"Traceback" not in done.stderr
    assert not (tmp_path / "no").exists()
    full = run.json("dump", "-f", str(tmp_path / "full"), "-E", "BASE_DATE=0", "-E", "LEVEL=2", str(tree))
    assert full["level"] == 0


@pytest.mark.root
def test_restore_variables(tree, tmp_path, ndmptools):
    run = Run(tmp_path, ndmptools)
    image = str(tmp_path / "x.dump")
    dumped = run.json("dump", "-f", image, str(tree))

    nowrite = tmp_path / "nowrite"
    nowrite.mkdir()
    result = run.json("restore", "-f", image, "-D", str(nowrite), "-E", "NOWRITE=Y")
    assert result["restored"] == 7 and result["not_restored"] == 0
    assert list(nowrite.iterdir()) == []
    # with a PATH and this dump's file history, the read goes by direct access: still whole
    result = run.json("restore", "-f", image, "-D", str(nowrite), "-E", "NOWRITE=Y", "sub/deep/file")
    assert result["direct"] and result["restored"] == 1 and result["not_restored"] == 0
    assert list(nowrite.iterdir()) == []

    flat = tmp_path / "flat"
    run.ok("restore", "-f", image, "-D", str(flat), "-E", "RECURSIVE=N", "sub/deep")
    assert (flat / "sub" / "deep").is_dir() and list((flat / "sub" / "deep").iterdir()) == []
    assert stat.S_IMODE((flat / "sub" / "deep").stat().st_mode) == 0o700

    short = tmp_path / "short"
    run.ok("restore", "-f", image, "-D", str(short), "-E", "RECOVER_FULL_PATHS=N", "sub/deep/file")
    full = tmp_path / "full"
    run.ok("restore", "-f", image, "-D", str(full), "sub/deep/file")
    assert stat.S_IMODE((full / "sub").stat().st_mode) == 0o750  # from the dump
    assert stat.S_IMODE((short / "sub").stat().st_mode) != 0o750  # as mkdir makes it
    assert (short / "sub" / "deep" / "file").read_bytes() == b"deep\n"

    done = run("restore", "-f", image, "-D", str(tmp_path / "wrong"), "-E", f"DUMP_DATE={dumped['date'] + 1}")
    assert done.returncode != 0 and b"not the one of DUMP_DATE=" in done.stderr
    assert not (tmp_path / "wrong").exists()
    run.ok("restore", "-f", image, "-D", str(tmp_path / "right"), "-E", f"DUMP_DATE={dumped['date']}")

    listed = run("restore", "-f", image, "-E", "LIST=Y")
    assert listed.returncode == 0 and b"sub/deep/file" in listed.stdout
