"""What colour reading the encoder targets need: the default head with its misreadings read right.

    python -m benchmarks.bench_colour_reading [--work DIR]

``DIR`` is a ``bench_index_quality`` work folder (by default that bench's own): its shared trunk
features and its trained ``encoders/head_default`` are read, nothing is trained here.

Why: issue 11 asks for P@10 colour >= 0.55 and both >= 0.40 on the held-out myntra-a photos; the
default head reads 0.455 and 0.370, and names the labelled colour of about two thirds of the
held-out photos. Is the gap in how the photos are read, or in what the labels allow? This takes
the head's held-out colour logits and, for a random share ``f`` of the photos it misreads, swaps
the logits of its reading and of the label: the same confidence, read right. P@10 of the whole
embedding (category and colour blocks, the tuned weights and temperature) is then measured as
the quality bench does, averaged over ``--draws`` random choices of the corrected photos. The
result says which colour accuracy each target needs.

It also writes a contact sheet of misread photos (label / reading) so that a person can judge
which misreadings a shopper would call wrong: the share that the photo does not bear out bounds
what any reader could reach on these labels (docs/indexing.md has such a judgement).

Writes ``benchmarks/results/bench_colour_reading.json`` and ``bench_colour_reading.png`` (the sheet shows
the catalog's photos, so it is git-ignored: myntra-a is never committed).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

try:
    from benchmarks.bench_index_common import MYNTRA, RESULTS, machine, write_result
    from benchmarks.bench_index_quality import head_input, precision_at_10
except ImportError:  # run as a script
    from bench_index_common import MYNTRA, RESULTS, machine, write_result
    from bench_index_quality import head_input, precision_at_10

TARGETS = {"p10_category": 0.80, "p10_color": 0.55, "p10_both": 0.40}


def corrected_colour_logits(logits: torch.Tensor, truth: np.ndarray, share: float,
                            rng: np.random.Generator) -> torch.Tensor:
    """``logits`` ``[N, C]`` with ``share`` of the misread rows read right (reading and label swapped).

    Rows whose label is unknown (``truth < 0``) are never counted as misread.
    """
    reading = logits.argmax(1).numpy()
    wrong = np.flatnonzero((reading != truth) & (truth >= 0))
    fixed = rng.choice(wrong, int(round(share * len(wrong))), replace=False)
    out = logits.clone()
    rows = fixed.tolist()
    out[rows, reading[fixed].tolist()] = logits[rows, truth[fixed].tolist()]
    out[rows, truth[fixed].tolist()] = logits[rows, reading[fixed].tolist()]
    return out


def misreading_sheet(paths: list[str], truth: list[str], reading: list[str], category: list[str], out: Path,
                     columns: int = 8, size: int = 180) -> None:
    """A contact sheet: each photo with "label / reading" and its category under it."""
    from PIL import Image, ImageDraw

    rows = -(-len(paths) // columns)
    sheet = Image.new("RGB", (columns * size, rows * (size + 30)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, path in enumerate(paths):
        x0, y0 = (k % columns) * size, (k // columns) * (size + 30)
        sheet.paste(Image.open(path).convert("RGB").resize((size, size)), (x0, y0))
        draw.text((x0 + 3, y0 + size + 2), f"{k}: {truth[k]} / {reading[k]}", fill="black")
        draw.text((x0 + 3, y0 + size + 14), category[k], fill="gray")
    sheet.save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_index_quality",
                    help="a bench_index_quality work folder (default: that bench's default)")
    ap.add_argument("--catalog", type=Path, default=MYNTRA)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--draws", type=int, default=5, help="random choices of the corrected photos per share")
    ap.add_argument("--sheet", type=int, default=48, help="misread photos on the contact sheet")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from benchmarks.quality_features import extract
    from catalog import Schema, load_catalog
    from catalog.split import holdout_split
    from indexing.encoder import Encoder
    from indexing.train_head import HeadTrainConfig

    torch.set_num_threads(2)
    enc_dir = args.work / "encoders" / "head_default"
    if not (args.work / "schema.json").is_file() or not (enc_dir / "encoder.json").is_file():
        raise SystemExit(f"--work {args.work}: no schema.json or encoders/head_default; "
                         "run python -m benchmarks.bench_index_quality --work DIR first")
    catalog = load_catalog(args.catalog, schema=Schema.load(args.work / "schema.json"), check_images=False)
    ids = [it.id for it in catalog.items]
    paths = [str(catalog.image_path(it)) for it in catalog.items]
    _, test_idx = holdout_split(ids, args.holdout, seed=0)
    feats, _ = extract(ids, paths, args.work / "features")
    encoder = Encoder.load(enc_dir, device="cpu")
    head = encoder.proj
    x = torch.from_numpy(np.ascontiguousarray(head_input(feats, HeadTrainConfig())[test_idx], dtype=np.float32))
    with torch.inference_mode():
        raw = {k: torch.cat([head.logits(x[a : a + 256])[k] for a in range(0, len(x), 256)]) for k in head.names}

    names = {g: list(catalog.schema.values(g)) for g in ("category", "color")}
    held = {g: np.array([catalog.items[i].labels.get(g) or "" for i in test_idx]) for g in names}
    truth = np.array([names["color"].index(v) if v in names["color"] else -1 for v in held["color"]])
    reading = raw["color"].argmax(1).numpy()
    accuracy = float((reading == truth).mean())

    def embed(colour_logits) -> np.ndarray:
        with torch.inference_mode():
            return head.combine(head.parts({**raw, "color": colour_logits})).numpy()

    rng = np.random.default_rng(args.seed)
    rows = []
    for share in np.round(np.arange(0, 1.0001, 0.05), 2):
        draws = []
        for _ in range(args.draws if 0 < share < 1 else 1):
            logits = corrected_colour_logits(raw["color"], truth, share, rng)
            draws.append({**precision_at_10(embed(logits), held),
                          "acc": float((logits.argmax(1).numpy() == truth).mean())})
        row = {"share_read_right": float(share), "colour_accuracy": round(float(np.mean([d["acc"] for d in draws])), 4),
               **{k: round(float(np.mean([d[k] for d in draws])), 4) for k in TARGETS}}
        rows.append(row)
        print(f"{share:.2f} of misreadings read right: colour accuracy {row['colour_accuracy']:.3f}  "
              f"cat {row['p10_category']:.3f} colour {row['p10_color']:.3f} both {row['p10_both']:.3f}", flush=True)
    needed = {k: next((r["colour_accuracy"] for r in rows if r[k] >= t), None) for k, t in TARGETS.items()}
    result = {"benchmark": "bench_colour_reading", "machine": machine(), "catalog": str(args.catalog),
              "encoder": encoder.encoder_id, "heldout_items": len(test_idx),
              "colour_accuracy": round(accuracy, 4), "draws": args.draws, "rows": rows,
              "colour_accuracy_needed": needed,
              "note": "P@10 of the default head's embedding with a share of its misread colours read right "
                      "(reading and label logits swapped); colour_accuracy_needed: the first share's accuracy "
                      "that meets each target (None: not even at 1)"}
    print("colour accuracy needed per target:", needed)

    wrong = np.flatnonzero((reading != truth) & (truth >= 0))
    pick = np.random.default_rng(args.seed).choice(wrong, min(args.sheet, len(wrong)), replace=False)
    misreading_sheet([paths[test_idx[j]] for j in pick], [held["color"][j] for j in pick],
                     [names["color"][reading[j]] for j in pick], [held["category"][j] for j in pick],
                     RESULTS / "bench_colour_reading.png")
    result["sheet"] = {"png": "benchmarks/results/bench_colour_reading.png", "seed": args.seed,
                       "ids": [ids[test_idx[j]] for j in pick]}
    write_result("bench_colour_reading", result)


if __name__ == "__main__":
    main()
