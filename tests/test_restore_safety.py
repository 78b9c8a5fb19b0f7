"""Restore never creates, follows or writes anything outside its target."""

from __future__ import annotations

import os

import pytest

from tests.craft import DT_DIR, DT_LNK, DT_REG, craft, directory, regular, symlink


def _restore(ndmptools, image: bytes, tmp_path, *paths: str):
    dump = tmp_path / "crafted.dump"
    dump.write_bytes(image)
    target = tmp_path / "target"
    return ndmptools("restore", "-f", str(dump), "-D", str(target), *paths), target


@pytest.fixture
def outside(tmp_path):
    """A directory beside the target that a hostile dump would like to write into."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "precious").write_bytes(b"keep me")
    return path


def _untouched(outside) -> None:
    assert sorted(os.listdir(outside)) == ["precious"]
    assert (outside / "precious").read_bytes() == b"keep me"


@pytest.mark.parametrize("bad_name", [b"..", b".", b"../outside", b"a/b", b"x\0y", b"/abs"])
def test_unsafe_names_are_refused_and_the_rest_restored(bad_name, ndmptools, tmp_path, outside):
    image = craft(
        [
            directory(2, 2, (3, DT_REG, bad_name), (4, DT_REG, b"good"), (5, DT_DIR, b"sub")),
            directory(5, 2, (6, DT_REG, bad_name)),
            regular(3, b"evil"),
            regular(4, b"fine"),
            regular(6, b"evil too"),
        ]
    )
    done, target = _restore(ndmptools, image, tmp_path)
    assert done.returncode == 1, done.stderr  # finished with warnings
    assert b"refused" in done.stderr and b"Traceback" not in done.stderr
    assert (target / "good").read_bytes() == b"fine"
    assert os.listdir(target / "sub") == []
    _untouched(outside)


def test_a_symlink_in_the_dump_is_never_written_through(ndmptools, tmp_path, outside):
    # "escape" is a symlink to the outside; a directory entry of the same name and a file
    # that claims to live under it try to get a write through it.
    image = craft(
        [
            directory(2, 2, (3, DT_LNK, b"escape"), (4, DT_DIR, b"escape"), (6, DT_REG, b"ok")),
            directory(4, 2, (5, DT_REG, b"precious")),
            symlink(3, str(outside).encode()),
            regular(5, b"overwritten!"),
            regular(6, b"ok"),
        ]
    )
    done, target = _restore(ndmptools, image, tmp_path)
    assert done.returncode in (0, 1), done.stderr
    assert b"Traceback" not in done.stderr
    _untouched(outside)
    assert (target / "ok").read_bytes() == b"ok"
    assert b"a second entry of the same name" in done.stderr
    # The first "escape" (the link) is restored as a link; nothing went through it.
    assert os.readlink(target / "escape") == str(outside)


def test_a_symlink_already_in_the_target_is_not_followed(ndmptools, tmp_path, outside):
    image = craft(
        [
            directory(2, 2, (3, DT_DIR, b"data"), (5, DT_REG, b"file")),
            directory(3, 2, (4, DT_REG, b"precious")),
            regular(4, b"overwritten!"),
            regular(5, b"new file"),
        ]
    )
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "data")  # a directory's name, already a link to the outside
    os.symlink(outside / "precious", target / "file")  # a file's name, already a link
    done, target = _restore(ndmptools, image, tmp_path)
    assert b"Traceback" not in done.stderr
    _untouched(outside)
    # A file of the same name is replaced: the links are gone, the dump's entries are there.
    assert (target / "file").read_bytes() == b"new file" and not (target / "file").is_symlink()
    assert (target / "data" / "precious").read_bytes() == b"overwritten!"


def test_a_directory_in_the_target_is_merged_never_replaced(ndmptools, tmp_path):
    image = craft(
        [
            directory(2, 2, (3, DT_DIR, b"merged"), (5, DT_REG, b"was-a-dir")),
            directory(3, 2, (4, DT_REG, b"from-dump")),
            regular(4, b"dump"),
            regular(5, b"a file where a directory is"),
        ]
    )
    target = tmp_path / "target"
    (target / "merged").mkdir(parents=True)
    (target / "merged" / "local").write_bytes(b"local")
    (target / "was-a-dir").mkdir()
    (target / "was-a-dir" / "inside").write_bytes(b"still here")
    done, target = _restore(ndmptools, image, tmp_path)
    assert done.returncode == 1
    assert b"never replaced" in done.stderr
    assert sorted(os.listdir(target / "merged")) == ["from-dump", "local"]
    assert (target / "was-a-dir" / "inside").read_bytes() == b"still here"


def test_an_existing_file_is_overwritten_not_written_through_its_hard_links(ndmptools, tmp_path):
    image = craft([directory(2, 2, (3, DT_REG, b"f")), regular(3, b"restored")])
    target = tmp_path / "target"
    target.mkdir()
    (target / "f").write_bytes(b"old content")
    os.link(target / "f", tmp_path / "other-name")
    done, target = _restore(ndmptools, image, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (target / "f").read_bytes() == b"restored"
    assert (tmp_path / "other-name").read_bytes() == b"old content"


def test_a_directory_linked_twice_is_restored_once(ndmptools, tmp_path):
    # A loop: sub names the root again, and "again" names sub a second time.
    image = craft(
        [
            directory(2, 2, (3, DT_DIR, b"sub")),
            directory(3, 2, (2, DT_DIR, b"loop"), (3, DT_DIR, b"again"), (4, DT_REG, b"f")),
            regular(4, b"x"),
        ]
    )
    done, target = _restore(ndmptools, image, tmp_path)
    assert done.returncode == 1
    assert sorted(os.listdir(target / "sub")) == ["f"]


def test_entries_missing_from_media_are_reported_and_leave_no_empty_file(ndmptools, tmp_path):
    image = craft(
        [
            directory(2, 2, (3, DT_REG, b"here"), (7, DT_REG, b"missing")),
            regular(3, b"x"),
            regular(8, b"unnamed"),
        ]
    )
    done, target = _restore(ndmptools, image, tmp_path)
    assert done.returncode == 1
    assert b"missing: listed in its directory but not on media" in done.stderr
    assert os.listdir(target) == ["here"]
