"""Retrieval quality on the real myntra-a sample: histogram, built-in, old fine-tune, new default, variants.

    python -m benchmarks.bench_index_quality [--holdout 0.3] [--skip-finetune] [--work DIR]

Every held-out item is a query against the other held-out items (queries and gallery both held
out of training, a ``catalog.split`` hash split); we report precision@10 of the neighbours that
share its category, its colour, and both, with training seconds, images/s, bytes/vector and the
single-query embedding time next to the built-in encoder's.

Compared in one run:

- ``colour_histogram``: 8x8x8 RGB histogram of the non-white pixels (no learning);
- ``builtin_224``: the built-in ImageNet EfficientNet-Lite0, GeM of the last stage, 1280-d;
- ``finetune_old_defaults``: ``train-encoder --recipe finetune`` with its defaults (160 px, last 2
  stages trained, 12 epochs, flips) on the training split (slow: ``--skip-finetune`` skips it);
- ``head_default``: ``train-encoder`` with its defaults (the parts head, ``indexing.train_head``);
- the variants tried on the way there (other features, no joint block, metric loss, a look block).

One trunk pass per image at 224 px gives the built-in encoder's vector and every trained
variant's input (``benchmarks.quality_features``, resumable shards in ``--work``); the shortcut
is checked against end-to-end ``Encoder.embed_images`` on a few photos for the built-in and the
default encoders. Training seconds of the head recipe = its head training + the trunk pass over
the training items (measured here as part of the shared pass, per image) + with mirror images
(the default; not in ``head_no_flip``), the trunk pass over the training items' mirror images (a
second resumable pass).

myntra-a has no schema.json: the schema is inferred (``catalog.infer_schema``, values seen at
least ``--min-count`` times); rows with rarer values are skipped (counted).
Writes ``benchmarks/results/bench_index_quality.json``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from dataclasses import replace
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


def label_oracle(labels: dict[str, np.ndarray], k: int = 10) -> dict:
    """What a perfect ranking could reach on these items, from their labels alone.

    Why: half the held-out queries have fewer than ``k`` other held-out items with their
    category *and* colour, so "both" cannot reach 1, and a ranking that keeps category high
    fills the rest with same-category items of other colours. The oracle ranks the items
    that share both first, then those sharing the category, then those sharing the colour.
    """
    cat, col = labels["category"], labels["color"]
    same_cat = cat[:, None] == cat[None, :]
    same_col = col[:, None] == col[None, :]
    np.fill_diagonal(same_cat, False)
    np.fill_diagonal(same_col, False)
    both = np.minimum(k, (same_cat & same_col).sum(1))
    cat_only = np.minimum(k - both, (same_cat & ~same_col).sum(1))
    col_only = np.minimum(k - both - cat_only, (~same_cat & same_col).sum(1))
    return {"p10_both_max": round(float(both.mean() / k), 4),
            "p10_category": round(float((both + cat_only).mean() / k), 4),
            "p10_color": round(float((both + col_only).mean() / k), 4),
            "queries_with_fewer_than_k_both": round(float((both < k).mean()), 4),
            "note": "labels only: items sharing both first, then the category, then the colour"}


def head_input(feats: dict[str, np.ndarray], cfg) -> np.ndarray:
    """What ``Encoder.pooled`` + the head's L2 normalisation give for a head config, from the shared pass."""
    blocks = [feats[f"fg{s}"] for s in cfg.pool_stages] if cfg.foreground else [feats["gem17"]]
    if cfg.colour_bins:
        name = {("rgb", (8, 8, 8)): "rgb888", ("lab", (4, 8, 8)): "lab488"}[(cfg.colour_space, tuple(cfg.colour_bins))]
        blocks.append(feats[name])
    if cfg.colour_stats:
        blocks.append(feats["stats"])
    x = np.concatenate(blocks, axis=1)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    return np.concatenate([x, feats["maps"].astype(np.float32)], axis=1) if cfg.attention else x


