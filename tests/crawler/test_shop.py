"""The demo shop over plain HTTP: JS-only listings, robots.txt, deterministic injected faults."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from crawler.demo.shop import DemoShop, ShopConfig


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def shop(demo_catalog_dir):
    with DemoShop(demo_catalog_dir, ShopConfig(page_size=5)) as s:
        yield s


def test_listing_html_has_no_products_without_javascript(shop):
    status, _, body = get(shop.base_url + "/damen/kleider/")
    html = body.decode()
    assert status == 200 and 'id="produkte"' in html
    assert "/artikel/" not in html  # a plain fetch sees an empty grid
    data = json.loads(get(shop.base_url + "/api/produkte?kategorie=kleider&farbe=&seite=1")[2])
    assert data["gesamt"] == sum(p.cat_slug == "kleider" for p in shop.data.products)
    assert len(data["artikel"]) == min(5, data["gesamt"]) and data["facetten"]


def test_robots_and_product_page(shop):
    status, _, body = get(shop.base_url + "/robots.txt")
    assert status == 200 and b"Disallow: /damen/outlet/" in body
    p = shop.data.products[0]
    status, _, body = get(shop.base_url + p.url)
    html = body.decode()
    assert status == 200 and '"@type": "Product"' in html and 'data-src="/bilder/produkt/' in html
    status, headers, img = get(shop.base_url + f"/bilder/produkt/{p.item.id}.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and img[:4] == b"\x89PNG"
    assert get(shop.base_url + "/artikel/NOPE/x.html")[0] == 404


def test_faults_are_deterministic_capped_and_carry_retry_after(demo_catalog_dir):
    cfg = ShopConfig(fail_rate=0.6, max_faults_per_path=2, retry_after=3, fault_seed=7)

    def sequence():
        s = DemoShop(demo_catalog_dir, cfg)
        return [s.fault_for(f"/artikel/{i}/x.html") for i in range(40) for _ in range(3)]

    a, b = sequence(), sequence()
    assert a == b and {"429", "503"} <= set(a)
    for i in range(40):  # the third try of a path always gets through
        assert a[3 * i + 2] is None or a[3 * i] is None or a[3 * i + 1] is None
    with DemoShop(demo_catalog_dir, cfg) as s:
        answers = [get(s.base_url + f"/artikel/{s.data.products[0].item.id}/x.html") for _ in range(3)]
        assert get(s.base_url + "/robots.txt")[0] == 200  # never faulted
    statuses = [st for st, _, _ in answers]
    assert statuses[-1] == 200 or 200 in statuses
    for st, headers, _ in answers:
        if st == 429:
            assert headers["Retry-After"] == "3"
