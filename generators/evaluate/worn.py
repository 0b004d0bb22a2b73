"""Worn photos judged by retrieval: do product<->model translations find the same product?

On a demo catalog (the truth of which model photo is the front full-body one comes from the
renderer's ``ground_truth.json``), every product is a query. Recall@k of finding *the same
product*, results per item (an item's best-scoring photo, as ``IndexStore.search`` ranks):

- **product -> model**, searched over the model photos: the translated product photo; the
  untranslated product photo (baseline); the true front model photo with that photo itself
  left out of the index (ceiling: the other photos of it worn must be found).
- **model -> product**, searched over the product photos: the true front model photo
  translated; untranslated (baseline); the true product photo (ceiling; it is in the index).

Also L1 and SSIM of each translation to its truth at the generator's size, and a PNG grid of
input | translation | truth per direction for the docs. Search is exact inner product over the
encoder's unit vectors: what a flat index with views returns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from catalog import Catalog
from generators.evaluate.common import GROUND_TRUTH_FILE, EvaluationError, batched, open_rgb, summary
from generators.evaluate.metrics import l1, ssim, to_float_tensor


@dataclass
class WornConfig:
    k: int = 10
    batch_size: int = 16
    grid_rows: int = 8  # products shown per direction in the PNG grid
    grid_cell: int = 128


def front_photos(catalog: Catalog) -> dict[str, str]:
    """item id -> its true front full-body model photo (``ground_truth.json``)."""
    path = catalog.root / GROUND_TRUTH_FILE
    if not path.is_file():
        raise EvaluationError(f"{catalog.root}: no {GROUND_TRUTH_FILE}: the worn-photo evaluation needs a demo catalog")
    truth = json.loads(path.read_text())
    out = {}
    for it in catalog.items:
        fronts = [p for p in it.model_img_paths if truth.get(p) == "front_full"]
        if fronts:
            out[it.id] = fronts[0]
    return out


def _embed(encoder, images: Sequence[Image.Image], batch_size: int) -> np.ndarray:
    return np.concatenate([encoder.embed_images(list(chunk), batch_size=batch_size)
                           for chunk in batched(list(images), 64)]) if images else np.zeros((0, encoder.dim), np.float32)


def _embed_paths(encoder, paths: Sequence[Path], batch_size: int, progress: Callable[[int], None] | None) -> np.ndarray:
    out = []
    for chunk in batched(list(paths), 32):
        out.append(encoder.embed_images([open_rgb(p) for p in chunk], batch_size=batch_size))
        if progress:
            progress(len(chunk))
    return np.concatenate(out)


def recall_at_k(queries: np.ndarray, query_items: Sequence[int], index: np.ndarray, index_items: np.ndarray,
                k: int, exclude: Sequence[int] | None = None) -> tuple[float, list[int]]:
    """Share of queries whose own item is among the top ``k`` items (each item scored by its
    best vector). ``exclude[i]``: a vector row left out for query ``i`` (-1: none). Also returns
    each query's rank of its own item (1-based; 0 when not in the top ``k``)."""
    scores = queries @ index.T
    n_items = int(index_items.max()) + 1
    ranks = []
    for i, own in enumerate(query_items):
        s = scores[i].copy()
        if exclude is not None and exclude[i] >= 0:
            s[exclude[i]] = -np.inf
        best = np.full(n_items, -np.inf)
        np.maximum.at(best, index_items, s)
        order = np.argsort(-best, kind="stable")[:k]
        hit = np.nonzero(order == own)[0]
        ranks.append(int(hit[0]) + 1 if len(hit) else 0)
    return float(np.mean([r > 0 for r in ranks])), ranks


def _image_metrics(outs: list[Image.Image], truths: list[Image.Image], size: int) -> dict:
    a, b = to_float_tensor(outs, size), to_float_tensor(truths, size)
    return {"l1": summary(l1(a, b).tolist()), "ssim": summary(ssim(a, b).tolist())}


def _grid(rows: list[tuple[Image.Image, Image.Image, Image.Image]], cell: int, title: str) -> Image.Image:
    pad, head = 4, 22
    w = 3 * cell + 4 * pad
    canvas = Image.new("RGB", (w, head + len(rows) * (cell + pad) + pad), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    d.text((pad, 4), title, fill=(0, 0, 0))
    for r, trio in enumerate(rows):
        for c, im in enumerate(trio):
            canvas.paste(im.convert("RGB").resize((cell, cell), Image.BICUBIC),
                         (pad + c * (cell + pad), head + pad + r * (cell + pad)))
    return canvas


def _catalog_vectors(encoder, paths: list[Path], cfg: WornConfig, cache: Path | None, progress: bool) -> np.ndarray:
    """Embeddings of the catalog photos, reused from ``cache`` when it holds these paths for this encoder."""
    from tqdm import tqdm

    key = [str(p) for p in paths]
    eid = getattr(encoder, "encoder_id", "?")
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if list(z["paths"]) == key and str(z["encoder"]) == eid:
                return z["vectors"]
    bar = tqdm(total=len(paths), desc="embedding catalog photos", unit="img", disable=not progress, leave=False)
    vec = _embed_paths(encoder, paths, cfg.batch_size, bar.update)
    bar.close()
    if cache is not None:
        from catalog import atomic_path

        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, paths=np.asarray(key), vectors=vec, encoder=eid)
    return vec


