"""Render the procedural demo catalog (product shots, model photos, German tags, ground truth).

``python -m crawler demo render --out DIR --products N --seed S`` writes a complete catalog
folder; ``--variant-of ID --set group=value --catalog DIR --out FILE`` re-renders one product
of it with attributes changed and everything else (camera, model, noise) equal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from catalog import Item, Schema, SchemaError, atomic_write_text, write_catalog
from crawler.demo.draw import render_view, render_views
from crawler.demo.spec import MODEL_VIEWS, VIEWS, ProductSpec, applies, check_changes, make_spec

RENDER_VERSION = 1
GROUND_TRUTH_FILE = "ground_truth.json"
MANIFEST_FILE = "render.json"


class RenderError(ValueError):
    """A request the renderer cannot satisfy (unknown product, not a demo catalog, bad --set)."""


# --- one product --------------------------------------------------------------------------
def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RenderError("JPEG encoding failed")
    return buf.tobytes()


def _write(path: Path, data: bytes) -> None:
    """Temp file then rename: a reader never sees a half-written image.

    No fsync per image (5,000 of them would dominate the render time); the catalog CSV,
    written last with ``write_catalog``, is fsynced, so a crash loses at most images that
    no row refers to yet, and a rerun rewrites them byte for byte.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def product_files(spec: ProductSpec) -> dict[str, str]:
    """view -> relative path, for all five photos."""
    return {"product": spec.img_path, **spec.model_files}


def render_product_files(spec: ProductSpec, out: Path, size: int = 256) -> None:
    images = render_views(spec, VIEWS, size)
    for view, rel in product_files(spec).items():
        _write(out / rel, encode_jpeg(images[view], spec.jpeg_quality[view]))


def make_item(spec: ProductSpec, schema: Schema) -> Item:
    return Item(
        id=spec.id, img_path=spec.img_path, img_url="", model_img_urls=[], product_url="",
        brand=spec.brand, name=spec.name, attributes=list(spec.tags), labels=spec.catalog_labels(schema),
        model_img_paths=[spec.model_files[v] for v in spec.model_order],
    )


def render_one(seed: int, index: int, out: str | Path, size: int = 256, resume: bool = False) -> ProductSpec:
    """Render product ``index`` into the catalog folder ``out`` (skipped when ``resume`` and done)."""
    spec = make_spec(seed, index)
    root = Path(out)
    if not (resume and all((root / rel).is_file() for rel in product_files(spec).values())):
        render_product_files(spec, root, size)
    return spec


def _render_in_workers(out: Path, products: int, seed: int, workers: int, size: int, resume: bool, bar) -> None:
    """Fan the products out over ``workers`` fresh interpreters (every ``workers``-th product each).

    Fresh processes rather than a fork of this one: a fork copies whatever thread pools
    (OpenCV's, OpenMP's) the caller has running, mid-lock, and can hang; a fork-server or
    spawn pool re-imports the caller's ``__main__``, which loops forever in a script without
    a main guard. Output does not depend on the split: product i depends on (seed, i) only.
    """
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    procs: list[tuple[subprocess.Popen, object]] = []
    done: queue.Queue = queue.Queue()

    def pump(stream) -> None:
        for _ in stream:
            done.put(1)
        done.put(None)

    with contextlib.ExitStack() as stack:
        stack.callback(_stop, procs)
        for k in range(workers):
            err = stack.enter_context(tempfile.TemporaryFile())
            cmd = [sys.executable, "-m", "crawler.demo.render_worker", "--out", str(out), "--seed", str(seed),
                   "--products", str(products), "--start", str(k), "--step", str(workers), "--size", str(size)]
            if resume:
                cmd.append("--resume")
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            procs.append((p, err))
            threading.Thread(target=pump, args=(p.stdout,), daemon=True).start()
        finished = 0
        while finished < workers:
            if done.get() is None:
                finished += 1
            else:
                bar.update(1)
        for p, err in procs:
            if p.wait() != 0:
                err.seek(0)
                tail = err.read().decode("utf-8", "replace")[-2000:]
                raise RenderError(f"render worker {' '.join(p.args[3:])} failed (exit {p.returncode}):\n{tail}")


def _stop(procs: list) -> None:
    for p, _ in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()


