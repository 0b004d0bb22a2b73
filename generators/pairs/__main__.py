"""``python -m generators.pairs``: pick product -> model photo pairs for pix2pix."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from generators.pairs import main

    sys.exit(main())
