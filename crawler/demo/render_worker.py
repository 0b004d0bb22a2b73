"""Worker process of ``render_catalog``: renders every ``step``-th product from ``start``.

Started as ``python -m crawler.demo.render_worker`` (a fresh interpreter, not a fork), so it
inherits no thread pools or locks from the caller and needs no ``__main__`` guard there.
Prints one line per finished product index; the parent turns those into the progress bar.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--products", type=int, required=True)
    ap.add_argument("--start", type=int, required=True)
    ap.add_argument("--step", type=int, required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)

    import cv2

    from crawler.demo.render import render_one

    cv2.setNumThreads(1)  # one process per core already
    for index in range(args.start, args.products, args.step):
        render_one(args.seed, index, args.out, args.size, args.resume)
        print(index, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
