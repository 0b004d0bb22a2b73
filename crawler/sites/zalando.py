"""zalando.de, women's clothing (markup from best knowledge; the site is not reachable here).

Listings: ``/damenbekleidung-<kategorie>/`` with the colour as a ``_<farbe>`` path filter and
``?p=N`` pages. Product URLs end in the article number (``...-NL121C0RT-Q11.html``). Product
pages: schema.org JSON-LD for id, name, brand, price; the "Details" accordions hold
``<dt>/<dd>`` attribute pairs; gallery images on ``img01.ztat.net`` where the packshot (the
white-background product photo) carries ``filter=packshot``.
"""

from __future__ import annotations

import re

from crawler.sites.base import (
    BrowserHints,
    ListingPage,
    ParseError,
    RawProduct,
    SiteAdapter,
    abs_url,
    dedupe,
    dl_tags,
    image_src,
    json_ld_product,
    ld_images,
    ld_name,
    ld_offer,
    soup_of,
    text_of,
)

ARTICLE_RE = re.compile(r"-([A-Z0-9]{9}-[A-Z0-9]{3})\.html$")


class ZalandoAdapter(SiteAdapter):
    name = "zalando"
    base_url = "https://www.zalando.de"
    image_hosts = ("*.ztat.net",)
    hints = BrowserHints(
        product_link="article a[href$='.html']",
        listing_ready="article",
        infinite_scroll=False,
        product_ready="h1",
    )
    categories = {
        "dresses": "damenbekleidung-kleider/",
        "skirts": "damenbekleidung-roecke/",
        "blouses": "damenbekleidung-blusen-tuniken/",
        "tops": "damenbekleidung-shirts/",
        "knitwear": "damenbekleidung-pullover-und-strickjacken/",
        "jackets": "damenbekleidung-jacken/",
        "pants": "damenbekleidung-hosen/",
    }
    colors = {
        "beige": "beige", "black": "schwarz", "blue": "blau", "gray": "grau", "green": "gruen",
        "pink": "pink", "red": "rot", "white": "weiss", "yellow": "gelb",
    }

    def color_url(self, category_url: str, color_slug: str) -> str:
        return category_url.rstrip("/") + f"/_{color_slug}/"

    def parse_listing(self, html: str, url: str) -> ListingPage:
        soup = soup_of(html)
        links = [abs_url(url, a["href"]) for a in soup.select("article a[href]")]
        products = dedupe([self.canonical_product_url(u) for u in links if ARTICLE_RE.search(u.split("?")[0])])
        nexts = soup.select("a[rel~=next][href], a[title='Nächste Seite'][href], link[rel~=next][href]")
        return ListingPage(products=products, next_pages=dedupe([abs_url(url, n["href"]) for n in nexts]))

    def parse_product(self, html: str, url: str) -> RawProduct:
        soup = soup_of(html)
        ld = json_ld_product(soup) or {}
        m = ARTICLE_RE.search(url.split("?")[0])
        pid = str(ld.get("sku") or (m.group(1) if m else ""))
        if not pid:
            raise ParseError(f"{url}: no article number in the JSON-LD sku or the URL")
        price, currency = ld_offer(ld)
        images = ld_images(ld.get("image"), url)
        images += [image_src(i, url) for i in soup.select("[data-testid='pdp-gallery'] img, #galleryImages img")]
        images = dedupe(images)
        packshots = [u for u in images if "packshot" in u]
        product_img = packshots[0] if packshots else (images[0] if images else "")
        tags = []
        for section in soup.select("[data-testid^='pdp-accordion'], section.details"):
            tags += dl_tags(section)
        return RawProduct(
            id=pid, url=url,
            name=ld_name(ld.get("name")) or text_of(soup.select_one("h1")),
            brand=ld_name(ld.get("brand")) or text_of(soup.select_one("h3, [data-testid='pdp-brand']")),
            price=price, currency=currency, tags=dedupe(tags),
            image_url=product_img,
            model_image_urls=[u for u in images if u != product_img and "packshot" not in u],
        )
