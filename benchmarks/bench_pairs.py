"""Model-photo pose selection: thesis K-Means vs BlazePose landmarks, side by side in one run.

    python -m benchmarks.bench_pairs [--products 300] [--seed 7] [--myntra-limit 0|N]

1. Renders a demo catalog (``crawler.demo.render``, ground-truth poses) and runs both methods
   of :mod:`generators.pairs` on it: accuracy of picking the front full-body photo, per-photo
   label confusion (pose), and time per photo.
2. Sanity check of the detector on real photos: runs the pose estimator on the real myntra-a
   sample (no model photos there, but many garments are shown worn) and reports the share of
   photos with a person found, per sub-category (apparel should be high, shoes/watches ~0).

Writes ``benchmarks/results/bench_pairs.json`` with the machine described.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.machine import describe_machine

REPO = Path(__file__).resolve().parents[1]
MYNTRA = REPO.parent / "shared" / "data" / "myntra-a"


def machine() -> dict:
    return describe_machine()


def bench_demo(products: int, seed: int, workdir: Path) -> dict:
    from crawler.demo.render import render_catalog
    from generators.pairs import evaluate_pairs, select_pairs

    cat_dir = workdir / f"demo_{products}_{seed}"
    t0 = time.perf_counter()
    render_catalog(cat_dir, products=products, seed=seed)
    out = {"products": products, "seed": seed, "render_seconds": round(time.perf_counter() - t0, 1), "methods": {}}
    for method in ("kmeans", "pose"):
        res = select_pairs(cat_dir, method, REPO / "models" / "pose", cache_path=None, progress=True)
        rep = evaluate_pairs(res, cat_dir)
        rep.pop("first_errors", None)
        rep["info"] = {k: v for k, v in res.info.items() if k != "cluster_shapes"}
        out["methods"][method] = rep
        print(f"{method}: accuracy {rep['accuracy']:.3f} ({rep['correct']}/{rep['products_with_front_full']}), "
              f"{rep['ms_per_photo']} ms/photo")
    k, p = out["methods"]["kmeans"], out["methods"]["pose"]
    out["pose_vs_kmeans"] = {"accuracy_gain": p["accuracy"] - k["accuracy"],
                             "time_ratio": p["ms_per_photo"] / max(k["ms_per_photo"], 1e-9)}
    return out


def bench_myntra(limit: int | None) -> dict:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from generators.pairs.pose import PoseEstimator

    with open(MYNTRA / "catalog.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if limit:
        # every k-th row: keeps the category mix of the whole sample
        step = max(1, len(rows) // limit)
        rows = rows[::step][:limit]
    est = PoseEstimator(REPO / "models" / "pose")
    per = defaultdict(lambda: {"photos": 0, "person": 0, "pose_flag": 0, "detector": 0, "full_body": 0})
    t0 = time.perf_counter()
    for r in tqdm(rows, desc="myntra pose", unit="img"):
        with Image.open(MYNTRA / r["img_path"]) as im:
            rgb = np.asarray(im.convert("RGB"))
        pose = est.estimate(rgb)
        key = f"{r['master_category']}/{r['sub_category']}"
        s = per[key]
        s["photos"] += 1
        if pose is not None and pose.detection_score is not None:
            s["detector"] += 1
        s["pose_flag"] += bool(pose is not None and pose.presence >= 0.5)  # landmark model's flag alone
        if pose is not None and pose.presence * pose.plausibility() >= 0.5:  # what generators.pairs uses
            s["person"] += 1
            feet = pose.landmarks[[27, 28], 3].min() >= 0.5 and pose.in_frame([27, 28]).all()
            s["full_body"] += bool(feet)
    seconds = time.perf_counter() - t0
    per_sorted = {k: {**v, "person_rate": round(v["person"] / v["photos"], 3)}
                  for k, v in sorted(per.items(), key=lambda kv: -kv[1]["photos"])}
    tot = {k: sum(v[k] for v in per.values()) for k in ("photos", "person", "pose_flag", "detector", "full_body")}
    return {"photos": tot["photos"], "person_rate": tot["person"] / tot["photos"],
            "pose_flag_rate": tot["pose_flag"] / tot["photos"],
            "detector_rate": tot["detector"] / tot["photos"], "full_body_rate": tot["full_body"] / tot["photos"],
            "ms_per_photo": round(1000 * seconds / tot["photos"], 2), "per_sub_category": per_sorted}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--myntra-limit", type=int, default=0, help="0: every photo; N: an even sample of N")
    ap.add_argument("--skip-myntra", action="store_true")
    ap.add_argument("--only", choices=("demo", "myntra"), default=None,
                    help="run one part and update that part of an existing --out file")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_pairs.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    result = {"benchmark": "bench_pairs", "machine": machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if args.only and args.out.is_file():
        result = {**json.loads(args.out.read_text()), **result}
    # Timings are per photo on a shared machine: the load average says how shared it was.
    result.setdefault("load_average", {})["start_" + (args.only or "all")] = list(os.getloadavg())
    if args.only != "myntra":
        with tempfile.TemporaryDirectory(prefix="bench_pairs_") as tmp:
            result["demo"] = bench_demo(args.products, args.seed, Path(tmp))
    if args.only == "demo":
        pass
    elif not args.skip_myntra and (MYNTRA / "catalog.csv").is_file():
        result["myntra"] = bench_myntra(args.myntra_limit or None)
        m = result["myntra"]
        print(f"myntra: person found in {m['person_rate']:.3f} of {m['photos']} photos, {m['ms_per_photo']} ms/photo")
    else:
        result["myntra"] = {"skipped": f"real sample not present at {MYNTRA}" if not args.skip_myntra else "--skip-myntra"}
    from catalog import atomic_write_text

    result["load_average"]["end_" + (args.only or "all")] = list(os.getloadavg())
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
