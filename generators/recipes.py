"""Named training presets: for each model, the settings that make it good on a given budget.

``python -m generators.train --recipe NAME [--model MODEL] --catalog CAT --out RUN`` starts
from the recipe (``--model`` picks whose recipe; without it, the attribute editor's, maskedit);
``--config``, ``--set`` and the per-field flags still override any of its fields. The numbers
behind each recipe are in docs/generators.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODEL = "maskedit"


@dataclass(frozen=True)
class Recipe:
    model: str
    summary: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


RECIPES: dict[str, dict[str, Recipe]] = {
    "maskedit": {
        "demo-cpu": Recipe(
            "maskedit",
            "the committed demo editor: every attribute group of the demo catalog, 96 px judges, "
            "2,000 steps, about 20 min on 2 idle CPU cores (1.7-1.9 steps/s with the neckline step)",
            {"train": {"image_size": 96, "batch_size": 12, "steps": 2000, "holdout": 0.3, "sample_every": 100,
                       "checkpoint_every": 250, "log_every": 10}},
        ),
        "colour-cpu": Recipe(
            "maskedit",
            "a colour editor for any real catalog (--groups color by default): at most 45 min on 2 CPU cores",
            {"train": {"image_size": 96, "batch_size": 12, "steps": 2500, "holdout": 0.3, "groups": ["color"],
                       "sample_every": 250, "checkpoint_every": 250, "log_every": 10},
             "maskedit": {"max_edit_groups": 1, "multi_edit_prob": 0.0}},
        ),
        "gpu": Recipe(
            "maskedit",
            "full quality for a lent GPU: 256 px judges, 64 px maps, a wider U-Net, 20k steps (bf16 autocast)",
            {"train": {"image_size": 256, "batch_size": 32, "steps": 20000, "holdout": 0.3, "sample_every": 1000,
                       "checkpoint_every": 1000, "log_every": 50},
             "maskedit": {"pred_size": 64, "conv_dim": 32, "max_dim": 256, "levels": 3, "res_blocks": 2,
                          "d_width": 96}},
        ),
    },
    "munit": {
        "demo-cpu": Recipe(
            "munit",
            "the committed demo: pattern unicolors <-> floral, 64 px, masked residual at full resolution; "
            "1,200 steps at lr 3e-4, diversity-sensitive loss x4, about 15 min on 2 quiet CPU cores (1.4 steps/s)",
            {"train": {"image_size": 64, "batch_size": 8, "steps": 1200, "holdout": 0.3, "sample_every": 100,
                       "checkpoint_every": 100, "log_every": 10,
                       "domain_a": "product:pattern=unicolors", "domain_b": "product:pattern=floral"},
             "munit": {"lr": 3e-4, "lambda_ds": 4.0}},
        ),
        "gpu": Recipe(
            "munit",
            "for a lent GPU: 256 px, the paper's widths (dim 64, 4 residual blocks, MLP 256), 50k steps",
            {"train": {"image_size": 256, "batch_size": 8, "steps": 50000, "holdout": 0.3, "sample_every": 1000,
                       "checkpoint_every": 1000, "log_every": 50,
                       "domain_a": "product:pattern=unicolors", "domain_b": "product:pattern=floral"},
             "munit": {"dim": 64, "n_res": 4, "mlp_dim": 256, "d_width": 64}},
        ),
    },
    "fader": {
        "demo-cpu": Recipe(
            "fader",
            "the committed demo: sliders for every group but the category, 64 px, residual at full resolution, "
            "shape groups moved by the silhouette step; 1,200 steps, about 5-6 min on 2 idle CPU cores",
            {"train": {"image_size": 64, "batch_size": 12, "steps": 1200, "holdout": 0.3, "sample_every": 100,
                       "checkpoint_every": 50, "log_every": 10}},
        ),
        "gpu": Recipe(
            "fader",
            "for a lent GPU: 256 px, wider nets and a 4x4 latent as in the paper, 50k steps",
            {"train": {"image_size": 256, "batch_size": 32, "steps": 50000, "holdout": 0.3, "sample_every": 1000,
                       "checkpoint_every": 1000, "log_every": 50},
             "fader": {"dim": 32, "max_dim": 512, "n_down": 6, "latent_dim": 256, "d_width": 64}},
        ),
    },
    # Worn photos (issue 12): the garment cut out by the pose (model -> product), its region learned
    "cutout": {
        "demo-cpu": Recipe(
            "cutout",
            "the committed model->product translator: the worn garment cut out by the pose, the region "
            "(upper / lower / full) picked by a linear score on frozen Lite0 features; minutes on 2 CPU cores",
            {"train": {"image_size": 256, "batch_size": 8, "steps": 300, "sample_every": 100,
                       "checkpoint_every": 100, "log_every": 10, "n_samples": 8}},
        ),
    },
    # Worn photos (issue 12): pix2pix on the pose pairs, judged on frozen ImageNet features.
    "pix2pix": {
        "to-product-cpu": Recipe(
            "pix2pix",
            "the committed model->product demo translator: 64 px, U-Net ngf 16, projected critics + feature "
            "loss, 15 min on 2 CPU cores",
            {"train": {"image_size": 64, "batch_size": 8, "steps": 1500, "time_budget_min": 15.0, "sample_every": 100,
                       "checkpoint_every": 100, "log_every": 10, "n_samples": 8},
             "pix2pix": {"direction": "model->product", "ngf": 16, "d_kind": "projected", "d_width": 32,
                         "lambda_l1": 50.0, "lambda_feat": 10.0}},
        ),
        "to-model-cpu": Recipe(
            "pix2pix",
            "the same for product->model: 64 px, U-Net ngf 16, projected critics + feature loss, 15 min on 2 CPU cores",
            {"train": {"image_size": 64, "batch_size": 8, "steps": 1500, "time_budget_min": 15.0, "sample_every": 100,
                       "checkpoint_every": 100, "log_every": 10, "n_samples": 8},
             "pix2pix": {"direction": "product->model", "ngf": 16, "d_kind": "projected", "d_width": 32,
                         "lambda_l1": 50.0, "lambda_feat": 10.0}},
        ),
        "gpu": Recipe(
            "pix2pix",
            "full resolution for a lent GPU (either direction: --set pix2pix.direction=...): 256 px, unet_256 "
            "ngf 64, projected critics + feature loss, 40k steps, bf16 autocast",
            {"train": {"image_size": 256, "batch_size": 16, "steps": 40000, "sample_every": 1000,
                       "checkpoint_every": 1000, "log_every": 50},
             "pix2pix": {"direction": "model->product", "ngf": 64, "d_kind": "projected", "d_width": 64,
                         "lambda_l1": 50.0, "lambda_feat": 10.0}},
        ),
    },
}


class RecipeError(ValueError):
    pass


def find(name: str, model: str | None = None) -> Recipe:
    """The recipe ``name`` of ``model`` (default: maskedit's); the error lists what exists."""
    model = model or DEFAULT_MODEL
    own = RECIPES.get(model, {})
    if name not in own:
        have = ", ".join(own) or "none"
        raise RecipeError(f"--recipe {name!r}: model {model} has no such recipe; its recipes: {have} "
                          f"(all: {', '.join(f'{m}/{r}' for m, rs in RECIPES.items() for r in rs)})")
    return own[name]


def all_recipes() -> list[tuple[str, str, Recipe]]:
    return [(m, n, r) for m, rs in RECIPES.items() for n, r in rs.items()]


def describe() -> str:
    """One line per recipe, for ``--help``."""
    return "\n".join(f"  {name:<11} --model {model:<9} {r.summary}" for model, name, r in all_recipes())
