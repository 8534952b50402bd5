"""``python -m zpressor_ns``: the ``zpressor-ns`` command."""

import sys

from zpressor_ns.cli import main

if __name__ == "__main__":
    sys.exit(main())
