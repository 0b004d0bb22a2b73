"""``python -m generators.evaluate``: evaluate a generator by its edits and by retrieval."""

import sys

from generators.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
