"""Levels 0-31, bases and increment chains: pure functions over a path's dump history.

The base of a level-N dump is the most recent earlier dump of the same path
with a lower level. The bases form a tree rooted at level 0s; an increment
chain is a path from a level 0 to a dump that nothing is based on. The
wording of the chain table follows the seed (ONTAP's "increment chains" page)
to the letter.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LEVEL = 31


def choose_bases(levels: list[int]) -> list[int | None]:
    """For each dump in backup order, the index of its base (None for level 0 or no base)."""
    bases: list[int | None] = []
    for i, level in enumerate(levels):
        base = next((j for j in range(i - 1, -1, -1) if levels[j] < level), None)
        bases.append(base)
    return bases


def increment_chains(bases: list[int | None]) -> list[list[int]]:
    """Every chain: the indexes from a root (level 0) down to a dump nothing is based on."""
    based_on = {b for b in bases if b is not None}
    chains = []
    for leaf in range(len(bases)):
        if leaf in based_on:
            continue
        chain = [leaf]
        while bases[chain[-1]] is not None:
            chain.append(bases[chain[-1]])
        chains.append(chain[::-1])
    return chains


@dataclass(frozen=True)
class ChainRow:
    """One row of the seed's table."""

    order: int  # 1-based backup order
    level: int
    chain: str  # "0, 2, 3", "Both" or "All"
    base: str
    files: str


def _levels_phrase(levels: list[int], conjunction: str) -> str:
    names = [f"level-{level}" for level in levels]
    if len(names) <= 2:
        return f" {conjunction} ".join(names)
    return ", ".join(names[:-1]) + f", {conjunction} " + names[-1]


def _distinct(values: list[int]) -> list[int]:
    seen: list[int] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def chain_table(levels: list[int], bases: list[int | None] | None = None) -> list[ChainRow]:
    """The seed's table of bases for dumps of these levels, in backup order."""
    bases = choose_bases(levels) if bases is None else bases
    chains = increment_chains(bases)
    rows = []
    for i, level in enumerate(levels):
        member_of = [c for c in chains if i in c]
        if len(member_of) == 1:
            chain = ", ".join(str(levels[j]) for j in member_of[0])
        elif len(member_of) == len(chains) == 2:
            chain = "Both"
        elif len(member_of) == len(chains):
            chain = "All"
        else:
            chain = "; ".join(", ".join(str(levels[j]) for j in c) for c in member_of)
        base = bases[i]
        if base is None:
            rows.append(
                ChainRow(i + 1, level, chain, "Files on the storage system", "All files in the backup path")
            )
            continue
        base_level = levels[base]
        between = list(range(base + 1, i))  # later than the base: all of a level >= this one
        other_lower = [j for j in range(i) if j != base and levels[j] < level]
        if between:
            base_text = (
                f"Level-{base_level} backup, because this is the most recent level that is lower than "
                f"the level-{level} backup"
            )
            noun = "backups" if len(between) > 1 else "backup"
            files = (
                f"Files in the backup path created since the level-{base_level} backup, including files "
                f"that are in the {_levels_phrase(_distinct([levels[j] for j in between]), 'and')} {noun}"
            )
        elif any(levels[j] > base_level for j in other_lower):
            others = _levels_phrase(_distinct([levels[j] for j in other_lower]), "or")
            base_text = (
                f"The level-{base_level} backup, because it is a lower level and is more recent than "
                f"the {others} backups"
            )
            files = f"Files created since the level-{base_level} backup"
        else:
            base_text = f"Level-{base_level} backup"
            files = f"Files in the backup path created since the level-{base_level} backup"
        rows.append(ChainRow(i + 1, level, chain, base_text, files))
    return rows