# --- the catalog --------------------------------------------------------------------------
def render_catalog(
    out: str | Path,
    products: int,
    seed: int,
    workers: int | None = None,
    size: int = 256,
    progress: bool = False,
    resume: bool = False,
) -> Path:
    """Render ``products`` products into the catalog folder ``out`` and return it.

    Product ``i`` depends only on ``(seed, i)``: the first 10 products of a 1,000-product
    catalog are the same as those of a 10-product one, and the output is byte-identical
    whatever ``workers`` is. ``resume`` keeps products whose five photos already exist.
    """
    if products < 1:
        raise RenderError(f"--products must be at least 1, got {products}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "model_images").mkdir(parents=True, exist_ok=True)
    schema = Schema.default()
    workers = max(1, min(workers or os.cpu_count() or 1, (products + 3) // 4))
    bar = _progress(products, progress)
    try:
        if workers == 1:
            for i in range(products):
                render_one(seed, i, out, size, resume)
                bar.update(1)
        else:
            _render_in_workers(out, products, seed, workers, size, resume, bar)
    finally:
        bar.close()
    specs = [make_spec(seed, i) for i in range(products)]
    truth = {spec.model_files[v]: v for spec in specs for v in MODEL_VIEWS}
    atomic_write_text(out / GROUND_TRUTH_FILE, json.dumps(truth, indent=1, sort_keys=True) + "\n")
    manifest = {
        "generator": "crawler.demo.render", "version": RENDER_VERSION, "seed": seed, "products": products,
        "size": size, "ids": {spec.id: spec.index for spec in specs},
    }
    atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
    write_catalog(out, [make_item(s, schema) for s in specs], schema)
    return out


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="product", desc="render", disable=not enabled, smoothing=0.1)


def load_manifest(catalog_dir: str | Path) -> dict:
    path = Path(catalog_dir) / MANIFEST_FILE
    if not path.is_file():
        raise RenderError(f"{catalog_dir}: no {MANIFEST_FILE}; not a catalog written by `demo render`")
    return json.loads(path.read_text(encoding="utf-8"))


def spec_for(catalog_dir: str | Path, item_id: str, changes: dict[str, str] | None = None) -> ProductSpec:
    manifest = load_manifest(catalog_dir)
    ids = manifest["ids"]
    if item_id not in ids:
        sample = ", ".join(list(ids)[:5])
        raise RenderError(f"product {item_id!r} is not in {catalog_dir} ({len(ids)} products, e.g. {sample})")
    return make_spec(int(manifest["seed"]), int(ids[item_id]), changes)


def render_variant(
    catalog_dir: str | Path,
    item_id: str,
    changes: dict[str, str],
    out_path: str | Path,
    view: str = "product",
) -> Path:
    """Re-render product ``item_id`` with ``changes`` ({group: value}) and nothing else changed.

    ``view`` picks the photo (``product`` or one of the model views). Raises
    :class:`catalog.SchemaError` naming the allowed groups/values for a bad change, including
    groups that do not apply to the product's category (a skirt has no sleeves).
    """
    if view not in VIEWS:
        raise RenderError(f"unknown view {view!r}; views: {', '.join(VIEWS)}")
    if not changes:
        raise RenderError("no attribute change given; use --set group=value")
    original = spec_for(catalog_dir, item_id)
    check_changes(original, changes, Schema.for_catalog(catalog_dir))
    spec = spec_for(catalog_dir, item_id, changes)
    manifest = load_manifest(catalog_dir)
    img = render_view(spec, view, int(manifest.get("size", 256)))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _write(out_path, encode_jpeg(img, spec.jpeg_quality[view]))
    return out_path


def variant_labels(catalog_dir: str | Path, item_id: str, changes: dict[str, str]) -> dict[str, str | None]:
    """Catalog labels of the variant (what its row would say)."""
    spec = spec_for(catalog_dir, item_id, changes)
    return spec.catalog_labels(Schema.for_catalog(catalog_dir))


# --- contact sheets -----------------------------------------------------------------------
def _font(size: int = 11):
    """DejaVu Sans where the system has it (umlauts), else Pillow's built-in font."""
    from PIL import ImageFont

    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default()


def contact_sheet(catalog_dir: str | Path, out_png: str | Path, n: int = 12, thumb: int = 128) -> Path:
    """Grid: per product its shot, the four model photos in pose order, and the shot at 64 px."""
    from PIL import Image, ImageDraw

    from catalog import load_catalog

    cat = load_catalog(catalog_dir, check_images=False)
    truth = json.loads((Path(catalog_dir) / GROUND_TRUTH_FILE).read_text(encoding="utf-8"))
    items = cat.items[:n]
    label_w = 230
    sheet = Image.new("RGB", (label_w + thumb * 6, thumb * len(items)), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(10)
    for row, it in enumerate(items):
        y = row * thumb
        by_pose = {truth[p]: p for p in it.model_img_paths}
        paths = [it.img_path] + [by_pose[v] for v in MODEL_VIEWS]
        for col, rel in enumerate(paths):
            with Image.open(Path(catalog_dir) / rel) as im:
                sheet.paste(im.convert("RGB").resize((thumb, thumb)), (label_w + col * thumb, y))
        with Image.open(Path(catalog_dir) / it.img_path) as im:
            small = im.convert("RGB").resize((64, 64), Image.BILINEAR).resize((thumb, thumb), Image.NEAREST)
        sheet.paste(small, (label_w + 5 * thumb, y))
        text = [it.id, it.name[:34], it.brand] + [f"{g}: {v}" for g, v in it.labels.items() if v]
        draw.multiline_text((4, y + 2), "\n".join(text), fill=(0, 0, 0), spacing=1, font=font)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png


def sweep_sheet(seed: int, index: int, out_png: str | Path, view: str = "product", thumb: int = 96,
                small: bool = True) -> Path:
    """One product with every value of every applicable group: checks values are distinguishable."""
    from PIL import Image, ImageDraw

    schema = Schema.default()
    base = make_spec(seed, index)
    rows: list[tuple[str, list[tuple[str, np.ndarray]]]] = []
    for group in schema.names:
        if not applies(group, base.category):
            continue
        cells = []
        for value in schema.values(group):
            try:
                check_changes(base, {group: value}, schema)
            except SchemaError:
                continue
            cells.append((value, render_view(make_spec(seed, index, {group: value}), view)))
        rows.append((group, cells))
    width = max(len(c) for _, c in rows)
    tw = thumb * (2 if small else 1)
    sheet = Image.new("RGB", (90 + tw * width, (thumb + 12) * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (group, cells) in enumerate(rows):
        y = r * (thumb + 12)
        draw.text((2, y + thumb // 2), group, fill=(0, 0, 0))
        for c, (value, img) in enumerate(cells):
            im = Image.fromarray(img)
            x = 90 + c * tw
            sheet.paste(im.resize((thumb, thumb)), (x, y))
            if small:
                sheet.paste(im.resize((64, 64), Image.BILINEAR).resize((thumb, thumb), Image.NEAREST), (x + thumb, y))
            draw.text((x + 2, y + thumb), value, fill=(200, 0, 0))
    sheet.save(out_png)
    return Path(out_png)


# --- command line -------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="catalog folder to write (or the image file with --variant-of)")
    p.add_argument("--products", type=int, default=200, help="number of products (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed -> byte-identical catalog")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--resume", action="store_true", help="keep products whose photos already exist")
    p.add_argument("--contact-sheet", metavar="PNG", help="also write a contact sheet of the first products")
    p.add_argument("--sheet-products", type=int, default=12, help="products on the contact sheet")
    p.add_argument("--variant-of", metavar="ID", help="re-render this product of --catalog with --set changes")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="GROUP=VALUE",
                   help="attribute change for --variant-of (repeatable)")
    p.add_argument("--catalog", metavar="DIR", help="the rendered catalog that --variant-of refers to")
    p.add_argument("--view", default="product", choices=VIEWS, help="photo to re-render with --variant-of")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_sets(sets: Iterable[str]) -> dict[str, str]:
    changes: dict[str, str] = {}
    for s in sets:
        if "=" not in s:
            raise RenderError(f"--set {s!r}: expected GROUP=VALUE, e.g. --set sleeve_length=short")
        group, value = (x.strip() for x in s.split("=", 1))
        if group in changes:
            raise RenderError(f"--set {s!r}: group {group!r} given twice")
        changes[group] = value
    return changes


def run(args: argparse.Namespace) -> int:
    try:
        if args.variant_of:
            if not args.catalog:
                raise RenderError("--variant-of needs --catalog DIR (the rendered catalog the product is in)")
            changes = parse_sets(args.sets)
            path = render_variant(args.catalog, args.variant_of, changes, args.out, view=args.view)
            print(f"wrote {path} ({args.variant_of} with {', '.join(f'{g}={v}' for g, v in changes.items())})")
            return 0
        if args.sets:
            raise RenderError("--set only makes sense with --variant-of ID")
        out = render_catalog(args.out, args.products, args.seed, workers=args.workers,
                             progress=not args.no_progress, resume=args.resume)
        print(f"wrote {args.products} products to {out}")
        if args.contact_sheet:
            print(f"contact sheet: {contact_sheet(out, args.contact_sheet, n=args.sheet_products)}")
        return 0
    except (RenderError, SchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
