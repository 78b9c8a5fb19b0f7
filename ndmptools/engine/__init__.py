"""The dump/restore engine. Nothing below this package imports Click."""
