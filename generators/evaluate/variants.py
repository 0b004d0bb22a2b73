"""Diverse edits (MUNIT) and sliders (Fader): are the variants different, does searching all of
them beat one, and does a slider move steadily?

- :func:`variants_report`: per fixed edit of a multi-modal editor ("pattern: floral" from a
  plain product), ``n`` variants of held-out products. *Diversity*: the mean pairwise L1
  between variants (pixels in [0, 1], at the photo's size) and the mean pairwise cosine
  distance of their embeddings (the search encoder's space). *Fused search*: success@k of the
  reciprocal-rank fusion of the variants' rankings (each variant's top ``depth * k``, as the
  service fuses them) against the single edit (variant 1, what ``edit`` returns), the
  unedited query and, on demo catalogs, the true re-rendering.
- :func:`slider_report`: per editable group, held-out products edited to another value at
  strengths 0, 0.25, ..., 1. The independent classifier's probability of the target value and
  the L1 distance to the input should both rise with the strength; the share of queries where
  they do (never falling by more than ``tol``, ending higher than they start) is the
  *monotonicity*. Strength 0 must return the input (its L1 is reported).
- :func:`strip`: a PNG per model for the docs (input, then the variants or the strengths).

success@k is the share of the top ``k`` (the query left out) with the query's category and
the target value, as in :mod:`generators.evaluate.search`.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from catalog import Catalog, SchemaError
from catalog.split import holdout_mask
from generators.evaluate.common import GROUND_TRUTH_FILE, EvaluationError, open_rgb, summary
from generators.evaluate.search import Gallery
from indexing.fusion import reciprocal_rank_fusion

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _pixels(im: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    im = im.convert("RGB")
    if size is not None and im.size != size:
        im = im.resize(size, Image.BICUBIC)
    return np.asarray(im, np.float32) / 255.0


def _l1(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(_pixels(a, b.size) - _pixels(b)).mean())


def _heldout(catalog: Catalog, holdout: float) -> list:
    held = holdout_mask([it.id for it in catalog.items], holdout, seed=0)
    pool = [it for it, h in zip(catalog.items, held, strict=True) if h]
    if not pool:
        raise EvaluationError(f"no held-out product (holdout {holdout} of {len(catalog.items)} items)")
    return pool


def _ranking(gallery: Gallery, vec: np.ndarray, exclude: str, depth: int) -> list[int]:
    sims = gallery.vectors @ vec
    sims[gallery.row[exclude]] = -np.inf
    depth = min(depth, len(sims) - 1)
    top = np.argpartition(-sims, depth)[:depth] if len(sims) > depth else np.arange(len(sims))
    return [int(i) for i in top[np.argsort(-sims[top], kind="stable")]]


def _success(gallery: Gallery, rows: Sequence[int], anchor: str | None, anchor_value: str | None, group: str,
             target: str, k: int) -> float:
    rows = list(rows)[:k]
    ok = [gallery.labels[group][r] == target and (anchor is None or gallery.labels[anchor][r] == anchor_value)
          for r in rows]
    return float(sum(ok)) / k


def _truth(catalog: Catalog, item_id: str, changes: dict[str, str], folder: str) -> Image.Image | None:
    from crawler.demo.render import render_variant

    path = Path(folder) / f"{item_id}_{'_'.join(f'{g}-{v}' for g, v in changes.items())}.png"
    try:
        render_variant(catalog.root, item_id, changes, path)
    except SchemaError:
        return None
    return open_rgb(path)


def variants_report(editor: Any, catalog: Catalog, encoder: Any, n_variants: int = 4, queries: int = 40,
                    holdout: float = 0.3, k: int = 10, depth: int = 2, seed: int = 0, anchor: str = "category",
                    cache_dir: str | Path | None = None, progress: bool = False,
                    examples: int = 4) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Diversity and fused search of a multi-modal editor (module docstring). Returns the report
    and a few examples (input, variants, truth) for a picture."""
    caps = editor.capabilities()
    edit = caps.get("edit") or {}
    if not caps.get("multi_modal"):
        raise EvaluationError(f"{caps.get('model')} is not multi-modal: no variants to evaluate")
    fixed = [dict(e) for e in edit.get("edits") or []]
    sources = [dict(s) for s in edit.get("sources") or [{} for _ in fixed]]
    anchor_g = anchor if anchor in catalog.schema.groups else None
    is_demo = (catalog.root / GROUND_TRUTH_FILE).is_file()
    pool = _heldout(catalog, holdout)
    gallery = Gallery(catalog, encoder, cache_dir=cache_dir, progress=progress)
    rng = random.Random(seed)
    report: dict[str, Any] = {"variants": n_variants, "k": k, "fusion": f"reciprocal rank fusion (k=60) of each "
                              f"variant's top {depth * k}", "holdout": holdout, "truth": "render" if is_demo else None,
                              "edits": {}}
    shown: list[dict[str, Any]] = []
    tmp = tempfile.TemporaryDirectory(prefix="variants-")
    try:
        for changes, source in zip(fixed, sources, strict=True):
            ((g, v),) = changes.items()
            cand = [it for it in pool if it.labels.get(g) and it.labels.get(g) != v
                    and all(it.labels.get(sg) == sv for sg, sv in source.items())]
            rng.shuffle(cand)
            cand = cand[:queries]
            if not cand:
                continue
            px, emb = [], []
            scores: dict[str, list[float]] = {"unedited": [], "single": [], "fused": [], "best_variant": []}
            if is_demo:
                scores["truth"] = []
            for i, it in enumerate(cand):
                photo = open_rgb(catalog.image_path(it))
                outs = editor.edit_variants([photo], changes, n_variants)[0]
                vecs = gallery.embed([photo, *outs])
                px += [_l1(a, b) for a, b in combinations(outs, 2)]
                ev = vecs[1:] / np.linalg.norm(vecs[1:], axis=1, keepdims=True).clip(1e-12)
                emb += [float(1 - ev[a] @ ev[b]) for a, b in combinations(range(len(outs)), 2)]
                av = it.labels.get(anchor_g) if anchor_g else None

                def succ(rows: Sequence[int], av: str | None = av, g: str = g, v: str = v) -> float:
                    return _success(gallery, rows, anchor_g, av, g, v, k)

                rankings = [_ranking(gallery, vec, it.id, depth * k) for vec in vecs[1:]]
                fused = [r for r, _ in reciprocal_rank_fusion(rankings)]
                scores["unedited"].append(succ(_ranking(gallery, vecs[0], it.id, k)))
                scores["single"].append(succ(rankings[0]))
                scores["fused"].append(succ(fused))
                scores["best_variant"].append(max(succ(r) for r in rankings))
                truth = None
                if is_demo:
                    truth = _truth(catalog, it.id, changes, tmp.name)
                    if truth is not None:
                        scores["truth"].append(succ(_ranking(gallery, gallery.embed([truth])[0], it.id, k)))
                if i < examples:
                    shown.append({"id": it.id, "edit": f"{g}={v}", "input": photo, "variants": outs, "truth": truth})
            report["edits"][f"{g}={v}"] = {
                "queries": len(cand),
                "pairwise_l1_pixels": summary(px),
                "pairwise_cosine_distance_encoder": summary(emb),
                f"success@{k}": {name: float(np.mean(s)) if s else None for name, s in scores.items()},
            }
    finally:
        tmp.cleanup()
    if not report["edits"]:
        raise EvaluationError("no held-out product is in a source domain of the editor's edits")
    # all edits together
    allq = [e["queries"] for e in report["edits"].values()]
    report["overall"] = {
        "queries": sum(allq),
        "pairwise_l1_pixels": float(np.average([e["pairwise_l1_pixels"]["mean"] for e in report["edits"].values()],
                                               weights=allq)),
        "pairwise_cosine_distance_encoder": float(np.average(
            [e["pairwise_cosine_distance_encoder"]["mean"] for e in report["edits"].values()], weights=allq)),
        f"success@{k}": {name: float(np.average([e[f"success@{k}"][name] for e in report["edits"].values()],
                                                weights=allq))
                         for name in next(iter(report["edits"].values()))[f"success@{k}"]
                         if all(e[f"success@{k}"][name] is not None for e in report["edits"].values())},
    }
    return report, shown


