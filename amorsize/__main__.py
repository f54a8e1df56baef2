"""`python -m amorsize`: the same command as the `amorsize` console script."""

import sys

from amorsize.cli import main

if __name__ == "__main__":
    sys.exit(main())
