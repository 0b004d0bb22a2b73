"""Crawler acceptance run and speed: a 300-product crawl of the demo shop with real Chromium.

In one process, against one demo shop (so the numbers compare on the same machine state):
  * the full crawl (default 300 products, --concurrency 4, no delay): products recovered,
    attribute values equal to the renderer's ground truth (target >= 99 %), products/s;
  * the first 60 products at concurrency 1 and 4, to show what parallel pages buy;
  * the first 60 products from a shop answering 20 % of page and image requests with
    429/503, to show what politeness costs;
  * real photos: 80 women's-apparel products of ../shared/data/myntra-a (with the photos that
    sample lists twice under two ids) served by the demo shop, to show the pipeline is not
    fitted to rendered images and that duplicate photos are dropped (skipped when absent).
The machine is shared: the load average before and after is recorded with the numbers.

    .venv/bin/python benchmarks/bench_crawl.py [--products 300] [--out benchmarks/results/bench_crawl.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe_machine  # noqa: E402


def machine() -> dict:
    from crawler.browser import CHROMIUM

    try:
        chromium = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        chromium = "missing"
    return describe_machine(chromium=chromium)


def accuracy(source_dir: Path, out: Path) -> dict:
    from catalog import load_catalog

    source = load_catalog(source_dir, check_images=False)
    crawled = load_catalog(out, strict=True)
    got = crawled.by_id()
    missing = sorted(set(source.by_id()) - set(got))
    per_group = {}
    equal = total = 0
    for g in source.schema.names:
        eq = sum(got[it.id].labels.get(g) == it.labels.get(g) for it in source.items if it.id in got)
        n = sum(1 for it in source.items if it.id in got)
        per_group[g] = round(eq / n, 4) if n else None
        equal += eq
        total += n
    return {
        "source_products": len(source.items),
        "recovered": len(got),
        "missing": missing[:20],
        "attribute_values_equal": equal,
        "attribute_values_total": total,
        "attribute_accuracy": round(equal / total, 5) if total else None,
        "accuracy_per_group": per_group,
    }


MYNTRA = ROOT.parent / "shared" / "data" / "myntra-a"


def myntra_subset(work: Path, n: int = 80) -> tuple[Path, set[str], int] | None:
    """A small shop catalog of real photos: n women's-apparel rows, duplicate photos included.

    Returns the folder, the ids a crawl should keep (the first of each photo) and the number
    of rows that repeat an earlier photo. The photos are copied to a temp folder only.
    """
    import hashlib
    import shutil

    from catalog import infer_schema, load_catalog, write_catalog
    from catalog.format import read_rows

    if not (MYNTRA / "catalog.csv").is_file():
        return None
    header, rows = read_rows(MYNTRA / "catalog.csv")
    dict_rows = [dict(zip(header, r, strict=False)) for _, r in rows]
    schema, _ = infer_schema(dict_rows, ["category", "color", "pattern"])
    cat = load_catalog(MYNTRA, schema=schema, check_images=False)
    women = [it for it in cat.items if it.extra.get("gender") == "women" and it.extra.get("master_category") == "apparel"]
    by_hash: dict[str, list] = {}
    for it in women:
        by_hash.setdefault(hashlib.sha256((MYNTRA / it.img_path).read_bytes()).hexdigest(), []).append(it)
    dup_groups = [g for g in by_hash.values() if len(g) > 1][:10]
    chosen = [it for g in dup_groups for it in g]
    chosen_ids = {it.id for it in chosen}
    chosen += [it for it in women if it.id not in chosen_ids][: max(0, n - len(chosen))]
    chosen.sort(key=lambda it: int(it.id) if it.id.isdigit() else it.id)
    out = work / "myntra_shop"
    (out / "images").mkdir(parents=True)
    for it in chosen:
        shutil.copyfile(MYNTRA / it.img_path, out / it.img_path)
    write_catalog(out, chosen, schema)
    # The shop lists products by category and colour in catalog order; the first listed wins.
    seen, keep, dups = set(), set(), 0
    order = sorted(chosen, key=lambda it: (it.labels.get("category") or "", it.labels.get("color") or ""))
    for it in order:
        h = hashlib.sha256((MYNTRA / it.img_path).read_bytes()).hexdigest()
        if h in seen:
            dups += 1
        else:
            seen.add(h)
            keep.add(it.id)
    return out, keep, dups


def run_crawl(base_url: str, out: Path, **kwargs) -> dict:
    from dataclasses import asdict

    from crawler.crawl import CrawlConfig, crawl

    def cpu() -> float:  # this process (crawler + shop) and its reaped children (Playwright, Chromium)
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    summary = crawl(CrawlConfig(site="demo", out=out, start_url=base_url, delay=0, progress=True, seed=0, **kwargs))
    wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    s = asdict(summary)
    # The machine is shared: CPU seconds per product do not depend on what else runs.
    s["cpu_s"] = round(cpu_s, 1)
    s["cpu_s_per_product"] = round(cpu_s / max(1, summary.products), 3)
    s.pop("top_unknown_tags")
    s["wall_s"] = round(wall, 2)
    s["products_per_s"] = round(summary.products / wall, 3)
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--slice", type=int, default=60, help="products in the side-by-side runs")
    ap.add_argument("--catalog", help="an already rendered demo catalog to serve")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_crawl.json"))
    args = ap.parse_args()

    from catalog import atomic_write_text
    from crawler.demo.shop import DemoShop, ShopConfig, ensure_catalog

    result: dict = {"benchmark": "crawl", "machine": machine(), "load_before": os.getloadavg()}
    t0 = time.perf_counter()
    source = Path(args.catalog) if args.catalog else ensure_catalog(args.products, args.seed)
    result["render_or_cache_s"] = round(time.perf_counter() - t0, 1)
    work = Path(tempfile.mkdtemp(prefix="bench_crawl_"))
    try:
        with DemoShop(source, ShopConfig()) as shop:
            out = work / "full"
            print(f"full crawl of {args.products} products at concurrency {args.concurrency} ...", flush=True)
            full = run_crawl(shop.base_url, out, concurrency=args.concurrency)
            result["full"] = {"concurrency": args.concurrency, **full, **accuracy(source, out)}
            side = {}
            for c in (1, args.concurrency):
                print(f"first {args.slice} products at concurrency {c} ...", flush=True)
                side[f"concurrency_{c}"] = run_crawl(shop.base_url, work / f"c{c}", concurrency=c, max_products=args.slice)
            result["side_by_side"] = side
            result["speedup_parallel_pages"] = round(
                side[f"concurrency_{args.concurrency}"]["products_per_s"] / side["concurrency_1"]["products_per_s"], 2
            )
        faulty_cfg = ShopConfig(fail_rate=0.2, retry_after=1, fault_seed=1)
        with DemoShop(source, faulty_cfg) as faulty:
            print(f"first {args.slice} products from a shop answering 20 % 429/503 ...", flush=True)
            f = run_crawl(faulty.base_url, work / "faulty", concurrency=args.concurrency, max_products=args.slice)
            f["answers"] = {str(k): sum(r.status == k for r in faulty.requests) for k in (200, 429, 503)}
            result["faulty_shop"] = {"fail_rate": 0.2, **f}
        sub = myntra_subset(work)
        if sub is None:
            result["myntra_real_photos"] = {"skipped": f"{MYNTRA} not present"}
        else:
            shop_dir, keep, dups = sub
            with DemoShop(shop_dir, ShopConfig()) as real:
                print("real photos (myntra-a subset) ...", flush=True)
                r = run_crawl(real.base_url, work / "myntra", concurrency=args.concurrency)
            from catalog import load_catalog

            got = set(load_catalog(work / "myntra", strict=True).by_id())
            result["myntra_real_photos"] = {
                **r, "shop_products": len(keep) + dups, "expected_kept": len(keep), "duplicate_photos_in_shop": dups,
                "kept_ids_match": got == keep, "missing": sorted(keep - got)[:10], "unexpected": sorted(got - keep)[:10],
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = os.getloadavg()
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    full = result["full"]
    print(
        f"\n{full['recovered']}/{full['source_products']} products recovered, attribute accuracy "
        f"{full['attribute_accuracy']:.4f}, {full['products_per_s']:.2f} products/s (wall {full['wall_s']} s); "
        f"parallel pages x{result['speedup_parallel_pages']}; with 20 % faults "
        f"{result['faulty_shop']['products_per_s']:.2f} products/s, {result['faulty_shop']['failed']} failed"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