def _monotone(values: Sequence[float], tol: float) -> bool:
    return all(b >= a - tol for a, b in zip(values[:-1], values[1:], strict=True)) and values[-1] > values[0]


def slider_report(editor: Any, catalog: Catalog, clf: Any, groups: Sequence[str] | None = None, queries: int = 20,
                  holdout: float = 0.3, strengths: Sequence[float] = STRENGTHS, tol: float = 0.01, seed: int = 0,
                  anchor: str = "category", examples: int = 2,
                  pass_labels: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Monotonicity of a continuous editor over ``strengths`` (module docstring)."""
    caps = editor.capabilities()
    editable = {g: list(v) for g, v in ((caps.get("edit") or {}).get("groups") or {}).items()}
    groups = [g for g in (groups or editable) if g in editable and g in clf.groups and g != anchor]
    if not groups:
        raise EvaluationError(f"no group both edited by {caps.get('model')} and read by the classifier")
    pool = _heldout(catalog, holdout)
    rng = random.Random(seed)
    seen: dict[tuple[str | None, str], set[str]] = {}
    for it in catalog.items:  # values seen with each category: an edit asks only for those
        for g in groups:
            if it.labels.get(g):
                seen.setdefault((it.labels.get(anchor), g), set()).add(it.labels[g])
    report: dict[str, Any] = {"strengths": list(strengths), "tolerance": tol, "holdout": holdout, "groups": {}}
    shown: list[dict[str, Any]] = []
    all_prob, all_dist, zero_l1 = [], [], []
    for g in groups:
        cand = [it for it in pool if it.labels.get(g)]
        rng.shuffle(cand)
        jobs = []
        for it in cand[:queries]:
            values = sorted(seen.get((it.labels.get(anchor), g), set(editable[g])) - {it.labels[g]})
            values = [x for x in values if x in editable[g]]
            if values:
                jobs.append((it, rng.choice(values)))
        if not jobs:
            continue
        classes = clf.heads[g]["classes"]
        probs, dists = [], []
        for it, v in jobs:
            photo = open_rgb(catalog.image_path(it))
            kw = {"source_labels": [dict(it.labels)]} if pass_labels else {}
            outs = [editor.edit([photo], {g: v}, strength=s, **kw)[0] for s in strengths]
            p = clf.proba_from_features(clf.features(outs), g)[:, classes.index(v)] if v in classes else None
            d = [_l1(o, photo) for o in outs]
            zero_l1.append(d[0])
            dists.append(d)
            if p is not None:
                probs.append([float(x) for x in p])
            if len(shown) < examples * len(groups) and sum(1 for s in shown if s["group"] == g) < examples:
                shown.append({"id": it.id, "group": g, "edit": f"{g}={v}", "input": photo, "outputs": outs})
        mono_p = [_monotone(p, tol) for p in probs]
        mono_d = [_monotone(d, tol * 0.1) for d in dists]
        all_prob += mono_p
        all_dist += mono_d
        report["groups"][g] = {
            "queries": len(jobs),
            "mean_target_probability": [float(x) for x in np.mean(probs, axis=0)] if probs else None,
            "mean_l1_to_input": [float(x) for x in np.mean(dists, axis=0)],
            "monotone_probability": float(np.mean(mono_p)) if mono_p else None,
            "monotone_distance": float(np.mean(mono_d)),
        }
    report["overall"] = {
        "queries": len(all_dist),
        "monotone_probability": float(np.mean(all_prob)) if all_prob else None,
        "monotone_distance": float(np.mean(all_dist)) if all_dist else None,
        "strength0_l1_to_input": summary(zero_l1),
    }
    return report, shown


def strip(rows: Sequence[tuple[str, Image.Image, Sequence[Image.Image]]], captions: Sequence[str],
          size: int = 128) -> Image.Image:
    """One row per example: a caption, the input, then its outputs (variants or strengths)."""
    from PIL import ImageDraw

    pad, head, label = 4, 14, 150
    cols = 1 + max((len(outs) for _, _, outs in rows), default=0)
    grid = Image.new("RGB", (label + cols * (size + pad) + pad, head + len(rows) * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for c, cap in enumerate(["input", *captions][:cols]):
        draw.text((label + pad + c * (size + pad), 2), cap, fill=(0, 0, 0))
    for r, (text, inp, outs) in enumerate(rows):
        y = head + pad + r * (size + pad)
        draw.text((4, y + size // 2 - 6), text, fill=(0, 0, 0))
        for c, im in enumerate([inp, *outs]):
            grid.paste(im.convert("RGB").resize((size, size), Image.BICUBIC), (label + pad + c * (size + pad), y))
    return grid
