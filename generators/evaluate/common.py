"""What the evaluation modules share: their error, the demo truth file, small helpers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

GROUND_TRUTH_FILE = "ground_truth.json"


class EvaluationError(ValueError):
    """Arguments or artefacts that do not allow an evaluation."""


@dataclass
class EvalConfig:
    items: int = 48  # products evaluated (drawn with the seed; classifier held-out ones first)
    seed: int = 0
    batch_size: int = 16
    variant_of: bool = False
    device: str = "auto"
    encoder: str | None = None  # None: the built-in encoder
    classifier_dir: str | None = None  # cache of the classifier (default next to the output)
    cache_dir: str | None = None  # gallery embeddings, keyed by encoder and catalog checksums (CLI: next to the output)
    pairs: str | None = None  # truth for to_model when there is no ground_truth.json
    search: bool = True  # the edited-search report (generators.evaluate.search)
    groups: list[str] | None = None  # edited search: only these groups (default: every editable one)
    queries_per_group: int = 40
    holdout: float | None = None  # products searched with; None: the run's train.holdout (else 0.3)
    baseline: bool = True  # run the LAB colour shift next to the editor when it edits colour
    classifier_report: bool = True  # the classifier-judged edit success, L1/SSIM to input and truth
    variants: int = 4  # multi-modal editors: variants per edit (diversity, fused search)
    strip: str | None = None  # PNG: input, then the variants or the strengths
    worn: bool = True  # translators on a demo catalog: recall@10 of the same product (generators.evaluate.worn)


def batched(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def summary(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"mean": float(a.mean()), "std": float(a.std()), "n": int(a.size)}


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")
