"""Retrieval quality on the real myntra-a sample: pretrained vs fine-tuned encoder vs colour histogram.

    python -m benchmarks.bench_index_quality [--holdout 0.3] [--epochs 12] [--limit 0]

Every item is a query (its own entry excluded); we report precision@10 of the neighbours that
share its category, its colour, and both. The fine-tuned encoder is trained with
``train-encoder`` on a hash split of the catalog (``--holdout`` of the items never seen in
training); the honest comparison is on the held-out items (queries and gallery both held out).
Numbers on the whole catalog are given too, but there the fine-tuned encoder has seen 70% of
the items and their labels.

myntra-a has no schema.json: the schema is inferred (``catalog.infer_schema``, values seen at
least ``--min-count`` times) into a temp folder; rows with rarer values are skipped (counted).
Writes ``benchmarks/results/bench_index_quality.json``.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    from benchmarks.bench_index_common import MYNTRA, machine, write_result
except ImportError:  # run as a script
    from bench_index_common import MYNTRA, machine, write_result

GROUPS = ["category", "color", "gender", "usage", "pattern"]


def colour_histogram(paths: list[str], bins: int = 8, size: int = 64) -> np.ndarray:
    """Joint RGB histogram of the garment pixels (near-white background masked), Hellinger-mapped."""
    from PIL import Image

    out = np.zeros((len(paths), bins**3), np.float32)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.int32)
        px = a.reshape(-1, 3)
        fg = px[(px < 235).any(1)]
        if len(fg) < 16:
            fg = px
        q = fg * bins // 256
        h = np.bincount(q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2], minlength=bins**3).astype(np.float32)
        h = np.sqrt(h / h.sum())
        out[i] = h / max(np.linalg.norm(h), 1e-12)
    return out


def precision_at_10(vectors: np.ndarray, labels: dict[str, np.ndarray], k: int = 10) -> dict:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    cat, col = labels["category"], labels["color"]
    same_cat = cat[top] == cat[:, None]
    same_col = col[top] == col[:, None]
    return {"p10_category": round(float(same_cat.mean()), 4), "p10_color": round(float(same_col.mean()), 4),
            "p10_both": round(float((same_cat & same_col).mean()), 4), "queries": len(vectors)}


def embed(encoder, catalog, work: Path, batch_size: int, workers: int) -> tuple[np.ndarray, float]:
    from indexing.embed import embed_paths
    from indexing.engines import EngineConfig

    ids = [it.id for it in catalog.items]
    paths = [str(catalog.image_path(it)) for it in catalog.items]
    t = time.perf_counter()
    v = embed_paths(encoder, ids, paths, work, "local", EngineConfig(batch_size=batch_size, num_workers=workers))
    return v, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", type=Path, default=MYNTRA)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=128, help="input size of both compared encoders")
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N items (0 = all)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--with-224", action="store_true", help="also the built-in encoder at its native 224 px")
    ap.add_argument("--train-stages", type=int, default=1, help="trailing trunk stages fine-tuned")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from catalog import Schema, infer_schema, load_catalog
    from indexing.encoder import Encoder, EncoderConfig
    from indexing.train_encoder import TrainConfig, cache_prefix, frozen_stop, holdout_split, train_encoder

    if not (args.catalog / "catalog.csv").is_file():
        raise SystemExit(f"myntra-a not found at {args.catalog}")
    with open(args.catalog / "catalog.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    schema, _ = infer_schema(rows, GROUPS, min_count=args.min_count)
    tmp = Path(tempfile.mkdtemp(prefix="bench_quality_"))
    schema.save(tmp / "schema.json")
    catalog = load_catalog(args.catalog, schema=Schema.load(tmp / "schema.json"), check_images=False)
    if args.limit:
        catalog.items = catalog.items[: args.limit]
    ids = [it.id for it in catalog.items]
    labels = {g: np.array([it.labels.get(g) or "" for it in catalog.items]) for g in ("category", "color")}
    train_idx, test_idx = holdout_split(ids, args.holdout, seed=0)
    result: dict = {
        "benchmark": "bench_index_quality", "machine": machine(), "catalog": str(args.catalog),
        "items": len(ids), "rows_skipped": len(catalog.issues), "schema_min_count": args.min_count,
        "train_items": int(len(train_idx)), "heldout_items": int(len(test_idx)), "methods": {},
    }
    print(f"{len(ids)} items ({len(catalog.issues)} rows skipped), train {len(train_idx)}, held out {len(test_idx)}")

    def record(name: str, vectors: np.ndarray, seconds: float, note: str = "") -> None:
        entry = {"heldout": precision_at_10(vectors[test_idx], {k: v[test_idx] for k, v in labels.items()}),
                 "all_items": precision_at_10(vectors, labels), "dim": int(vectors.shape[1]),
                 "embed_s": round(seconds, 1), "images_per_s": round(len(vectors) / max(seconds, 1e-9), 1)}
        if note:
            entry["note"] = note
        result["methods"][name] = entry
        print(name, entry["heldout"], "| all:", entry["all_items"])
        write_result("bench_index_quality", result)

    paths = [str(catalog.image_path(it)) for it in catalog.items]
    t = time.perf_counter()
    record("colour_histogram", colour_histogram(paths), time.perf_counter() - t, "8x8x8 RGB, background masked")

    # The frozen trunk prefix is shared by the pretrained encoder and the fine-tuned one (same
    # weights, same input size): compute it once for every item, train on the training rows,
    # and embed everything from it. Checked against end-to-end embedding below.
    pre_small = Encoder.builtin(EncoderConfig(image_size=args.image_size), device="cpu")
    stop = frozen_stop(pre_small, args.train_stages)
    ft_cfg = TrainConfig(groups=GROUPS, metric_groups=["category", "color"], image_size=args.image_size,
                         train_stages=args.train_stages, epochs=args.epochs, holdout=args.holdout, seed=0,
                         batch_size=args.batch_size, num_workers=args.workers, device="cpu", flip_augment=False)
    t = time.perf_counter()
    prefix = cache_prefix(pre_small, paths, ids, stop, ft_cfg)
    t_prefix = time.perf_counter() - t
    result["frozen_prefix"] = {"stages_frozen": stop, "of": len(pre_small.trunk.stages), "seconds": round(t_prefix, 1),
                               "images_per_s": round(len(ids) / t_prefix, 1), "shape": list(prefix.shape[1:])}

    t = time.perf_counter()
    ft_dir = tmp / "encoder_ft"
    _, report = train_encoder(catalog, ft_dir, ft_cfg, prefix=prefix)
    result["finetune"] = {k: report[k] for k in ("train_items", "heldout_items", "train_s", "gem_p",
                                                 "groups", "metric_groups", "frozen_stages", "trained_stages")}
    result["finetune"]["wall_s"] = round(time.perf_counter() - t, 1)
    result["finetune"]["epochs"] = args.epochs
    result["finetune"]["first_epoch"] = report["history"][0]
    result["finetune"]["last_epoch"] = report["history"][-1]
    ft = Encoder.load(ft_dir, "cpu")

    def from_prefix(encoder) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([encoder(prefix[a : a + 256].float(), start_stage=stop).numpy()
                                   for a in range(0, len(prefix), 256)])

    check = {}
    for name, enc in (("pretrained", pre_small), ("finetuned", ft)):
        v = from_prefix(enc)
        ims = [Image.open(p) for p in paths[:32]]
        full = enc.embed_images(ims)
        check[name] = float(np.abs(full - v[:32]).max())
        assert check[name] < 2e-2, f"shared-prefix shortcut differs from end-to-end embedding: {check[name]}"
        record(f"{name}_{args.image_size}", v, t_prefix,
               "trained on the train split only; all_items includes training items" if name == "finetuned"
               else "ImageNet EfficientNet-Lite0 (built-in), GeM, same input size as fine-tuned")
    result["shortcut_max_abs_diff_vs_end_to_end"] = check
    write_result("bench_index_quality", result)
    if args.with_224:
        pre = Encoder.builtin(device="cpu")
        v, s = embed(pre, catalog, tmp / "shards_pre", args.batch_size, args.workers)
        record("pretrained_224", v, s, "the default built-in encoder at its native input size")
    print(f"results in benchmarks/results/bench_index_quality.json (work dir {tmp})")


if __name__ == "__main__":
    main()
