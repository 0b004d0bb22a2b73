"""Classifier-judged edits: does the independent classifier read the target, and keep the rest?"""

from __future__ import annotations

import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from catalog import Catalog
from generators.evaluate.classifier import AttributeClassifier
from generators.evaluate.common import EvalConfig, EvaluationError, batched, open_rgb, summary
from generators.evaluate.metrics import FeatureSpace, frechet_distance, l1, ssim, to_float_tensor


# checkpoint / editor
# --------------------------------------------------------------------------------------------
def editable_groups(caps: dict, catalog: Catalog) -> tuple[dict[str, list[str]], list[dict[str, str]] | None]:
    """``({group: values}, fixed_edits)`` the editor can do, from ``Editor.capabilities()``.

    ``fixed_edits`` is set for editors that do only specific edits (a CycleGAN trained on
    two domains, e.g. ``{"pattern": "stripes"}``); None when any value may be asked for.
    """
    edit = caps.get("edit")
    if not isinstance(edit, dict):
        return {}, None
    groups = edit.get("groups") or {}
    out = {g: list(v) if v else list(catalog.schema.groups.get(g, ())) for g, v in groups.items()}
    fixed = edit.get("edits")
    return out, ([dict(e) for e in fixed] if fixed else None)


def image_size_of(caps: dict, default: int = 64) -> int:
    for key in ("image_size", "size", "resolution"):
        if isinstance(caps.get(key), int):
            return int(caps[key])
    return default


