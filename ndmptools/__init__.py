"""ndmptools: a dump/restore engine for Linux file systems in the BSD dump format."""

__version__ = "0.1.0"
