"""Each site adapter on saved pages written for the purpose (the shops are not reachable here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog import Schema
from crawler.normalize import Normalizer
from crawler.sites import ParseError, get_adapter

FIXTURES = Path(__file__).with_name("fixtures")


def page(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer.load(Schema.default())


def test_zalando_listing_keeps_articles_only_and_finds_next_page():
    ad = get_adapter("zalando")
    url = "https://www.zalando.de/damenbekleidung-kleider/_blau/"
    lp = ad.parse_listing(page("zalando_listing.html"), url)
    assert lp.products == [
        "https://www.zalando.de/anna-field-jerseykleid-navy-AN621C1OV-K11.html",
        "https://www.zalando.de/even-odd-freizeitkleid-dark-blue-EV421C2XZ-K12.html",
    ]
    assert lp.next_pages == ["https://www.zalando.de/damenbekleidung-kleider/_blau/?p=2"]


def test_zalando_product(normalizer):
    ad = get_adapter("zalando")
    url = "https://www.zalando.de/anna-field-jerseykleid-navy-AN621C1OV-K11.html"
    raw = ad.parse_product(page("zalando_product.html"), url)
    assert (raw.id, raw.brand, raw.name, raw.price, raw.currency) == (
        "AN621C1OV-K11", "Anna Field", "Jerseykleid - navy", "29.99", "EUR"
    )
    assert "packshot" in raw.image_url
    assert raw.model_image_urls == [
        "https://img01.ztat.net/article/spp-media-p1/m1.jpg?imwidth=1800",
        "https://img01.ztat.net/article/spp-media-p1/m2.jpg?imwidth=1800",  # widest of the srcset
    ]
    assert "Ärmellänge: 3/4-Arm" in raw.tags and "Obermaterial: 95% Viskose, 5% Elasthan" in raw.tags
    labels = normalizer.normalize(raw.tags).labels
    assert labels == {"neckline": "v", "pattern": "unicolors", "sleeve_length": "half", "fit": "tight", "length": "knee"}


def test_zalando_start_listings_are_category_x_colour():
    ls = get_adapter("zalando").start_listings(None, ["dresses"], ["blue", "black"])
    assert [x.url for x in ls] == [
        "https://www.zalando.de/damenbekleidung-kleider/_blau/",
        "https://www.zalando.de/damenbekleidung-kleider/_schwarz/",
    ]
    assert ls[0].context == ("Kategorie: dresses", "Farbe: blue")
    with pytest.raises(ValueError, match="no categories"):
        get_adapter("zalando").start_listings(None, ["hats"], None)


def test_aboutyou_listing_and_product(normalizer):
    ad = get_adapter("aboutyou")
    lp = ad.parse_listing(page("aboutyou_listing.html"), "https://www.aboutyou.de/c/frauen/bekleidung/kleider-20204?color=blau")
    assert lp.products == [
        "https://www.aboutyou.de/p/edited/kleid-mira-9876543",
        "https://www.aboutyou.de/p/about-you/sommerkleid-lina-1234567",
        "https://www.aboutyou.de/p/guido-maria-kretschmer/kleid-elena-5551234",
    ]
    assert lp.next_pages == ["https://www.aboutyou.de/c/frauen/bekleidung/kleider-20204?color=blau&page=2"]
    raw = ad.parse_product(page("aboutyou_product.html"), "https://www.aboutyou.de/p/edited/kleid-mira-9876543")
    assert (raw.id, raw.brand, raw.name, raw.price) == ("9876543", "EDITED", "Kleid 'Mira'", "49.9")
    assert raw.image_url.startswith("https://cdn.aboutstatic.com/file/images/packshot.png")
    assert len(raw.model_image_urls) == 2 and all(".jpg" in u for u in raw.model_image_urls)
    labels = normalizer.normalize(raw.tags).labels
    assert labels == {
        "color": "blue", "sleeve_length": "short", "length": "3-4", "neckline": "wide", "pattern": "floral", "fit": "loose",
    }


def test_fashionid_listing_and_product(normalizer):
    ad = get_adapter("fashionid")
    lp = ad.parse_listing(page("fashionid_listing.html"), "https://www.fashionid.de/damen/bekleidung/kleider/?farbe=blau")
    assert lp.products == [
        "https://www.fashionid.de/s-oliver/kleid-in-midilaenge-1234567_5810/",
        "https://www.fashionid.de/marc-o-polo/jerseykleid-7654321_0042/",
    ]
    assert lp.next_pages == ["https://www.fashionid.de/damen/bekleidung/kleider/?farbe=blau&page=2"]
    url = "https://www.fashionid.de/s-oliver/kleid-in-midilaenge-1234567_5810/"
    raw = ad.parse_product(page("fashionid_product.html"), url)
    assert (raw.id, raw.brand, raw.name, raw.price) == ("1234567_5810", "s.Oliver", "Kleid in Midilänge", "79.99")
    assert raw.image_url.endswith("1234567_5810_packshot.jpg")  # data-src, not the spinner
    assert raw.model_image_urls[0].endswith("1234567_5810_1.jpg")  # widest data-srcset entry
    labels = normalizer.normalize(raw.tags).labels
    assert labels == {
        "sleeve_length": "sleeveless", "length": "3-4", "neckline": "round", "pattern": "stripes", "fit": "loose", "color": "blue",
    }


def test_generic_json_ld_with_graph_and_image_objects(normalizer):
    ad = get_adapter("generic")
    raw = ad.parse_product(page("generic_jsonld_product.html"), "https://shop.example/p/bluse-ida-1001")
    assert (raw.id, raw.brand, raw.name, raw.price, raw.currency) == ("BL-1001", "Hanse Atelier", "Bluse Ida", "39.95", "EUR")
    assert raw.image_url == "https://shop.example/img/ida-1.png"
    assert raw.model_image_urls == ["https://shop.example/img/ida-2.jpg"]
    labels = normalizer.normalize(raw.tags).labels
    assert labels == {"sleeve_length": "long", "neckline": "v", "color": "white", "category": "blouses"}


def test_generic_opengraph_fallback(normalizer):
    raw = get_adapter("generic").parse_product(page("generic_og_product.html"), "https://shop.example/produkt/greta")
    assert (raw.id, raw.brand, raw.price) == ("NW-4711", "Nordwind", "59.00")
    assert raw.image_url == "https://shop.example/images/greta-packshot.png"
    assert normalizer.normalize(raw.tags).labels == {"color": "gray", "category": "knitwear"}


def test_generic_listing_same_host_product_links_only():
    lp = get_adapter("generic").parse_listing(page("generic_listing.html"), "https://shop.example/blusen")
    assert lp.products == ["https://shop.example/p/bluse-ida-1001", "https://shop.example/produkt/hemdbluse-lotte.html"]
    assert lp.next_pages == ["https://shop.example/blusen?page=2"]


def test_generic_refuses_a_page_without_product_data():
    with pytest.raises(ParseError, match="no schema.org Product"):
        get_adapter("generic").parse_product("<html><body><h1>Hallo</h1></body></html>", "https://x.example/a")


def test_unknown_site_names_the_known_ones():
    with pytest.raises(ValueError, match="zalando"):
        get_adapter("ebay")


def test_demo_adapter_reads_the_demo_shops_pages(demo_catalog_dir, normalizer):
    """The demo adapter on pages the demo shop generates (no server, no browser needed)."""
    from catalog import load_catalog
    from crawler.demo.shop import DemoShop

    shop = DemoShop(demo_catalog_dir)
    ad = get_adapter("demo")
    cat = load_catalog(demo_catalog_dir, check_images=False)
    home = ad.parse_listing(shop.home_page(), "http://127.0.0.1:1/")
    assert any("Outlet" in c for f in home.facets for c in f.context)
    for p in shop.data.products[:5]:
        raw = ad.parse_product(shop.product_page(p), "http://127.0.0.1:1" + p.url)
        src = p.item
        assert (raw.id, raw.brand, raw.name) == (src.id, src.brand, src.name)
        assert raw.tags == src.attributes
        assert raw.image_url.endswith(".png") and len(raw.model_image_urls) == len(src.model_img_paths)
        assert normalizer.normalize(raw.tags).labels == {g: v for g, v in src.labels.items() if v}
        # The generic adapter reads the same page from its JSON-LD alone.
        graw = get_adapter("generic").parse_product(shop.product_page(p), "http://127.0.0.1:1" + p.url)
        assert graw.id == src.id and graw.image_url == raw.image_url
    assert len(cat.items) == len(shop.data.products)
