"""The state database: one SQLite file in WAL mode, with a schema version and migrations.

Every other state/ module works through ``StateDB``. A database written by a
newer ndmptools is opened read-only in spirit: ``newer_schema`` tells callers,
which refuse what depends on it (an incremental's base) instead of guessing.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ndmptools.errors import StateError

DB_NAME = "ndmptools.db"
ENV_STATE_DIR = "NDMPTOOLS_STATE_DIR"

# Each entry brings the schema from version i to i + 1. Never edit one that shipped: add another.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE dumps (
        id INTEGER PRIMARY KEY,
        identity TEXT NOT NULL,          -- the file system: uuid:..., fsid:... or dev:...
        fs_path TEXT NOT NULL,           -- the dumped path inside that file system
        dumped_path TEXT NOT NULL,       -- the absolute path it was dumped from
        level INTEGER NOT NULL,
        dump_date_ns INTEGER NOT NULL,   -- when the tree (or its snapshot) was taken
        base_id INTEGER REFERENCES dumps(id),
        status TEXT NOT NULL,            -- running, completed, failed
        read_only INTEGER NOT NULL,      -- the file system was mounted read-only
        started REAL NOT NULL,
        finished REAL,
        pid INTEGER,
        host TEXT,
        label TEXT,
        blocking_factor INTEGER,
        media TEXT,                      -- JSON: spec, file number, volumes
        counts TEXT,                     -- JSON: inodes, directories, files, bytes ...
        maxino INTEGER
    );
    CREATE INDEX dumps_by_path ON dumps (identity, fs_path, status, dump_date_ns);
    CREATE INDEX dumps_by_date ON dumps (dump_date_ns);
    CREATE TABLE inode_maps (
        dump_id INTEGER PRIMARY KEY REFERENCES dumps(id) ON DELETE CASCADE,
        data BLOB NOT NULL               -- file-system inode -> media inode, compressed
    );
    CREATE TABLE restore_targets (
        target TEXT PRIMARY KEY,         -- the resolved path of the directory restored into
        device INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        first_date INTEGER NOT NULL,     -- c_date of the level 0 the chain started with
        last_date INTEGER NOT NULL,      -- c_date of the last dump applied
        last_level INTEGER NOT NULL,
        last_filesys TEXT,
        symbol_table BLOB NOT NULL,      -- the directories as they are after the last dump
        updated REAL NOT NULL
    );
    """,
    """
    CREATE TABLE contexts (
        id TEXT PRIMARY KEY,             -- a UUID
        host TEXT NOT NULL,
        dump_id INTEGER REFERENCES dumps(id),
        dumped_path TEXT NOT NULL,
        level INTEGER NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        status TEXT NOT NULL,            -- running, interrupted
        reason TEXT,                     -- why it stopped
        spec TEXT NOT NULL,              -- JSON: what rebuilds the dump's stream
        checkpoint TEXT,                 -- JSON: the last checkpoint
        pending TEXT                     -- JSON: a volume begun after it, undone by a restart
    );
    """,
    """
    ALTER TABLE dumps ADD COLUMN is_base INTEGER NOT NULL DEFAULT 1;  -- UPDATE=Y: a possible base
    ALTER TABLE dumps ADD COLUMN file_history INTEGER NOT NULL DEFAULT 0;  -- HIST=Y: entries in the catalog
    CREATE TABLE catalog_names (
        dump_id INTEGER NOT NULL REFERENCES dumps(id) ON DELETE CASCADE,
        path BLOB NOT NULL,              -- relative to the dump's root (b'' is the root), raw bytes
        ino INTEGER NOT NULL,            -- the inode number on media
        PRIMARY KEY (dump_id, path)
    ) WITHOUT ROWID;
    CREATE TABLE catalog_inodes (
        dump_id INTEGER NOT NULL REFERENCES dumps(id) ON DELETE CASCADE,
        ino INTEGER NOT NULL,
        mode INTEGER NOT NULL,           -- type and permission bits
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        tapea INTEGER NOT NULL,          -- c_tapea of its first header: where it is in the stream
        PRIMARY KEY (dump_id, ino)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE restore_marks (
        dump_id INTEGER NOT NULL REFERENCES dumps(id) ON DELETE CASCADE,
        fs_inode INTEGER NOT NULL,       -- the file's inode number (signed 64 bits), stable along a chain
        path BLOB NOT NULL,              -- relative to the dump's root, raw bytes
        state TEXT NOT NULL,             -- skipped (under a running restore), or included (on media again)
        mark TEXT,                       -- the restore mark of a skipped file
        PRIMARY KEY (dump_id, fs_inode)
    ) WITHOUT ROWID;
    """,
    # The file history as the dump has it already: directories as their blocks, other inodes packed
    # in batches. The rows of the old tables are not carried over: those dumps have no history now.
    """
    DROP TABLE catalog_names;
    DROP TABLE catalog_inodes;
    UPDATE dumps SET file_history = 0;
    CREATE TABLE catalog_dirs (
        dump_id INTEGER NOT NULL REFERENCES dumps(id) ON DELETE CASCADE,
        path BLOB NOT NULL,              -- relative to the dump's root (b'' is the root), raw bytes
        ino INTEGER NOT NULL,            -- the directory's inode number on media
        mode INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        tapea INTEGER NOT NULL,          -- c_tapea of its first header: where it is in the stream
        blocks INTEGER NOT NULL,         -- its data blocks (1 KiB) on media
        entries BLOB NOT NULL,           -- its entries as on media (BSD struct direct), less trailing zeros
        PRIMARY KEY (dump_id, path)
    );
    CREATE TABLE catalog_inodes (
        dump_id INTEGER NOT NULL REFERENCES dumps(id) ON DELETE CASCADE,
        first_ino INTEGER NOT NULL,      -- the batch holds inodes first_ino..last_ino of the dump, ascending
        last_ino INTEGER NOT NULL,
        inodes BLOB NOT NULL,            -- ino, mode, size, mtime_ns, tapea, blocks of each: fixed-width rows
        PRIMARY KEY (dump_id, first_ino)
    );
    """,
    # The birth time, chattr flags and owner of each entry, for `restore -t --catalog --long`. Inode
    # batches carry them in new layouts (N, W) and keep the old ones (n, w) readable: no data moves.
    """
    ALTER TABLE catalog_dirs ADD COLUMN birth_ns INTEGER;  -- creation time, NULL where there is none
    ALTER TABLE catalog_dirs ADD COLUMN flags INTEGER;     -- chattr flags, NULL in rows from before
    ALTER TABLE catalog_dirs ADD COLUMN uid INTEGER;
    ALTER TABLE catalog_dirs ADD COLUMN gid INTEGER;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def default_state_dir() -> str:
    """$NDMPTOOLS_STATE_DIR, else /var/lib/ndmptools for root, else $XDG_STATE_HOME/ndmptools."""
    if os.environ.get(ENV_STATE_DIR):
        return os.environ[ENV_STATE_DIR]
    if os.geteuid() == 0:
        return "/var/lib/ndmptools"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "ndmptools")


class StateDB:
    """The open state database of one state directory."""

    BUSY_TIMEOUT_SECONDS = 30

    def __init__(self, state_dir: str | None = None) -> None:
        self.state_dir = state_dir or default_state_dir()
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        except OSError as err:
            raise StateError(f"cannot use the state directory {self.state_dir}: {err.strerror}") from None
        self.path = os.path.join(self.state_dir, DB_NAME)
        # Two processes opening a new database at once: the switch to WAL can answer "locked"
        # without waiting for the other, so the opening is tried again for a while.
        for attempt in range(20):
            try:
                wait = self.BUSY_TIMEOUT_SECONDS
                self.conn = sqlite3.connect(self.path, timeout=wait, isolation_level=None)
                self.conn.row_factory = sqlite3.Row
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.version = self._migrate()
                break
            except sqlite3.OperationalError as err:
                self.conn.close()
                if "locked" not in str(err) or attempt == 19:
                    raise StateError(f"cannot use the dump history in {self.path}: {err}") from None
                time.sleep(0.05 * (attempt + 1))
            except sqlite3.DatabaseError as err:
                raise StateError(f"cannot use the dump history in {self.path}: {err}") from None

    @property
    def newer_schema(self) -> bool:
        """Written by a newer ndmptools: readable, but nothing may be based on it or added to it."""
        return self.version > SCHEMA_VERSION

    def _stored_version(self) -> int:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):
                return 0  # a new database
            raise
        return int(row[0]) if row else 0

    def _migrate(self) -> int:
        # Read first: a database that needs nothing is opened without a write transaction, so
        # that opening never waits for another process's writes (WAL lets readers through).
        version = self._stored_version()
        if version >= SCHEMA_VERSION:
            return version
        with self.transaction():  # looked at again under the write lock: another may have migrated
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version >= SCHEMA_VERSION:
                return version
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            return SCHEMA_VERSION

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction, taken at once so that concurrent writers wait, not fail."""
        for attempt in range(5):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or attempt == 4:
                    raise StateError(f"the dump history in {self.path} is busy: {err}") from None
                time.sleep(0.2 * (attempt + 1))
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
