"""A tiny synthetic catalog for the GAN tests: fast, no renderer needed.

Garments are coloured rectangles (colour), optionally striped (pattern), short or long
(length); every fifth item's length is unknown, to exercise the masked loss. Each item has one
"model photo" (the garment on a grey, taller canvas) and the pairs file points at it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from catalog import Item, Schema, write_catalog

TINY_SCHEMA = Schema({"color": ("red", "blue", "green"), "pattern": ("unicolors", "stripes"), "length": ("short", "long")})
COLORS = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 160, 30)}

# Networks small enough for a CPU test step in well under a second.
TINY_CONFIG = {
    "stargan": {"g_conv_dim": 8, "d_conv_dim": 8, "g_repeat_num": 1, "n_critic": 2},
    "pix2pix": {"ngf": 8, "ndf": 8},
    "cyclegan": {"ngf": 8, "ndf": 8, "n_blocks": 1, "pool_size": 4},
    "maskedit": {"pred_size": 16, "conv_dim": 8, "max_dim": 16, "levels": 2, "res_blocks": 1, "d_width": 8,
                 "judge_steps": 5},
    "munit": {"dim": 8, "n_res": 1, "style_dim": 4, "mlp_dim": 16, "d_width": 8, "judge_steps": 5},
    "fader": {"dim": 8, "max_dim": 16, "latent_dim": 16, "d_width": 8, "judge_steps": 5},
    "train": {"log_every": 1, "sample_every": 2, "checkpoint_every": 2, "n_samples": 3},
}


def garment(color: str, pattern: str, length: str, size: int = 48) -> np.ndarray:
    a = np.full((size, size, 3), 255, np.uint8)
    h = size - 6 if length == "long" else size // 2
    a[4:4 + h, 12:size - 12] = COLORS[color]
    if pattern == "stripes":
        a[4:4 + h:6, 12:size - 12] = 250
    return a


def make_tiny_catalog(root: Path, n: int = 12, size: int = 48) -> Path:
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "model_images").mkdir(exist_ok=True)
    items = []
    for i in range(n):
        c = TINY_SCHEMA.groups["color"][i % 3]
        p = TINY_SCHEMA.groups["pattern"][(i // 3) % 2]
        ln = TINY_SCHEMA.groups["length"][i % 2]
        a = garment(c, p, ln, size)
        Image.fromarray(a).save(root / f"images/p{i}.png")
        m = np.full((size + 16, size, 3), 230, np.uint8)
        m[8:8 + size] = a
        Image.fromarray(m).save(root / f"model_images/p{i}_0.png")
        labels = {"color": c, "pattern": p, "length": ln if i % 5 else None}
        items.append(Item(id=f"p{i}", img_path=f"images/p{i}.png", labels=labels,
                          model_img_paths=[f"model_images/p{i}_0.png"]))
    write_catalog(root, items, TINY_SCHEMA)
    with open(root / "pairs.jsonl", "w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps({"id": it.id, "product_path": it.img_path, "model_path": it.model_img_paths[0],
                                 "method": "synthetic"}) + "\n")
    return root


def write_tiny_config(path: Path, extra: dict | None = None) -> Path:
    cfg = json.loads(json.dumps(TINY_CONFIG))
    for sec, vals in (extra or {}).items():
        cfg.setdefault(sec, {}).update(vals)
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def read_log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "logs.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()]
