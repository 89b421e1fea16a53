"""``python -m xailib evaluate ...``: see :mod:`xailib.cli` and the book's page *Running at scale*."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
