"""Allow ``python -m ndmptools``."""

from ndmptools.cli import main

if __name__ == "__main__":
    main()