def worn_search(catalog: Catalog, encoder, to_model=None, to_product=None, cfg: WornConfig | None = None,
                grid_path: str | Path | None = None, progress: bool = False, cache: str | Path | None = None) -> dict:
    """The report described in the module docstring. ``to_model`` / ``to_product`` are editors
    (``generators.inference.Editor``) or None (then only baselines and ceilings are measured).
    ``cache``: an ``.npz`` file that keeps the catalog photos' embeddings between runs."""
    cfg = cfg or WornConfig()
    t0 = time.perf_counter()
    fronts = front_photos(catalog)
    items = [it for it in catalog.items if it.id in fronts]
    if not items:
        raise EvaluationError(f"{catalog.root}: no product has a front full-body model photo")
    pos = {it.id: i for i, it in enumerate(items)}
    model_paths = [(pos[it.id], p) for it in items for p in it.model_img_paths]
    paths = [catalog.image_path(it) for it in items] + [catalog.root / p for _, p in model_paths]
    vec = _catalog_vectors(encoder, paths, cfg, Path(cache) if cache else None, progress)
    prod_vec, model_vec = vec[: len(items)], vec[len(items):]
    prod_items = np.arange(len(items))
    model_items = np.array([i for i, _ in model_paths])
    front_row = {it.id: next(j for j, (i, p) in enumerate(model_paths) if i == pos[it.id] and p == fronts[it.id])
                 for it in items}
    own = list(range(len(items)))
    k = cfg.k
    report: dict = {"catalog": str(catalog.root), "products": len(items), "model_photos": len(model_paths),
                    "k": k, "encoder": getattr(encoder, "encoder_id", "?")}

    # product -> model, over the model photos
    front_vec = model_vec[[front_row[it.id] for it in items]]
    p2m: dict = {"searched": "model photos"}
    p2m["untranslated_product_photo"], _ = recall_at_k(prod_vec, own, model_vec, model_items, k)
    p2m["true_front_model_photo_excluded"], _ = recall_at_k(front_vec, own, model_vec, model_items, k,
                                                            exclude=[front_row[it.id] for it in items])
    grid_rows: dict[str, list] = {}
    if to_model is not None:
        outs = []
        for chunk in batched(items, cfg.batch_size):
            outs += to_model.to_model([open_rgb(catalog.image_path(it)) for it in chunk])
        p2m["translated"], ranks = recall_at_k(_embed(encoder, outs, cfg.batch_size), own, model_vec, model_items, k)
        truths = [open_rgb(catalog.root / fronts[it.id]) for it in items]
        size = int(to_model.capabilities()["image_size"])
        p2m["to_true_front_photo"] = {**_image_metrics(outs, truths, size), "size": size}
        p2m["translated_over_untranslated"] = _ratio(p2m["translated"], p2m["untranslated_product_photo"])
        grid_rows["product -> model"] = [(open_rgb(catalog.image_path(it)), outs[i], truths[i])
                                         for i, it in enumerate(items[: cfg.grid_rows])]
    report["product_to_model"] = p2m

    # model -> product, over the product photos
    m2p: dict = {"searched": "product photos"}
    m2p["untranslated_front_model_photo"], _ = recall_at_k(front_vec, own, prod_vec, prod_items, k)
    m2p["true_product_photo"], _ = recall_at_k(prod_vec, own, prod_vec, prod_items, k)
    if to_product is not None:
        outs = []
        for chunk in batched(items, cfg.batch_size):
            outs += to_product.to_product([open_rgb(catalog.root / fronts[it.id]) for it in chunk])
        m2p["translated"], ranks = recall_at_k(_embed(encoder, outs, cfg.batch_size), own, prod_vec, prod_items, k)
        truths = [open_rgb(catalog.image_path(it)) for it in items]
        size = int(to_product.capabilities()["image_size"])
        m2p["to_true_product_photo"] = {**_image_metrics(outs, truths, size), "size": size}
        m2p["translated_over_untranslated"] = _ratio(m2p["translated"], m2p["untranslated_front_model_photo"])
        grid_rows["model -> product"] = [(open_rgb(catalog.root / fronts[it.id]), outs[i], truths[i])
                                         for i, it in enumerate(items[: cfg.grid_rows])]
    report["model_to_product"] = m2p
    if grid_path and grid_rows:
        panels = [_grid(rows, cfg.grid_cell, f"{name}: input | translation | truth") for name, rows in grid_rows.items()]
        w = sum(p.width for p in panels) + 8 * (len(panels) - 1)
        sheet = Image.new("RGB", (w, max(p.height for p in panels)), (255, 255, 255))
        x = 0
        for p in panels:
            sheet.paste(p, (x, 0))
            x += p.width + 8
        from catalog import atomic_path

        with atomic_path(Path(grid_path)) as tmp:
            sheet.save(tmp, format="PNG")
        report["grid"] = str(grid_path)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None
