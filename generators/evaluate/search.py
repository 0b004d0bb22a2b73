"""Edited-query retrieval: what a shopper gets when "this, but black" is searched.

For each editable group, held-out products (never trained on) are edited to another value of
that group, and each edited photo searches the catalog with the project's encoder. A query
*succeeds* in proportion to how many of its top ``k`` hits have the query's anchor value
(its category) **and** the target value: **success@k**. Next to every editor stand:

- **unedited**: the query photo itself (what search gives without an edit);
- **truth** (demo catalogs, which can re-render a product with one attribute changed,
  ``crawler.demo.render.render_variant``): the true re-rendering searched the same way, the
  ceiling an edit is measured against; with it, the L1 distance of edit and input to the truth;
- **oracle** (real catalogs): the unedited photo searched in the catalog filtered to the
  target value, which is what a hard filter would give.

Every condition searches the same gallery (all catalog products, the query itself left out)
with the same encoder, so the numbers differ only by the query image.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from catalog import Catalog, SchemaError
from catalog.split import holdout_mask
from generators.evaluate.common import GROUND_TRUTH_FILE, EvaluationError, open_rgb

HEADLINE_GROUPS = ("color", "pattern", "sleeve_length", "length")


@dataclass
class SearchEvalConfig:
    k: int = 10
    queries_per_group: int = 40
    holdout: float = 0.3  # the hash split the editor and the encoder trained with
    seed: int = 0
    groups: list[str] | None = None  # default: every group some editor can edit
    anchor: str = "category"
    batch_size: int = 32
    truth: str = "auto"  # auto (render when the catalog is a demo catalog), render, oracle
    examples: int = 4  # queries per group kept as images for a picture


@dataclass
class SearchEvalResult:
    report: dict[str, Any]
    # group -> list of {"input", "target", "truth" (or None), editor name -> image}
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class Gallery:
    """Every catalog product embedded once; exact inner-product search with masks."""

    def __init__(self, catalog: Catalog, encoder: Any, batch_size: int = 32, cache_dir: str | Path | None = None,
                 progress: bool = False) -> None:
        self.ids = [it.id for it in catalog.items]
        self.row = {iid: i for i, iid in enumerate(self.ids)}
        self.labels = {g: np.array([it.labels.get(g) or "" for it in catalog.items], dtype=object)
                       for g in catalog.schema.names}
        self.encoder = encoder
        self.batch_size = batch_size
        cache = None
        if cache_dir is not None:
            key = hashlib.sha256(f"{encoder.checksum}:{catalog.checksum()}".encode()).hexdigest()[:16]
            cache = Path(cache_dir) / f"gallery_{key}.npy"
        if cache is not None and cache.is_file():
            self.vectors = np.load(cache)
        else:
            self.vectors = self.embed([catalog.image_path(it) for it in catalog.items], progress, "gallery")
            if cache is not None:
                from catalog import atomic_path

                cache.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, self.vectors)

    def embed(self, images: Sequence[Image.Image | Path], progress: bool = False, desc: str = "embed") -> np.ndarray:
        from tqdm import tqdm

        out = []
        for i in tqdm(range(0, len(images), self.batch_size), desc=desc, unit="batch", disable=not progress,
                      leave=False):
            chunk = [open_rgb(p) if isinstance(p, Path) else p for p in images[i:i + self.batch_size]]
            out.append(self.encoder.embed_images(chunk))
        return np.concatenate(out) if out else np.zeros((0, self.encoder.dim), np.float32)

    def success(self, vec: np.ndarray, exclude: str, anchor: str | None, anchor_value: str | None, group: str,
                target: str, k: int, only_target: bool = False) -> float:
        """Share of the top ``k`` (query left out) with the anchor value and the target value."""
        sims = self.vectors @ vec
        sims[self.row[exclude]] = -np.inf
        if only_target:
            sims[self.labels[group] != target] = -np.inf
        top = np.argpartition(-sims, k)[:k] if len(sims) > k else np.arange(len(sims))
        top = top[np.isfinite(sims[top])]
        ok = self.labels[group][top] == target
        if anchor is not None:
            ok &= self.labels[anchor][top] == anchor_value
        return float(ok.sum()) / k


def value_table(catalog: Catalog, group: str, anchor: str | None) -> dict[str | None, set[str]]:
    """Values of ``group`` seen with each anchor value: an edit asks only for those."""
    out: dict[str | None, set[str]] = defaultdict(set)
    for it in catalog.items:
        v = it.labels.get(group)
        a = it.labels.get(anchor) if anchor else None
        if v and (anchor is None or a):
            out[a].add(v)
    return out


def _editable(editor: Any) -> dict[str, list[str]]:
    edit = (editor.capabilities() or {}).get("edit") or {}
    return {g: list(v) for g, v in (edit.get("groups") or {}).items()}


def _to_size(im: Image.Image, size: tuple[int, int]) -> np.ndarray:
    im = im.convert("RGB")
    if im.size != size:
        im = im.resize(size, Image.BICUBIC)
    return np.asarray(im, np.float32) / 255.0


def edited_search(editors: Mapping[str, Any], catalog: Catalog, encoder: Any, cfg: SearchEvalConfig | None = None,
                  cache_dir: str | Path | None = None, progress: bool = False) -> SearchEvalResult:
    """The edited-search report of ``editors`` (name -> Editor-like) on ``catalog``'s held-out products."""
    import tempfile

    cfg = cfg or SearchEvalConfig()
    rng = random.Random(cfg.seed)
    is_demo = (catalog.root / GROUND_TRUTH_FILE).is_file()
    mode = {"auto": "render" if is_demo else "oracle", "render": "render", "oracle": "oracle"}.get(cfg.truth)
    if mode is None:
        raise EvaluationError(f"truth must be auto, render or oracle; got {cfg.truth!r}")
    if mode == "render" and not is_demo:
        raise EvaluationError(f"{catalog.root}: truth=render needs a demo catalog ({GROUND_TRUTH_FILE} missing)")
    anchor = cfg.anchor if cfg.anchor in catalog.schema.groups else None
    caps = {name: _editable(ed) for name, ed in editors.items()}
    groups = cfg.groups or sorted({g for c in caps.values() for g in c if g in catalog.schema.groups and g != anchor},
                                  key=catalog.schema.names.index)
    if not groups:
        raise EvaluationError("no editor edits a group of this catalog")
    held = holdout_mask([it.id for it in catalog.items], cfg.holdout, seed=0)
    pool = [it for it, h in zip(catalog.items, held, strict=True) if h]
    if not pool:
        raise EvaluationError(f"no held-out product (holdout {cfg.holdout} of {len(catalog.items)} items)")
    gallery = Gallery(catalog, encoder, cfg.batch_size, cache_dir, progress)
    render_variant = None
    if mode == "render":
        from crawler.demo.render import render_variant
    tmp = tempfile.TemporaryDirectory(prefix="edited-search-")
    report_groups: dict[str, Any] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
    all_scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    try:
        for g in groups:
            table = value_table(catalog, g, anchor)
            cand = [it for it in pool if it.labels.get(g) and (anchor is None or it.labels.get(anchor))]
            rng.shuffle(cand)
            jobs: list[tuple[Any, str, Path | None]] = []
            for it in cand:
                if len(jobs) >= cfg.queries_per_group:
                    break
                values = sorted(table[it.labels.get(anchor) if anchor else None] - {it.labels[g]})
                rng.shuffle(values)
                for v in values:
                    truth_path = None
                    if render_variant is not None:
                        truth_path = Path(tmp.name) / f"{it.id}_{g}_{v}.png"
                        try:
                            render_variant(catalog.root, it.id, {g: v}, truth_path)
                        except SchemaError:
                            continue
                    jobs.append((it, v, truth_path))
                    break
            if not jobs:
                continue
            inputs = [open_rgb(catalog.image_path(it)) for it, _, _ in jobs]
            conds: dict[str, list[Image.Image] | None] = {"unedited": inputs}
            if mode == "render":
                conds["truth"] = [open_rgb(p) for _, _, p in jobs]
            for name, ed in editors.items():
                if g not in caps[name]:
                    continue
                outs: list[Image.Image] = []
                for (_it, v, _), im in zip(jobs, inputs, strict=True):
                    if v not in caps[name][g]:
                        outs.append(im)  # the editor cannot ask for this value: it changes nothing
                        continue
                    outs.append(ed.edit([im], {g: v})[0])
                conds[name] = outs
            scores: dict[str, list[float]] = {}
            for name, imgs in conds.items():
                vecs = gallery.embed(imgs)
                scores[name] = [gallery.success(vec, it.id, anchor, it.labels.get(anchor) if anchor else None, g, v,
                                                cfg.k) for vec, (it, v, _) in zip(vecs, jobs, strict=True)]
            if mode == "oracle":
                vecs = gallery.embed(inputs)
                scores["oracle"] = [gallery.success(vec, it.id, anchor, it.labels.get(anchor) if anchor else None, g, v,
                                                    cfg.k, only_target=True)
                                    for vec, (it, v, _) in zip(vecs, jobs, strict=True)]
            entry: dict[str, Any] = {"queries": len(jobs), f"success@{cfg.k}": {n: float(np.mean(s)) for n, s in scores.items()}}
            # Per target value: an editor that fails one colour hides behind the group's mean otherwise.
            by_target: dict[str, dict[str, Any]] = {}
            for v in sorted({v for _, v, _ in jobs}):
                rows = [i for i, (_, t, _) in enumerate(jobs) if t == v]
                by_target[v] = {"queries": len(rows),
                                f"success@{cfg.k}": {n: float(np.mean([s[i] for i in rows])) for n, s in scores.items()}}
            entry["by_target"] = by_target
            for n, s in scores.items():
                all_scores[n][g] = s
            if mode == "render":
                truths = conds["truth"]
                assert truths is not None
                l1s: dict[str, float] = {}
                for name, imgs in conds.items():
                    if name == "truth" or imgs is None:
                        continue
                    l1s[name] = float(np.mean([np.abs(_to_size(a, t.size) - _to_size(t, t.size)).mean()
                                               for a, t in zip(imgs, truths, strict=True)]))
                entry["l1_to_truth"] = l1s
            report_groups[g] = entry
            examples[g] = [{"input": inputs[i], "target": jobs[i][1], "id": jobs[i][0].id,
                            **{n: conds[n][i] for n in conds if conds[n] is not None}}
                           for i in range(min(cfg.examples, len(jobs)))]
    finally:
        tmp.cleanup()
    reference = "truth" if mode == "render" else "oracle"

    def summary(gs: Sequence[str]) -> dict[str, Any]:
        gs = [g for g in gs if g in report_groups]
        names = sorted({n for g in gs for n in all_scores if g in all_scores[n]})
        out: dict[str, Any] = {"groups": gs, f"success@{cfg.k}": {}}
        for n in names:
            vals = [x for g in gs for x in all_scores[n].get(g, [])]
            out[f"success@{cfg.k}"][n] = float(np.mean(vals)) if vals else None
        ref = out[f"success@{cfg.k}"].get(reference)
        unedited = out[f"success@{cfg.k}"].get("unedited")
        out[f"ratio_to_{reference}"] = {n: (v / ref if ref else None) for n, v in out[f"success@{cfg.k}"].items()}
        out["ratio_to_unedited"] = {n: (v / unedited if unedited else None) for n, v in out[f"success@{cfg.k}"].items()}
        return out

    report = {
        "k": cfg.k, "mode": mode, "reference": reference, "anchor": anchor, "holdout": cfg.holdout,
        "encoder": getattr(encoder, "encoder_id", str(encoder)), "gallery_items": len(gallery.ids),
        "heldout_pool": len(pool), "editors": {n: caps[n] for n in editors},
        "groups": report_groups,
        "overall": summary(list(report_groups)),
        "headline": summary([g for g in HEADLINE_GROUPS if g in report_groups]),
    }
    return SearchEvalResult(report, examples)


def example_grid(result: SearchEvalResult, names: Sequence[str], size: int = 128) -> Image.Image:
    """One row per example query: input | each editor's edit | truth, captioned."""
    from PIL import ImageDraw

    rows = [(g, ex) for g, exs in result.examples.items() for ex in exs]
    cols = ["input", *[n for n in names if n != "input"]]
    pad, head = 4, 14
    grid = Image.new("RGB", (len(cols) * (size + pad) + pad + 150, len(rows) * (size + pad) + pad + head), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(cols):
        draw.text((pad + c * (size + pad), 2), name, fill=(0, 0, 0))
    for r, (g, ex) in enumerate(rows):
        y = head + pad + r * (size + pad)
        for c, name in enumerate(cols):
            im = ex.get(name)
            if im is not None:
                grid.paste(im.convert("RGB").resize((size, size), Image.BICUBIC), (pad + c * (size + pad), y))
        draw.text((pad + len(cols) * (size + pad), y + size // 2 - 6), f"{g} -> {ex['target']}", fill=(0, 0, 0))
    return grid
