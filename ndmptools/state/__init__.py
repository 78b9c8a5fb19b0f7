"""State: the SQLite database of dump history, restore symbol tables (and later contexts, catalog)."""
