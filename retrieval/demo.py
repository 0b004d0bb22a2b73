"""``python -m retrieval.demo --out DIR``: the whole product on a fresh machine, in minutes.

1. the demo shop's catalog: crawled from the built-in demo shop with the real crawler when
   it is installed, else rendered directly (same products, same files);
2. the demo encoder: the default ``train-encoder`` recipe on the demo catalog (seconds;
   ``--encoder builtin`` for the ImageNet one), and the FAISS index of the catalog with it;
3. the shipped demo generators (``generators/demo_checkpoints``; no training);
4. the gRPC server, started as its own process on a free port;
5. a sample search with an attribute edit, through the Python client;
6. a labelled contact sheet PNG: query, modified query, top hits.

Every step skips work whose result is already in DIR, so a second run takes seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from catalog import CATALOG_FILE, atomic_path, atomic_write_text, load_catalog

ROOT = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINTS = ROOT / "generators" / "demo_checkpoints"
log = logging.getLogger("retrieval.demo")


@dataclass
class DemoOptions:
    out: Path
    products: int = 120
    seed: int = 0
    top_k: int = 8
    crawl: str = "auto"  # auto | yes | no
    query: str | None = None  # item id; default: the first item the edit changes
    edit: str | None = None  # GROUP=VALUE; default: a colour the generator supports
    port: int = 0
    generators: list[Path] | None = None  # default: the shipped demo checkpoints
    encoder: str = "demo"  # demo: trained on the demo catalog in seconds (indexing.train_head); builtin: ImageNet


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


# --- 1. catalog ------------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")


def crawler_available() -> bool:
    """The crawler package and the browser it drives are both installed."""
    modules = all(importlib.util.find_spec(m) is not None for m in ("crawler.crawl", "crawler.demo.shop"))
    return modules and CHROMIUM.exists()


def make_catalog(opts: DemoOptions) -> Path:
    done = opts.out / "catalog.done"  # names the finished catalog folder; written last
    if done.is_file():
        out = opts.out / done.read_text().strip()
        if (out / CATALOG_FILE).is_file():
            _say(f"catalog already at {out} ({len(load_catalog(out, check_images=False))} items)")
            return out
    out = _fetch_catalog(opts)
    atomic_write_text(done, out.name + "\n")
    return out


def _fetch_catalog(opts: DemoOptions) -> Path:
    out = opts.out / "catalog"
    shutil.rmtree(out, ignore_errors=True)  # an unfinished earlier attempt
    shutil.rmtree(opts.out / "catalog_rendered", ignore_errors=True)
    use_crawler = opts.crawl == "yes" or (opts.crawl == "auto" and crawler_available())
    if use_crawler:
        _say(f"crawling the built-in demo shop ({opts.products} products) with the real crawler and browser")
        try:
            crawl_demo_shop(out, opts)
            return out
        except (subprocess.CalledProcessError, RuntimeError, TimeoutError) as exc:
            if opts.crawl == "yes":
                raise SystemExit(f"crawl of the demo shop failed: {exc}") from None
            _say(f"crawl failed ({exc}); rendering the same catalog directly instead")
            out = opts.out / "catalog_rendered"
    else:
        _say(f"rendering the demo catalog ({opts.products} products; crawler or {CHROMIUM} not installed)")
    from crawler.demo.render import render_catalog

    render_catalog(out, products=opts.products, seed=opts.seed)
    return out


def crawl_demo_shop(out: Path, opts: DemoOptions) -> None:
    """Serve the demo shop on a free local port and crawl it with the real crawler."""
    shop = subprocess.Popen(
        [sys.executable, "-m", "crawler", "demo", "serve", "--port", "0",
         "--products", str(opts.products), "--seed", str(opts.seed)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        url = _read_line_with(shop, ("http://",), timeout=300)
        url = url[url.index("http://"):].split()[0]
        # the shop is our own process on 127.0.0.1: no politeness delay needed
        subprocess.run(
            [sys.executable, "-m", "crawler", "crawl", "--site", "demo", "--start-url", url, "--out", str(out),
             "--max-products", str(opts.products), "--delay", "0"],
            cwd=ROOT, check=True,
        )
    finally:
        _stop(shop)


# --- 2. index ----------------------------------------------------------------------------------
def make_encoder(catalog_dir: Path, opts: DemoOptions) -> Path | None:
    """The encoder folder the index and the server share (None: the built-in ImageNet encoder).

    The demo's own encoder is the project's default ``train-encoder`` recipe on the demo
    catalog: frozen EfficientNet-Lite0 features with category and colour blocks learned on top,
    trained in seconds. It is what lets "this, but black" find black items at all: the built-in
    ImageNet embedding barely tells colours apart (docs/generators_eval.md).
    """
    if opts.encoder == "builtin":
        _say("encoder: the built-in EfficientNet-Lite0 (ImageNet), no training")
        return None
    from indexing.train_head import train_demo_encoder

    out = opts.out / "encoder"
    t0 = time.perf_counter()
    enc, trained = train_demo_encoder(catalog_dir, out, device="cpu")
    how = f"trained in {time.perf_counter() - t0:.0f} s" if trained else "already trained on this catalog"
    _say(f"encoder: {enc.encoder_id} ({enc.dim}-d, {how}; category and colour learned on the demo catalog, "
         f"--encoder builtin for the ImageNet one) at {out}")
    return out


def build_index(catalog_dir: Path, opts: DemoOptions, encoder_dir: Path | None = None) -> Path:
    from indexing.encoder import Encoder

    index_dir = opts.out / "index"
    catalog = load_catalog(catalog_dir)
    encoder = Encoder.load(str(encoder_dir) if encoder_dir else None, "auto")
    manifest = index_dir / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if m.get("catalog_checksum") == catalog.checksum() and m.get("encoder", {}).get("checksum") == encoder.checksum:
            _say(f"index of this catalog and encoder already at {index_dir}")
            return index_dir
        shutil.rmtree(index_dir, ignore_errors=True)  # another catalog or encoder: build afresh
    _say(f"building the FAISS index ({encoder.encoder_id})")
    from indexing.build import BuildConfig, build

    t0 = time.perf_counter()
    store = build(catalog, index_dir, encoder, BuildConfig(num_workers=1))
    _say(f"indexed {len(store)} items in {time.perf_counter() - t0:.0f} s")
    return index_dir


# --- 3. generators -------------------------------------------------------------------------------
def demo_generators() -> list[Path]:
    ckpts = sorted(DEMO_CHECKPOINTS.glob("*.pt"))
    if not ckpts:
        raise SystemExit(f"no demo generator checkpoints in {DEMO_CHECKPOINTS}")
    return ckpts


# --- 4. server ----------------------------------------------------------------------------------
def _read_line_with(proc: subprocess.Popen, needles: Sequence[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before printing {needles}")
            continue
        if any(n in line for n in needles):
            return line.strip()
    raise TimeoutError(f"no line with {needles} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_server(index_dir: Path, generators: Sequence[Path], log_path: Path, port: int = 0,
                   extra: Sequence[str] = ()) -> Iterator[str]:
    """Start ``python -m retrieval serve`` as a process; yield ``host:port`` once it is bound."""
    cmd = [sys.executable, "-m", "retrieval", "serve", "--index", str(index_dir), "--port", str(port),
           "--generators", *map(str, generators), *extra]
    with open(log_path, "w") as log_fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log_fh, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = _read_line_with(proc, ("LISTENING",), timeout=120)
        yield line.split()[1]
    finally:
        _stop(proc)


# --- 5./6. search and contact sheet ------------------------------------------------------------
def _font(size: int) -> ImageFont.ImageFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                 "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"):
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def contact_sheet(tiles: Sequence[tuple[Image.Image, Sequence[str]]], title: Sequence[str], out: Path,
                  tile: int = 200, per_row: int = 5) -> Path:
    """A grid of labelled tiles under title lines, written atomically as PNG.

    Tiles are scaled to fit (small GAN outputs are enlarged so they can be judged by eye).
    """
    label_h, pad, title_h = 54, 8, 12 + 22 * len(title)
    rows = (len(tiles) + per_row - 1) // per_row
    w = per_row * (tile + pad) + pad
    h = title_h + rows * (tile + label_h + pad) + pad
    sheet = Image.new("RGB", (w, h), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    for j, line in enumerate(title):
        draw.text((pad, 8 + 22 * j), line, fill=(0, 0, 0) if j == 0 else (90, 90, 90), font=_font(16 if j == 0 else 13))
    small = _font(12)
    for i, (im, lines) in enumerate(tiles):
        x = pad + (i % per_row) * (tile + pad)
        y = title_h + (i // per_row) * (tile + label_h + pad)
        thumb = ImageOps.contain(im.convert("RGB"), (tile, tile), Image.Resampling.BICUBIC)
        sheet.paste(Image.new("RGB", (tile, tile), "white"), (x, y))
        sheet.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
        for j, text in enumerate(lines[:3]):
            text = str(text)
            while text and draw.textlength(text, font=small) > tile - 4:  # cut to the tile's width
                text = text[:-2] + "…"
            draw.text((x + 2, y + tile + 2 + j * 16), text, fill=(0, 0, 0) if j else (20, 60, 160), font=small)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out


def _pick_query(client, attrs, opts: DemoOptions, catalog_dir: Path) -> tuple[str, str]:
    """An item and an edit that changes it. Default: the first item, and the colour (else the
    first editable group's value) that its unedited search finds least, of those most products of
    its category have: an edit towards what the shopper does not already get, with many right
    answers to find."""
    from collections import Counter

    cat = load_catalog(catalog_dir, check_images=False)
    editable = {g.name: list(g.editable_values) for g in attrs.groups if g.editable_values}
    if not editable:
        raise SystemExit("the loaded generators support no attribute edit")
    if opts.edit:
        group, value = opts.edit.split("=", 1)
    else:
        group = "color" if "color" in editable else next(iter(editable))
        value = ""
    for item in cat.items:
        if opts.query and item.id != opts.query:
            continue
        own = item.labels.get(group)
        if not value:
            anchor = item.labels.get("category")
            counts = Counter(it.labels.get(group) for it in cat.items if it.labels.get("category") == anchor)
            found = Counter(h.item.attributes.get(group) for h in client.search(item_id=item.id, top_k=opts.top_k).hits)
            choices = sorted((v for v in editable[group] if v != own), key=lambda v: (found[v], -counts[v], v))
            if not choices:
                continue
            return item.id, f"{group}={choices[0]}"
        return item.id, f"{group}={value}"
    raise SystemExit(f"no item to query with an edit of {group!r}" + (f" (id {opts.query})" if opts.query else ""))


def _worn_query(client, attrs, catalog_dir: Path, item_id: str, k: int) -> dict | None:
    """Search with the item's own photo worn by a model, translated to a product shot and as it
    is: where does the item rank among the product photos, and how many hits share its category
    and colour? (None: no translator or no model photo.)"""
    if not attrs.model_to_product:
        return None
    item = next(it for it in load_catalog(catalog_dir).items if it.id == item_id)
    if not item.model_img_paths:
        return None
    from generators.pairs import pose_photo_features, pose_pick

    # the photo the pose rules take for the front full-body view (the thesis's pairs step)
    paths = [catalog_dir / p for p in item.model_img_paths]
    pick = pose_pick(pose_photo_features(paths, progress=False), [list(range(len(paths)))])[0]
    photo = item.model_img_paths[pick[0] if pick else 0]
    data = (catalog_dir / photo).read_bytes()
    want = {g: item.labels.get(g) for g in ("category", "color")}

    def run(mods: list[str]) -> dict:
        hits = client.search(data, modifications=mods, top_k=k).hits
        ids = [h.id for h in hits]
        same = sum(all(h.item.attributes.get(g) == v for g, v in want.items()) for h in hits)
        return {"rank": ids.index(item_id) + 1 if item_id in ids else None, "same_category_and_colour": same}

    def show(r: dict) -> str:
        where = f"the item #{r['rank']}" if r["rank"] else f"the item not in the top {k}"
        return f"{where}, {r['same_category_and_colour']}/{k} hits {want['category']}/{want['color']}"

    out = {"photo": photo, "translated": run(["to_product"]), "untranslated": run([])}
    _say(f"the item worn by a model ({photo}) translated to a product shot: {show(out['translated'])}; "
         f"as it is: {show(out['untranslated'])}")
    return out


def run_demo(opts: DemoOptions) -> Path:
    from io import BytesIO

    from retrieval.client import RetrievalClient

    t0 = time.perf_counter()
    opts.out.mkdir(parents=True, exist_ok=True)
    catalog_dir = make_catalog(opts)
    encoder_dir = make_encoder(catalog_dir, opts)
    index_dir = build_index(catalog_dir, opts, encoder_dir)
    generators = opts.generators or demo_generators()
    log_path = opts.out / "server.log"
    _say(f"starting the server with generators {', '.join(p.name for p in generators)} (log: {log_path})")
    extra = ["--encoder", str(encoder_dir)] if encoder_dir else []
    with running_server(index_dir, generators, log_path, opts.port, extra) as address, \
            RetrievalClient(address) as client:
        client.wait_until_serving(timeout=180)
        _say(f"server SERVING at {address}")
        attrs = client.list_attributes()
        item_id, edit = _pick_query(client, attrs, opts, catalog_dir)
        query = client.get_item(item_id, include_image=True)
        # by item id: the item itself is left out of the hits, and the edit starts from its known labels
        resp = client.search(item_id=item_id, modifications=[edit], top_k=opts.top_k, return_modified_image=True)
        plain = client.search(item_id=item_id, top_k=opts.top_k)
        _say(f"search for item {item_id} with edit {edit}:")
        from retrieval.client import format_hits

        print(format_hits(resp), flush=True)
        tiles = [
            (Image.open(BytesIO(query.image)), ["query", item_id, _attrs(query.item.attributes)]),
            (Image.open(BytesIO(resp.modified_image)), [f"modified: {edit}", "(generator output)", ""]),
        ]
        if attrs.product_to_model:
            worn = client.modify(item_id=item_id, modifications=["to_model"])
            tiles.append((Image.open(BytesIO(worn)), ["product_to_model", "(dressed on the mannequin)", ""]))
        worn_rank = _worn_query(client, attrs, catalog_dir, item_id, opts.top_k)
        for h in resp.hits:
            img = client.get_item(h.id, include_image=True).image
            tiles.append((Image.open(BytesIO(img)), [f"#{h.rank} {h.id}  {h.score:.3f}", _attrs(h.item.attributes),
                                                    h.item.name]))
        timings = ", ".join(f"{t.stage} {t.ms:.0f} ms" for t in resp.timings)
        title = [f"query {item_id} modified with {edit}  ->  top {len(resp.hits)} hits (score: cosine similarity)",
                 f"server timings: {timings}"]
        per_row = min(6, max(4, -(-len(tiles) // 2)))  # two rows for the default 8 hits
        sheet = contact_sheet(tiles, title, opts.out / "contact_sheet.png", per_row=per_row)
        group, value = edit.split("=", 1)
        summary = {
            "query": item_id, "edit": edit, "address": address,
            "hits": [{"id": h.id, "score": round(h.score, 4), **dict(h.item.attributes)} for h in resp.hits],
            "hits_without_edit": [h.id for h in plain.hits],
            f"hits_with_{group}={value}": sum(h.item.attributes.get(group) == value for h in resp.hits),
            f"hits_with_{group}={value}_without_edit": sum(h.item.attributes.get(group) == value for h in plain.hits),
            "timings_ms": {t.stage: round(t.ms, 1) for t in resp.timings},
            "model_to_product": worn_rank,
        }
    with atomic_path(opts.out / "demo_result.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    _say(f"{summary[f'hits_with_{group}={value}']}/{len(resp.hits)} hits have {group}={value} with the edit, "
         f"{summary[f'hits_with_{group}={value}_without_edit']}/{len(plain.hits)} without it")
    _say(f"done in {time.perf_counter() - t0:.0f} s")
    _say(f"contact sheet: {sheet.resolve()}")
    return sheet


def _attrs(attributes) -> str:
    keys = ("category", "color", "sleeve_length", "length")
    return " ".join(attributes[k] for k in keys if k in attributes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m retrieval.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--products", type=int, default=DemoOptions.products)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-k", "--top-k", type=int, default=8)
    p.add_argument("--crawl", choices=["auto", "yes", "no"], default="auto",
                   help="crawl the demo shop with the crawler (auto: when it is installed) or render it")
    p.add_argument("--query", help="query item id")
    p.add_argument("--edit", help="GROUP=VALUE (default: the colour the unedited search finds least, of those "
                                  "the query's category has most of)")
    p.add_argument("--encoder", choices=["demo", "builtin"], default=DemoOptions.encoder,
                   help="demo: train the default train-encoder recipe on the demo catalog (seconds); "
                        "builtin: the ImageNet encoder")
    p.add_argument("--generators", nargs="+", type=Path, metavar="CKPT",
                   help=f"generator checkpoints (default: {DEMO_CHECKPOINTS.relative_to(ROOT)}/*.pt)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    run_demo(DemoOptions(out=args.out, products=args.products, seed=args.seed, top_k=args.top_k,
                         crawl=args.crawl, query=args.query, edit=args.edit, generators=args.generators,
                         encoder=args.encoder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
