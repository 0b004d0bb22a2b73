"""Product -> model translation against the true front model photo of held-out products."""

from __future__ import annotations

import json
import time
from pathlib import Path

from catalog import Catalog
from generators.evaluate.common import (
    GROUND_TRUTH_FILE,
    EvalConfig,
    EvaluationError,
    batched,
    open_rgb,
    summary,
)
from generators.evaluate.metrics import FeatureSpace, frechet_distance, l1, ssim, to_float_tensor


def _true_front_photos(catalog: Catalog, pairs_file: str | None) -> dict[str, str]:
    gt_path = catalog.root / GROUND_TRUTH_FILE
    if gt_path.is_file():
        gt = json.loads(gt_path.read_text())
        out = {}
        for it in catalog.items:
            fronts = [p for p in it.model_img_paths if gt.get(p) == "front_full"]
            if fronts:
                out[it.id] = fronts[0]
        return out, "ground_truth.json"
    if pairs_file:
        from generators.pairs import read_pairs

        return {r["id"]: r["model_path"] for r in read_pairs(pairs_file)}, f"pairs file {pairs_file}"
    raise EvaluationError(
        f"{catalog.root}: no {GROUND_TRUTH_FILE}; pass --pairs FILE to say which model photo is the truth"
    )


def _trained_ids(run_config: dict | None) -> set[str] | None:
    """Ids the run trained pix2pix on (first ``max_items`` lines of its pairs file), if known."""
    if not run_config:
        return None
    t = run_config.get("train", {})
    if not t.get("pairs") or not Path(t["pairs"]).is_file():
        return None
    from generators.pairs import read_pairs

    rows = read_pairs(t["pairs"])
    if t.get("max_items"):
        rows = rows[: t["max_items"]]
    return {r["id"] for r in rows}


def evaluate_to_model(editor, catalog: Catalog, size: int, cfg: EvalConfig, features: FeatureSpace | None,
                      run_config: dict | None) -> dict:
    truth, source = _true_front_photos(catalog, cfg.pairs)
    trained = _trained_ids(run_config)
    by_id = catalog.by_id()
    ids = sorted(i for i in truth if i in by_id)
    heldout = [i for i in ids if trained is not None and i not in trained]
    used_heldout = bool(heldout)
    ids = (heldout or ids)[: cfg.items]
    if not ids:
        raise EvaluationError("no product with a true front model photo to compare to_model against")
    l1s, ssims, gen, real = [], [], [], []
    t0 = time.perf_counter()
    for chunk in batched(ids, cfg.batch_size):
        prods = [open_rgb(catalog.image_path(by_id[i])) for i in chunk]
        trues = [open_rgb(catalog.root / truth[i]) for i in chunk]
        outs = editor.to_model(prods)
        a, b = to_float_tensor(outs, size), to_float_tensor(trues, size)
        l1s += l1(a, b).tolist()
        ssims += ssim(a, b).tolist()
        gen += outs
        real += trues
    out = {
        "products": len(ids),
        "truth": source,
        "heldout": used_heldout,
        "note": None if used_heldout else "the run trained on every product with a true photo (or its training set is unknown); numbers are on training products",
        "seconds": round(time.perf_counter() - t0, 3),
        "l1_to_true_model_photo": summary(l1s),
        "ssim_to_true_model_photo": summary(ssims),
    }
    if features is not None and len(gen) >= 2:
        out["frechet_distance"] = {"value": frechet_distance(features(real), features(gen)),
                                   "real": len(real), "generated": len(gen), "feature_space": features.name}
    return out