def query_ms(encoders: dict, images: list, rounds: int = 3) -> dict[str, float]:
    """Median ms to embed one photo (PIL in, vector out), encoders interleaved so load swings hit all."""
    times: dict[str, list[float]] = {n: [] for n in encoders}
    for enc in encoders.values():
        enc.embed_images(images[:2])  # warm-up
    for _ in range(rounds):
        for im in images:
            for name, enc in encoders.items():
                t = time.perf_counter()
                enc.embed_images([im])
                times[name].append((time.perf_counter() - t) * 1000)
    return {n: round(statistics.median(v), 1) for n, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", type=Path, default=MYNTRA)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N items (0 = all)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_index_quality",
                    help="shared trunk features (resumable) and trained encoders")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--skip-finetune", action="store_true", help="skip the old fine-tuning recipe (slow on CPU)")
    ap.add_argument("--variants", nargs="*", help="only these head variants (default: all)")
    ap.add_argument("--query-images", type=int, default=10, help="photos for the single-query timing")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from benchmarks.quality_features import extract
    from catalog import Schema, infer_schema, load_catalog
    from catalog.split import holdout_split
    from indexing.attention import PIXELS
    from indexing.encoder import Encoder, EncoderConfig
    from indexing.train_head import HeadTrainConfig, train_head_encoder

    torch.set_num_threads(2)
    if not (args.catalog / "catalog.csv").is_file():
        raise SystemExit(f"myntra-a not found at {args.catalog}")
    with open(args.catalog / "catalog.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    schema, _ = infer_schema(rows, GROUPS, min_count=args.min_count)
    args.work.mkdir(parents=True, exist_ok=True)
    schema.save(args.work / "schema.json")
    catalog = load_catalog(args.catalog, schema=Schema.load(args.work / "schema.json"), check_images=False)
    if args.limit:
        catalog.items = catalog.items[: args.limit]
    ids = [it.id for it in catalog.items]
    paths = [str(catalog.image_path(it)) for it in catalog.items]
    labels = {g: np.array([it.labels.get(g) or "" for it in catalog.items]) for g in ("category", "color")}
    train_idx, test_idx = holdout_split(ids, args.holdout, seed=0)
    held = {k: v[test_idx] for k, v in labels.items()}
    result: dict = {
        "benchmark": "bench_index_quality", "machine": machine(), "catalog": str(args.catalog),
        "items": len(ids), "rows_skipped": len(catalog.issues), "schema_min_count": args.min_count,
        "train_items": int(len(train_idx)), "heldout_items": int(len(test_idx)),
        "protocol": "held-out items query the other held-out items; P@10 of same category / colour / both",
        "methods": {},
    }
    print(f"{len(ids)} items ({len(catalog.issues)} rows skipped), train {len(train_idx)}, held out {len(test_idx)}")
    result["label_oracle"] = label_oracle(held)
    print("label oracle (a perfect ranking):", result["label_oracle"])

    def record(name: str, vectors: np.ndarray, **extra) -> None:
        entry = {**precision_at_10(vectors[test_idx], held), "dim": int(vectors.shape[1]),
                 "bytes_per_vector": int(vectors.shape[1]) * 4, **extra}
        result["methods"][name] = entry
        print(f"{name:32s} cat {entry['p10_category']:.3f} colour {entry['p10_color']:.3f} "
              f"both {entry['p10_both']:.3f}  {extra}", flush=True)
        write_result("bench_index_quality", result)

    t = time.perf_counter()
    hist = colour_histogram(paths)
    s = time.perf_counter() - t
    record("colour_histogram", hist, train_s=0.0, images_per_s=round(len(ids) / s, 1),
           note="8x8x8 RGB of the non-white pixels, no learning")

    feats, pass_s = extract(ids, paths, args.work / "features", workers=args.workers)
    per_image = pass_s / len(ids)
    result["trunk_pass"] = {"seconds": round(pass_s, 1), "images_per_s": round(len(ids) / pass_s, 1),
                            "note": "one 224 px trunk pass giving every method's input (sum over its shards)"}

    builtin = Encoder.builtin(EncoderConfig(image_size=224), device="cpu")
    check_ims = [Image.open(p).convert("RGB") for p in paths[:16]]
    diff = float(np.abs(builtin.embed_images(check_ims) - feats["gem17"][:16]).max())
    assert diff < 2e-3, f"shared-pass shortcut differs from the built-in encoder end to end: {diff}"
    record("builtin_224", feats["gem17"], train_s=0.0,
           images_per_s=result["trunk_pass"]["images_per_s"], note="ImageNet EfficientNet-Lite0, GeM, 224 px")

    mirror: dict = {}

    def mirrored_features() -> tuple[dict[str, np.ndarray], float]:
        """The training items' mirror images (the default; ``--no-flip`` skips them), one more resumable pass."""
        if not mirror:
            got, secs = extract([ids[i] for i in train_idx], [paths[i] for i in train_idx],
                                args.work / "features_mirrored", workers=args.workers, mirror=True)
            mirror.update(features=got, seconds=secs)
            result["trunk_pass_mirrored"] = {"seconds": round(secs, 1), "images_per_s": round(len(train_idx) / secs, 1),
                                             "note": "the training items' mirror images (the default recipe)"}
        return mirror["features"], mirror["seconds"]

    def head_run(name: str, cfg: HeadTrainConfig, note: str) -> Encoder:
        x = head_input(feats, cfg)
        xm, mirror_s = None, 0.0
        if cfg.flip_augment:
            got, mirror_s = mirrored_features()
            xm = np.zeros_like(x)
            xm[train_idx] = head_input(got, cfg)
        enc, report = train_head_encoder(catalog, args.work / "encoders" / name, cfg, features=x, mirrored=xm)
        cache_s = round(per_image * len(train_idx) + mirror_s, 1)
        with torch.inference_mode():
            v = np.concatenate([enc.proj(torch.from_numpy(x[a : a + 256])).numpy() for a in range(0, len(x), 256)])
        record(name, v, train_s=round(report["train_s"] + cache_s, 1), head_train_s=report["train_s"],
               trunk_pass_train_items_s=cache_s, images_per_s=result["trunk_pass"]["images_per_s"],
               blocks={p["name"]: p["weight"] for p in report["parts"]},
               temperature=report["parts"][0].get("temperature"),
               validation_mean_p10=report["validation_mean_p10"], note=note)
        return enc

    base = HeadTrainConfig(holdout=args.holdout, device="cpu")
    default = head_run("head_default", base, "train-encoder defaults: parts head (category and colour blocks), "
                                             "fitted on the training photos and their mirror images")
    x_check = head_input(feats, base)[:16]
    with torch.inference_mode():
        batch = torch.stack([default.preprocess(im) for im in check_ims]).contiguous(memory_format=torch.channels_last)
        pooled = default.pooled(batch)
        glob_part = torch.nn.functional.normalize(pooled[:, : default.feat_dim], dim=1).numpy()
        maps_part = pooled[:, default.feat_dim :].numpy()
        head_diff = float(np.abs(default.embed_images(check_ims) - default.proj(torch.from_numpy(x_check)).numpy()).max())
    diff = float(np.abs(glob_part - x_check[:, : default.feat_dim]).max())
    # the head's input standardisation (1 / (std + 1e-3)) amplifies float noise of near-constant
    # dimensions, so the check is on the head's input; the output difference is recorded
    assert diff < 1e-2, f"shared-pass shortcut differs from the default encoder's pooled features: {diff}"
    # the maps are cached as float16; a pixel on a histogram bin's edge may land in the next bin
    bins = slice(-PIXELS * PIXELS, None)
    bin_mismatch = float((np.abs(maps_part[:, bins] - x_check[:, default.feat_dim :][:, bins]) > 0.5).mean())
    maps_diff = float(np.abs(maps_part[:, :-PIXELS * PIXELS] - x_check[:, default.feat_dim : -PIXELS * PIXELS]).max())
    assert bin_mismatch < 0.01 and maps_diff < 0.1, f"cached maps differ: {maps_diff}, bins {bin_mismatch:.3%}"
    result["shortcut_head_output_max_abs_diff"] = round(head_diff, 6)
    result["shortcut_max_abs_diff"] = round(diff, 6)
    result["shortcut_maps"] = {"max_abs_diff": round(maps_diff, 5), "histogram_bins_differing": round(bin_mismatch, 5)}

    # the earlier defaults, without mirror images: the variants below were measured against them
    no_flip = replace(base, flip_augment=False)
    glob = replace(no_flip, attention=0)  # globally pooled features only
    # raw features, no head
    record("raw_multistage_rgbhist", head_input(feats, glob), train_s=0.0,
           note="the default head's input itself (fg-GeM stages 5,11,16,17 + RGB hist), no learning")
    variants = {
        "head_no_flip": (no_flip, "--no-flip: the final fit reads the training photos alone (the previous defaults)"),
        "head_no_attention": (glob, "no mirror images, and the same head on globally pooled features only"),
        "head_attention4": (replace(no_flip, attention=4), "no mirror images, 4 attention maps per block instead of 2"),
        "head_joint": (replace(glob, joint=True), "+ the joint category*colour block (outer product)"),
        "head_untuned_equal": (replace(glob, tune=False), "all blocks weight 1, temperature 1 (no validation tuning)"),
        "head_metric_loss": (replace(glob, ms_weight=1.0), "+ multi-similarity loss, positives agree on both"),
        "head_look64": (replace(glob, look_dim=64), "+ a 64-d look block trained by the metric loss"),
        "head_lab_hist": (replace(glob, colour_bins=[4, 8, 8], colour_space="lab"), "LAB 4x8x8 histogram"),
        "head_colour_stats": (replace(glob, colour_stats=True), "+ garment L/a/b/chroma quantiles"),
        "head_all_stages": (replace(glob, pool_stages=[3, 5, 8, 11, 16, 17]), "stages 3,5,8,11,16,17"),
        "head_last_stage_plain": (replace(glob, foreground=False, pool_stages=[17]),
                                  "plain GeM of the last stage + RGB hist (no multi-stage, no garment weights)"),
        "head_all_groups": (replace(glob, groups=GROUPS), "a block per schema group (5), joint of the first two"),
    }
    unknown = set(args.variants or []) - set(variants)
    if unknown:
        raise SystemExit(f"--variants: unknown {sorted(unknown)}; choose from {sorted(variants)}")
    for name, (cfg, note) in variants.items():
        if args.variants is None or name in args.variants:
            head_run(name, cfg, note)

    if not args.skip_finetune:
        from indexing.train_encoder import TrainConfig, train_encoder

        t = time.perf_counter()
        ft_dir = args.work / "encoders" / "finetune_old_defaults"
        ft, report = train_encoder(catalog, ft_dir, TrainConfig(groups=GROUPS, metric_groups=["category", "color"],
                                                                 holdout=args.holdout, device="cpu",
                                                                 num_workers=args.workers))
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        v = ft.embed_images([Image.open(paths[i]) for i in test_idx])
        held_s = time.perf_counter() - t
        full = np.zeros((len(ids), v.shape[1]), np.float32)
        full[test_idx] = v
        record("finetune_old_defaults", full, train_s=round(train_s, 1), images_per_s=round(len(test_idx) / held_s, 1),
               note="train-encoder --recipe finetune defaults (160 px, 2 stages, 12 epochs, flips)")

    qims = [Image.open(paths[i]).convert("RGB") for i in test_idx[: args.query_images]]
    # "today's" built-in: the trunk as trained, before inference folded its batch norms
    today = Encoder.builtin(EncoderConfig(image_size=224), device="cpu")
    today.fold_batch_norms = False
    ms = query_ms({"builtin_224": builtin, "head_default": default, "builtin_224_unfolded": today}, qims, rounds=5)
    result["query_ms"] = {**ms, "ratio_head_default_vs_builtin": round(ms["head_default"] / ms["builtin_224"], 3),
                          "ratio_head_default_vs_builtin_unfolded": round(ms["head_default"] / ms["builtin_224_unfolded"], 3),
                          "note": "median ms to embed one photo on CPU, interleaved; every encoder folds its trunk's "
                                  "batch norms at inference, builtin_224_unfolded is the built-in as it ran before"}
    print("query ms", result["query_ms"])
    write_result("bench_index_quality", result)
    print(f"results in benchmarks/results/bench_index_quality.json (work dir {args.work})")


if __name__ == "__main__":
    main()
