"""End to end with real Chromium on the demo shop: recovery, accuracy, kill -9 + resume, faults.

Small here (the shared 24-product demo catalog); the 300-product acceptance run is
benchmarks/bench_crawl.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from catalog import load_catalog
from crawler.crawl import CrawlConfig, crawl
from crawler.demo.shop import ROBOTS_TXT, DemoShop, ShopConfig
from crawler.politeness import RobotsRules

pytestmark = pytest.mark.browser

N_PRODUCTS = 24  # the shared demo_catalog_dir fixture
REPO = Path(__file__).resolve().parents[2]


def attribute_accuracy(source, crawled) -> tuple[int, int]:
    got = crawled.by_id()
    equal = total = 0
    for it in source.items:
        for g in source.schema.names:
            total += 1
            equal += got[it.id].labels.get(g) == it.labels.get(g)
    return equal, total


def crawl_cli(base_url: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "crawler", "crawl", "--site", "demo", "--start-url", base_url, "--out", str(out),
        "--delay", "0", "--concurrency", "3", "--no-progress", *extra,
    ]


@pytest.fixture(scope="module")
def source_dir(demo_catalog_dir) -> Path:
    assert len(load_catalog(demo_catalog_dir, check_images=False)) == N_PRODUCTS
    return demo_catalog_dir


@pytest.fixture(scope="module")
def shop(source_dir):
    # Small pages so every listing style (numbered pages, "load more", infinite scroll) pages.
    with DemoShop(source_dir, ShopConfig(page_size=3)) as s:
        yield s


@pytest.fixture(scope="module")
def full_crawl(chromium, shop, tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl") / "full"
    summary = crawl(CrawlConfig(site="demo", out=out, start_url=shop.base_url, concurrency=4, delay=0, progress=False))
    return out, summary


def test_crawl_recovers_every_product_with_its_attributes(source_dir, shop, full_crawl):
    out, summary = full_crawl
    source = load_catalog(source_dir)
    crawled = load_catalog(out, strict=True)  # every row valid, every image readable
    assert summary.finished and summary.failed == 0
    assert sorted(crawled.by_id()) == sorted(source.by_id())
    equal, total = attribute_accuracy(source, crawled)
    assert equal / total >= 0.99, f"{equal}/{total} attribute values equal the ground truth"
    for it in crawled.items:
        src = source.by_id()[it.id]
        assert it.brand == src.brand and it.name == src.name and it.attributes == src.attributes
        assert it.img_url.startswith(shop.base_url + "/bilder/produkt/")
        assert len(it.model_img_urls) == len(it.model_img_paths) == len(src.model_img_paths)
        with Image.open(crawled.image_path(it)) as im:
            assert (im.format, im.size, im.mode) == ("JPEG", (256, 256), "RGB")
    # Unknown tags (material, care, ...) are kept in `attributes` and counted.
    assert summary.unknown_tags > 0 and any("Material" in t for t, _ in summary.top_unknown_tags)


def test_crawl_obeys_robots_txt_and_identifies_itself(shop, full_crawl):
    _, summary = full_crawl
    rules = RobotsRules.parse(ROBOTS_TXT, "FashionRetrievalCrawler")
    crawler_requests = [r for r in shop.requests if r.user_agent.startswith("FashionRetrievalCrawler")]
    assert crawler_requests and len(crawler_requests) == len(shop.requests)
    forbidden = [r.path for r in shop.requests if not rules.allowed("http://x" + r.path)]
    assert forbidden == []
    assert summary.robots_blocked >= 1  # the "Outlet" category link was found and left alone


def test_kill_9_midway_then_resume_gives_the_same_catalog(shop, full_crawl, tmp_path):
    ref_dir, _ = full_crawl
    out = tmp_path / "killed"
    proc = subprocess.Popen(crawl_cli(shop.base_url, out), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    csv_path = out / "catalog.csv"
    deadline = time.monotonic() + 120
    rows = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if csv_path.exists():
            rows = csv_path.read_bytes().count(b"\n") - 1
            if rows >= 6:
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"crawl ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)  # the crawler, its Playwright driver and Chromium at once
    proc.wait(timeout=30)
    proc.stderr.close()
    killed_rows = csv_path.read_bytes().count(b"\n") - 1
    assert 6 <= killed_rows < N_PRODUCTS

    again = subprocess.run(crawl_cli(shop.base_url, out), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--resume" in again.stderr  # never silently starts over

    resumed = subprocess.run(crawl_cli(shop.base_url, out, "--resume"), cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "finished" in resumed.stdout
    assert (out / "catalog.csv").read_bytes() == (ref_dir / "catalog.csv").read_bytes()
    for sub in ("images", "model_images"):
        names = sorted(p.name for p in (ref_dir / sub).iterdir())
        assert sorted(p.name for p in (out / sub).iterdir()) == names
        for name in names:
            assert (out / sub / name).read_bytes() == (ref_dir / sub / name).read_bytes(), name


def test_a_shop_answering_429_503_and_slowly_still_completes(chromium, source_dir, tmp_path):
    source = load_catalog(source_dir)
    wanted = {"dresses", "tops"}
    expected = sorted(it.id for it in source.items if it.labels.get("category") in wanted)
    config = ShopConfig(page_size=3, fail_rate=0.3, slow_rate=0.04, slow_seconds=3.0, retry_after=1, fault_seed=5)
    with DemoShop(source_dir, config) as faulty:
        summary = crawl(CrawlConfig(
            site="demo", out=tmp_path / "faulty", start_url=faulty.base_url, categories=sorted(wanted),
            concurrency=4, delay=0, timeout_s=2.0, progress=False, seed=0,
        ))
        statuses = {r.status for r in faulty.requests}
    assert {429, 503} <= statuses
    assert summary.finished and summary.failed == 0 and summary.retries > 0
    crawled = load_catalog(tmp_path / "faulty", strict=True)
    assert sorted(crawled.by_id()) == expected


def test_the_same_photo_under_two_ids_is_kept_once(chromium, source_dir, tmp_path):
    import dataclasses
    import shutil

    from catalog import write_catalog

    src = load_catalog(source_dir, check_images=False)
    items = src.items[:5]
    copy = dataclasses.replace(items[0], id="KOPIE-00001", name=items[0].name + " (Kopie)")
    shop_dir = tmp_path / "shopcat"
    for it in items:
        for rel in [it.img_path, *it.model_img_paths]:
            (shop_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source_dir / rel, shop_dir / rel)
    write_catalog(shop_dir, [*items, copy], src.schema)
    with DemoShop(shop_dir) as dup_shop:
        summary = crawl(CrawlConfig(site="demo", out=tmp_path / "out", start_url=dup_shop.base_url,
                                    concurrency=2, delay=0, progress=False))
    crawled = load_catalog(tmp_path / "out", strict=True)
    assert sorted(crawled.by_id()) == sorted(it.id for it in items)  # the copy, found later, is dropped
    assert summary.duplicates == 1 and summary.products == 5
    assert len(list((tmp_path / "out" / "images").iterdir())) == 5


def test_generic_adapter_crawls_a_json_ld_shop(shop, source_dir, tmp_path):
    """The generic adapter knows nothing of the demo shop but its schema.org JSON-LD."""
    from crawler.demo.shop import CATEGORY_NAMES

    source = load_catalog(source_dir, check_images=False)
    # The biggest category the shop lists with numbered pages (a generic crawler follows
    # rel=next, but knows no site's "load more" button).
    counts = {p.cat_slug: 0 for p in shop.data.products}
    for p in shop.data.products:
        counts[p.cat_slug] += 1
    slug = max((s for s in counts if shop._mode(s) == "seiten"), key=lambda s: counts[s])
    category = next(en for en, (s, _) in CATEGORY_NAMES.items() if s == slug)
    expected = sorted(it.id for it in source.items if it.labels.get("category") == category)
    assert len(expected) > 3  # more than one listing page
    summary = crawl(CrawlConfig(site="generic", out=tmp_path / "generic", start_url=f"{shop.base_url}/damen/{slug}/",
                                concurrency=3, delay=0, progress=False))
    crawled = load_catalog(tmp_path / "generic", strict=True)
    assert summary.finished and sorted(crawled.by_id()) == expected
    by_id = source.by_id()
    for it in crawled.items:
        assert it.labels == by_id[it.id].labels  # from additionalProperty, color and category
        assert len(it.model_img_paths) == len(by_id[it.id].model_img_paths)


class _ForeignHost:
    """Another host (a port the shop is not on) serving one picture and counting its requests."""

    def __init__(self) -> None:
        import http.server
        import io
        import threading

        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (0, 120, 0)).save(buf, format="JPEG")
        body, hits = buf.getvalue(), []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.hits = hits
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_pictures_on_other_hosts_are_not_fetched_unless_allowed(chromium, source_dir, tmp_path):
    partner, stranger = _ForeignHost(), _ForeignHost()  # partner: allowed with image_hosts; stranger: not
    try:
        config = ShopConfig(page_size=3, foreign_images=(f"http://{partner.host}/a.jpg", f"http://{stranger.host}/b.jpg"),
                            redirect_images=(f"http://{partner.host}/c.jpg", f"http://{stranger.host}/d.jpg"))
        with DemoShop(source_dir, config) as hostile:
            summary = crawl(CrawlConfig(site="demo", out=tmp_path / "out", start_url=hostile.base_url, max_products=2,
                                        concurrency=2, delay=0, progress=False, image_hosts=[partner.host]))
    finally:
        partner.close()
        stranger.close()
    assert stranger.hits == []  # neither the named picture nor the redirect target, not even robots.txt
    assert sorted(set(partner.hits)) == ["/a.jpg", "/c.jpg", "/robots.txt"]  # redirects followed to allowed hosts
    assert summary.finished and summary.failed == 0 and summary.images_refused == 4  # 2 per product
    crawled = load_catalog(tmp_path / "out", strict=True)
    assert len(crawled.items) == 2
    for it in crawled.items:
        assert not [u for u in it.model_img_urls if stranger.host in u]
        assert f"http://{partner.host}/a.jpg" in it.model_img_urls