def evaluate_edits(
    editor, catalog: Catalog, clf: AttributeClassifier, groups: dict[str, list[str]], size: int,
    cfg: EvalConfig, features: FeatureSpace | None, fixed_edits: list[dict[str, str]] | None = None,
    pass_labels: bool = True,
) -> dict:
    rng = random.Random(cfg.seed)
    heldout = set(clf.report.get("heldout_ids", []))
    items = sorted(catalog.items, key=lambda it: (it.id not in heldout, it.id))[: cfg.items]
    # One edit per (item, group with a known value): a different value of that group. With
    # --variant-of the value must be one the renderer can draw for this product (a knitted
    # top has no 3/4 length), so candidates are tried in random order until one renders.
    variant_tmp = tempfile.TemporaryDirectory(prefix="variants-") if cfg.variant_of else None
    render_variant = None
    if cfg.variant_of:
        from catalog import SchemaError
        from crawler.demo.render import render_variant
    jobs: dict[tuple[str, str], list] = defaultdict(list)
    truth_paths: dict[tuple[str, str, str], Path] = {}
    skipped_no_truth = 0

    def choose(it, g: str, candidates: list[str]) -> str | None:
        nonlocal skipped_no_truth
        rng.shuffle(candidates)
        if render_variant is None:
            return candidates[0] if candidates else None
        for v in candidates:
            out_path = Path(variant_tmp.name) / f"{it.id}_{g}_{v}.png"
            try:
                render_variant(catalog.root, it.id, {g: v}, out_path)
            except SchemaError:
                continue
            truth_paths[(it.id, g, v)] = out_path
            return v
        skipped_no_truth += 1
        return None

    for it in items:
        if fixed_edits is not None:  # e.g. CycleGAN: each of its edits on items not already there
            for e in fixed_edits:
                ((g, v),) = e.items()
                if it.labels.get(g) not in (None, v) and choose(it, g, [v]) is not None:
                    jobs[(g, v)].append(it)
            continue
        for g, vals in groups.items():
            cur = it.labels.get(g)
            if cur is None:
                continue
            v = choose(it, g, [x for x in vals if x != cur])
            if v is not None:
                jobs[(g, v)].append(it)
    if not jobs:
        raise EvaluationError("no edit to evaluate: no evaluated item has a known value in an editable group")
    inputs_cache: dict[str, Image.Image] = {it.id: open_rgb(catalog.image_path(it)) for it in items}
    # The classifier reads each input once: its value per group before any edit.
    ins = [inputs_cache[it.id] for it in items]
    pred_all = clf.predict(ins)
    pred_by_id = {it.id: {g: pred_all[g][k] for g in pred_all} for k, it in enumerate(items)}
    per_group: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    done: list[tuple[str, str, list, list[Image.Image]]] = []  # (group, value, items, outputs)
    t0 = time.perf_counter()
    for (g, v), its in sorted(jobs.items()):
        for chunk in batched(its, cfg.batch_size):
            ins = [inputs_cache[it.id] for it in chunk]
            if pass_labels:  # StarGAN keeps unnamed groups; give it the catalog's known labels
                outs = editor.edit(ins, {g: v}, source_labels=[dict(it.labels) for it in chunk])
            else:
                outs = editor.edit(ins, {g: v})
            done.append((g, v, chunk, list(outs)))
    seconds = time.perf_counter() - t0
    generated = [im for *_, outs in done for im in outs]
    n_edits = len(generated)
    # The classifier reads every output in one batched pass (its trunk dominates the cost).
    pred_gen = clf.predict(generated)
    k = 0
    for g, v, chunk, outs in done:
        n = len(outs)
        pred_out = {og: pred_gen[og][k : k + n] for og in pred_gen}
        k += n
        pred_in = {og: [pred_by_id[it.id][og] for it in chunk] for og in pred_all}
        ins = [inputs_cache[it.id] for it in chunk]
        x_in, x_out = to_float_tensor(ins, size), to_float_tensor(outs, size)
        rec = per_group[g]
        rec["l1_input"] += l1(x_out, x_in).tolist()
        rec["ssim_input"] += ssim(x_out, x_in).tolist()
        if g in pred_out:
            rec["success"] += [p == v for p in pred_out[g]]
        for og in pred_out:
            if og != g:
                rec["kept"] += [a == b for a, b in zip(pred_in[og], pred_out[og], strict=True)]
        if render_variant is not None:
            truths = [open_rgb(truth_paths[(it.id, g, v)]) for it in chunk]
            x_true = to_float_tensor(truths, size)
            rec["l1_truth"] += l1(x_out, x_true).tolist()
            rec["ssim_truth"] += ssim(x_out, x_true).tolist()
            rec["l1_input_to_truth"] += l1(x_in, x_true).tolist()
            rec["ssim_input_to_truth"] += ssim(x_in, x_true).tolist()
    if variant_tmp is not None:
        variant_tmp.cleanup()
    # Classifier on the unedited inputs against the catalog labels: the ceiling for success.
    pred = pred_all
    input_acc = {}
    for g in groups:
        if g in pred:
            pairs = [(p, it.labels.get(g)) for p, it in zip(pred[g], items, strict=True) if it.labels.get(g)]
            if pairs:
                input_acc[g] = float(np.mean([p == t for p, t in pairs]))

    def agg(key: str) -> dict:
        vals = [x for rec in per_group.values() for x in rec.get(key, [])]
        return summary([float(x) for x in vals])

    out = {
        "items": len(items),
        "edits": n_edits,
        "skipped_without_renderable_target": skipped_no_truth,
        "edit_seconds": round(seconds, 3),
        "edit_success": agg("success").get("mean"),
        "kept_other_groups": agg("kept").get("mean"),
        "classifier_accuracy_on_inputs": input_acc,
        "preservation": {"l1_to_input": agg("l1_input"), "ssim_to_input": agg("ssim_input")},
        "per_group": {
            g: {k: summary([float(x) for x in vals]) for k, vals in rec.items()} for g, rec in sorted(per_group.items())
        },
    }
    if cfg.variant_of:
        out["preservation"].update({
            "l1_to_true_variant": agg("l1_truth"), "ssim_to_true_variant": agg("ssim_truth"),
            "reference_input_to_true_variant": {"l1": agg("l1_input_to_truth"), "ssim": agg("ssim_input_to_truth")},
        })
    if features is not None:
        real = features([inputs_cache[it.id] for it in items])
        fake = features(generated)
        out["frechet_distance"] = {"value": frechet_distance(real, fake), "real": len(real), "generated": len(fake),
                                   "feature_space": features.name}
    return out
