"""Run every benchmark in turn (``make bench``); each writes its JSON to ``benchmarks/results/``.

They run one after another, never side by side, because each compares ratios measured in
one run and a second benchmark on the same two cores would distort them. ``--only`` picks
some by name. Expect well over an hour on a 2-core CPU machine with the default sizes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

BENCHMARKS = [
    "bench_render",
    "bench_crawl",
    "bench_pairs",
    "bench_gan_train",
    "bench_gan_infer",
    "bench_index_throughput",
    "bench_index_quality",
    "bench_colour_reading",  # reads bench_index_quality's work folder
    "bench_index_ann",
    "bench_service",
    "bench_reliability",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or BENCHMARKS:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        print(f"== {name}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
