"""Demo-catalog render speed: 1,000 products (5 photos each) against the one-minute target.

Runs, in one process and one go so the ratios compare on the same machine state:
  * the full render with all cores (the target: under 60 s for 1,000 products),
  * the same code on one worker for a slice, to show the per-core cost and the pool's scaling,
  * per-view CPU milliseconds (where the time goes).
The machine is shared: the load average before and after is recorded with the numbers.

    .venv/bin/python benchmarks/bench_render.py [--products 1000] [--out benchmarks/results/render.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe_machine  # noqa: E402


def machine() -> dict:
    import cv2

    return describe_machine(opencv=cv2.__version__)


def per_view_cpu_ms(n: int) -> dict[str, float]:
    import cv2

    from crawler.demo.draw import render_views
    from crawler.demo.render import encode_jpeg
    from crawler.demo.spec import VIEWS, make_spec

    cv2.setNumThreads(1)
    totals = dict.fromkeys(VIEWS, 0.0)
    totals["jpeg"] = 0.0
    totals["spec"] = 0.0
    for i in range(n):
        t = time.process_time()
        spec = make_spec(0, i)
        totals["spec"] += time.process_time() - t
        for view in VIEWS:
            t = time.process_time()
            img = render_views(spec, (view,))[view]
            t2 = time.process_time()
            encode_jpeg(img, 90)
            totals[view] += t2 - t
            totals["jpeg"] += time.process_time() - t2
    out = {k: round(1000 * v / n, 2) for k, v in totals.items()}
    out["jpeg"] = round(out["jpeg"] / len(VIEWS), 2)
    return out


def timed_render(out: Path, products: int, workers: int) -> dict:
    from crawler.demo.render import render_catalog

    shutil.rmtree(out, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    children0 = os.times()
    render_catalog(out, products=products, seed=0, workers=workers, progress=True)
    wall = time.perf_counter() - t0
    children1 = os.times()
    cpu = (time.process_time() - c0) + (children1.children_user - children0.children_user) + (
        children1.children_system - children0.children_system)
    files = sum(1 for _ in out.rglob("*.jpg"))
    return {
        "products": products, "workers": workers, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "products_per_s": round(products / wall, 1), "photos_per_s": round(files / wall, 1),
        "projected_1000_products_s": round(1000 * wall / products, 1),
        # what the same work takes when the workers get their cores to themselves
        "projected_1000_products_uncontended_s": round(1000 * cpu / products / min(workers, os.cpu_count() or 1), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=1000)
    ap.add_argument("--single-worker-products", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "render.json")
    args = ap.parse_args()

    result: dict = {"benchmark": "demo catalog render", "target": "1,000 products in < 60 s",
                    "machine": machine(), "load_avg_before": os.getloadavg()}
    tmp = Path(tempfile.mkdtemp(prefix="bench_render_"))
    try:
        full = timed_render(tmp / "all", args.products, os.cpu_count() or 1)
        one = timed_render(tmp / "one", args.single_worker_products, 1)
        result["all_cores"] = full
        result["one_worker"] = one
        result["pool_speedup"] = round(full["products_per_s"] / one["products_per_s"], 2)
        result["meets_target"] = full["projected_1000_products_s"] < 60.0
        result["meets_target_uncontended"] = full["projected_1000_products_uncontended_s"] < 60.0
        result["cpu_ms_per_photo_by_view"] = per_view_cpu_ms(40)
        size = sum(p.stat().st_size for p in (tmp / "all").rglob("*.jpg"))
        result["mean_jpeg_kb"] = round(size / max(1, 5 * args.products) / 1024, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_avg_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
