"""A path's dumps as increment chains: the seed's table, and the plan to restore a date."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ndmptools.engine.fsinfo import describe
from ndmptools.engine.levels import ChainRow, chain_table
from ndmptools.errors import ChainError
from ndmptools.state.catalog import CatalogEntry, FileCatalog
from ndmptools.state.history import DumpRecord, History


@dataclass
class PathHistory:
    path: str
    dumps: list[DumpRecord]  # completed, in backup order
    incomplete: list[DumpRecord]  # running or failed: never bases


def history_of(history: History, path: str) -> PathHistory:
    """The dumps of ``path``: by its file system and the path inside it when it is there."""
    real = os.path.realpath(path)
    fs = describe(real) if os.path.exists(real) else None
    if fs is not None:
        every = history.dumps_of(fs.identity, fs.path_inside(real), completed_only=False)
    else:
        every = [d for d in history.dumps_from(real)]
    return PathHistory(
        real, [d for d in every if d.status == "completed"], [d for d in every if d.status != "completed"]
    )


def table(dumps: list[DumpRecord]) -> list[ChainRow]:
    """The seed's table, from the bases recorded when the dumps were taken."""
    index = {d.id: i for i, d in enumerate(dumps)}
    bases = [index.get(d.base_id) if d.base_id is not None else None for d in dumps]
    return chain_table([d.level for d in dumps], bases)


def when(record: DumpRecord) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.dump_date))


def media_text(record: DumpRecord) -> str:
    media = record.media or {}
    volumes = media.get("volumes") or []
    text = media.get("spec", "?")
    if media.get("file_number", 1) != 1:
        text += f" (dump {media['file_number']})"
    if len(volumes) > 1:
        text += f" + {len(volumes) - 1} more volume{'s' if len(volumes) > 2 else ''}"
    return text


def plan(history: History, path: str, at: float | None = None) -> list[DumpRecord]:
    """The dumps to restore, level 0 first, to get ``path`` as its last dump at or before ``at``."""
    found = history_of(history, path)
    candidates = [d for d in found.dumps if at is None or d.dump_date <= int(at)]  # to the second
    if not candidates:
        moment = (
            "" if at is None else f" at or before {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))}"
        )
        raise ChainError(f"no completed dump of {found.path}{moment}")
    by_id = {d.id: d for d in found.dumps}
    steps = [candidates[-1]]
    while steps[-1].base_id is not None:
        base = by_id.get(steps[-1].base_id) or history.get(steps[-1].base_id)
        if base is None or base.status != "completed":
            raise ChainError(f"the base of the dump of {when(steps[-1])} is missing from the history")
        steps.append(base)
    return steps[::-1]


@dataclass(frozen=True)
class Found:
    """One entry of one dump that ``chain find`` matched."""

    dump: DumpRecord
    entry: CatalogEntry


def find(history: History, pattern: str, path: str) -> tuple[str, list[Found], int]:
    """Entries matching ``pattern`` in the file history of ``path``'s completed dumps.

    Returns the resolved path, the matches (dump by dump, in backup order),
    and how many of the dumps keep no file history (HIST=N) and were not searched.
    """
    real = os.path.realpath(path)
    fs = describe(real) if os.path.exists(real) else None
    if fs is not None:
        dumps = history.dumps_of(fs.identity, fs.path_inside(real), bases_only=False)
    else:
        dumps = history.dumps_from(real, bases_only=False)
    searched = [d for d in dumps if d.file_history]
    by_id = {d.id: d for d in searched}
    catalog = FileCatalog(history.db)
    found = [Found(by_id[i], e) for i, e in catalog.find([d.id for d in searched], pattern)]
    return real, found, len(dumps) - len(searched)


def dump_on_media(history: History, spec: str, file_number: int | None) -> DumpRecord:
    """The most recent completed dump with a file history whose media ``spec`` names (for -t --catalog).

    ``spec`` is what -f took: a file, NAME.tap, vtape:DIR (any of its
    cartridges) or a drive; ``file_number`` the -s N of a tape.
    """
    wanted = _spec_key(spec)
    rows = history.db.conn.execute(
        "SELECT id FROM dumps WHERE status = 'completed' AND file_history ORDER BY dump_date_ns DESC, id DESC"
    ).fetchall()
    for row in rows:
        record = history.get(row["id"])
        volumes = record.media.get("volumes") or [record.media.get("spec", "")]
        if file_number is not None and record.media.get("file_number", 1) != file_number:
            continue
        for volume in volumes:
            key = _spec_key(volume)
            if key == wanted or (wanted.startswith("vtape:") and key.startswith(wanted.rstrip("/") + "/")):
                return record
    raise ChainError(f"no dump with a file history is recorded on {spec}")


def _spec_key(spec: str) -> str:
    if spec.startswith("vtape:"):
        return "vtape:" + os.path.realpath(spec[len("vtape:") :])
    if spec in ("-", "auto") or spec.startswith("/dev/"):
        return spec
    return os.path.realpath(spec)
