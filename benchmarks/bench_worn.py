"""Worn photos by retrieval: product->model and model->product translations on held-out demo products.

    python -m benchmarks.bench_worn [--products 120] [--seed 0] [--work DIR]
        [--to-model CKPT] [--to-product CKPT] [--old-to-model CKPT] [--old-to-product CKPT] [--grid PNG]

The demo checkpoints were trained on a seed-1 demo catalog, so the seed-0 catalog searched
here holds products they never saw. Every product is a query; Recall@10 of finding the same
product (per item, its best photo), with the built-in encoder (generators.evaluate.worn):

- product->model over the model photos: translated / untranslated product photo / the true
  front model photo with itself left out (ceiling);
- model->product over the product photos: the true front model photo translated /
  untranslated / the true product photo (ceiling).

``--to-product`` and ``--to-model`` default to the garment cut-out (``cutout_demo.pt``: cut the
worn garment out / dress the product on the catalog's mannequin); the previous design, pix2pix
both ways (``experimental/pix2pix_demo64.pt``, ``experimental/pix2pix_m2p_demo64.pt``), is
measured in the same run (``old`` in the JSON; issue 12's pix2pix L1/SSIM target is read there).

Writes ``benchmarks/results/bench_worn.json`` (machine described, targets of issue 12 checked)
and a PNG grid (input | translation | truth), by default ``docs/images/worn_grid.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.machine import REPO, describe_machine, write_result

DEMO = REPO / "generators" / "demo_checkpoints"
TO_MODEL = DEMO / "cutout_demo.pt"
TO_PRODUCT = DEMO / "cutout_demo.pt"
OLD_TO_MODEL = DEMO / "experimental" / "pix2pix_demo64.pt"  # the previous design, measured beside it
OLD_TO_PRODUCT = DEMO / "experimental" / "pix2pix_m2p_demo64.pt"


def targets(report: dict, old: dict | None = None) -> dict:
    """Issue 12's targets, each with the measured value and whether it is met (the pix2pix
    L1/SSIM ones on ``old``, the pix2pix run, when given)."""
    p2m, m2p = report["product_to_model"], report["model_to_product"]
    out = {}
    if "translated" in m2p:
        base = m2p["untranslated_front_model_photo"]
        out["model_to_product_recall_ge_0.75"] = {"value": m2p["translated"], "met": m2p["translated"] >= 0.75}
        out["model_to_product_ge_1.6x_untranslated"] = {"value": m2p["translated_over_untranslated"],
                                                        "met": bool(base) and m2p["translated"] >= 1.6 * base}
    if "translated" in p2m:
        base = p2m["untranslated_product_photo"]
        out["product_to_model_ge_0.9x_untranslated"] = {"value": p2m["translated_over_untranslated"],
                                                        "met": p2m["translated"] >= 0.9 * base}
    pix = (old or {}).get("product_to_model") or p2m
    if "translated" in pix:
        t = pix["to_true_front_photo"]
        out["pix2pix_l1_below_0.084"] = {"value": round(t["l1"]["mean"], 4), "met": t["l1"]["mean"] < 0.084}
        out["pix2pix_ssim_above_0.540"] = {"value": round(t["ssim"]["mean"], 4), "met": t["ssim"]["mean"] > 0.540}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_worn", description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_worn"))
    ap.add_argument("--to-model", type=Path, default=TO_MODEL, help="product->model checkpoint ('' to skip)")
    ap.add_argument("--to-product", type=Path, default=TO_PRODUCT, help="model->product checkpoint ('' to skip)")
    ap.add_argument("--old-to-model", type=Path, default=OLD_TO_MODEL,
                    help="a second product->model checkpoint measured in the same run ('' to skip)")
    ap.add_argument("--old-to-product", type=Path, default=OLD_TO_PRODUCT,
                    help="a second model->product checkpoint measured in the same run ('' to skip)")
    ap.add_argument("--grid", type=Path, default=REPO / "docs" / "images" / "worn_grid.png")
    ap.add_argument("--out", default="bench_worn", help="result name or .json path")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from catalog import load_catalog
    from crawler.demo.render import render_catalog
    from generators.evaluate.worn import worn_search
    from generators.inference import load_editor
    from indexing.encoder import Encoder

    torch.set_num_threads(args.threads)
    catalog_dir = args.work / f"demo_{args.products}_{args.seed}"
    if not (catalog_dir / "catalog.csv").is_file():
        render_catalog(catalog_dir, products=args.products, seed=args.seed, workers=1)
    catalog = load_catalog(catalog_dir)
    t0 = time.perf_counter()
    to_model = load_editor(args.to_model, "cpu") if str(args.to_model) not in ("", ".") else None
    to_product = load_editor(args.to_product, "cpu") if str(args.to_product) not in ("", ".") else None
    report = worn_search(catalog, Encoder.load(None, "cpu"), to_model, to_product, grid_path=args.grid, progress=True,
                         cache=args.work / f"demo_{args.products}_{args.seed}_vectors.npz")
    old = None
    old_paths = {d: p for d, p in (("to_model", args.old_to_model), ("to_product", args.old_to_product))
                 if str(p) not in ("", ".") and Path(p).is_file()}
    if old_paths:
        old_eds = {d: load_editor(p, "cpu") for d, p in old_paths.items()}
        old_report = worn_search(catalog, Encoder.load(None, "cpu"), old_eds.get("to_model"), old_eds.get("to_product"),
                                 grid_path=args.work / "old_grid.png",
                                 cache=args.work / f"demo_{args.products}_{args.seed}_vectors.npz")
        old = {"checkpoints": {d: str(old_paths[d]) if d in old_paths else None for d in ("to_model", "to_product")},
               "product_to_model": old_report["product_to_model"], "model_to_product": old_report["model_to_product"]}
    result = {
        "benchmark": "bench_worn",
        "machine": describe_machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "demo": {"products": args.products, "seed": args.seed, "note": "demo checkpoints trained on seed 1: held out"},
        "checkpoints": {"to_model": str(args.to_model) if to_model else None,
                        "to_product": str(args.to_product) if to_product else None},
        "report": report,
        "old": old,
        "targets": targets(report, old),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_result(args.out, result)
    for name, t in result["targets"].items():
        print(f"{name}: {t['value']} ({'met' if t['met'] else 'NOT met'})")
    rows = [(d, report[d]) for d in ("product_to_model", "model_to_product")]
    if old:
        rows += [("product_to_model (old)", old["product_to_model"]), ("model_to_product (old)", old["model_to_product"])]
    for direction, rep in rows:
        row = "  ".join(f"{n} {v:.3f}" for n, v in rep.items() if isinstance(v, float))
        print(f"{direction} recall@{report['k']}: {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
