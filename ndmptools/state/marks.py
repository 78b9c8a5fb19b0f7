"""Files dumps left out because a restore was writing them, and which later dumps must take.

Each row is one file of one dump: ``skipped`` (left out, under a running
restore) or ``included`` (left out by an earlier dump of its chain, on media
in this one). The rows count only once their dump completes.

Which files an incremental must take is a matter of its base chain, not of
the last dump of the path: restoring it means restoring its base chain and
then it. So, walking the chain from its base down to its level 0, the
newest row about a file decides: skipped, and the incremental takes the file
whatever its times; included, and the chain has it already. A dump outside
the chain (a failed one, one taken with UPDATE=N, a sibling at the same
level) changes nothing: taking a file there does not put it into this chain.
"""

from __future__ import annotations

from collections.abc import Iterable

from ndmptools.state.db import StateDB

_SIGN = 1 << 63


def _to_sql(ino: int) -> int:
    """SQLite keeps signed 64-bit integers; an inode number may use all 64 bits."""
    return ino - (1 << 64) if ino >= _SIGN else ino


def _from_sql(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


class RestoreMarkLog:
    """The ``restore_marks`` table of one state database."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def record(self, dump_id: int, files: Iterable[tuple[int, bytes, str, str]]) -> None:
        """(fs inode, path, state, mark) rows of one dump; again for the same file replaces it."""
        rows = [(dump_id, _to_sql(ino), path, state, mark or None) for ino, path, state, mark in files]
        if not rows:
            return
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO restore_marks (dump_id, fs_inode, path, state, mark) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def pending(self, base_id: int) -> dict[int, bytes]:
        """fs inode -> path of the files an incremental on ``base_id`` must take (see the module)."""
        rows = self.db.conn.execute(
            "WITH RECURSIVE chain (id, base_id, depth) AS ("
            "  SELECT id, base_id, 0 FROM dumps WHERE id = ? AND status = 'completed'"
            "  UNION ALL SELECT d.id, d.base_id, chain.depth + 1 FROM dumps d"
            "  JOIN chain ON d.id = chain.base_id WHERE d.status = 'completed'"
            ") SELECT m.fs_inode, m.path, m.state FROM chain JOIN restore_marks m ON m.dump_id = chain.id "
            "ORDER BY chain.depth",
            (base_id,),
        ).fetchall()
        decided: dict[int, tuple[str, bytes]] = {}
        for fs_inode, path, state in rows:
            decided.setdefault(_from_sql(fs_inode), (state, bytes(path)))
        return {ino: path for ino, (state, path) in decided.items() if state == "skipped"}
