"""Bases and increment chains, exactly as the seed tabulates them."""

from __future__ import annotations

from ndmptools.engine.levels import chain_table, choose_bases, increment_chains

SEED = [  # ONTAP's "What increment chains are": levels 0, 2, 3, 1, 4
    (1, 0, "Both", "Files on the storage system", "All files in the backup path"),
    (2, 2, "0, 2, 3", "Level-0 backup", "Files in the backup path created since the level-0 backup"),
    (3, 3, "0, 2, 3", "Level-2 backup", "Files in the backup path created since the level-2 backup"),
    (
        4,
        1,
        "0, 1, 4",
        "Level-0 backup, because this is the most recent level that is lower than the level-1 backup",
        "Files in the backup path created since the level-0 backup, including files that are in the level-2 "
        "and level-3 backups",
    ),
    (
        5,
        4,
        "0, 1, 4",
        "The level-1 backup, because it is a lower level and is more recent than the level-0, level-2, or "
        "level-3 backups",
        "Files created since the level-1 backup",
    ),
]


def test_the_seeds_table():
    rows = chain_table([0, 2, 3, 1, 4])
    assert [(r.order, r.level, r.chain, r.base, r.files) for r in rows] == SEED


def test_bases_are_the_most_recent_lower_level():
    assert choose_bases([0, 2, 3, 1, 4]) == [None, 0, 1, 0, 3]
    assert choose_bases([0, 1, 1, 1]) == [None, 0, 0, 0]
    assert choose_bases([0, 1, 2, 1, 2]) == [None, 0, 1, 0, 3]
    assert choose_bases([1, 0, 0, 5, 31]) == [None, None, None, 2, 3]


def test_chains():
    assert increment_chains(choose_bases([0, 2, 3, 1, 4])) == [[0, 1, 2], [0, 3, 4]]
    assert increment_chains(choose_bases([0, 1, 1, 1])) == [[0, 1], [0, 2], [0, 3]]


def test_consecutive_levels_all_base_on_the_one_before():
    rows = chain_table([0, 1, 1, 1])
    assert [r.chain for r in rows] == ["All", "0, 1", "0, 1", "0, 1"]
    assert rows[1].base == "Level-0 backup"
    assert (
        rows[2].base
        == "Level-0 backup, because this is the most recent level that is lower than the level-1 backup"
    )
    assert rows[2].files.endswith("including files that are in the level-1 backup")
    assert rows[3].files.endswith("including files that are in the level-1 backups")


def test_zero_one_two_one_two():
    rows = chain_table([0, 1, 2, 1, 2])
    assert [r.chain for r in rows] == ["Both", "0, 1, 2", "0, 1, 2", "0, 1, 2", "0, 1, 2"]
    assert [r.base for r in rows][1:3] == ["Level-0 backup", "Level-1 backup"]
    assert rows[3].files == (
        "Files in the backup path created since the level-0 backup, including files that "
        "are in the level-1 and level-2 backups"
    )
    assert rows[4].base == "Level-1 backup"
