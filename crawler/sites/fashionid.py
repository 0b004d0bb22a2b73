"""fashionid.de, women's clothing (markup from best knowledge; the site is not reachable here).

Listings: ``/damen/bekleidung/<kategorie>/`` with ``?farbe=`` and ``?page=N``. Product URLs
end in the article number and colour code (``.../kleid-midi-1234567_0042/``). Product pages:
JSON-LD when present, else ``.product-name``/``.product-brand``/``[itemprop=price]``;
attributes as "Key: Value" items of ``.product-details``; gallery images (lazy, ``data-src``)
with the packshot first.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

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
    ld_name,
    ld_offer,
    soup_of,
    text_of,
)

PRODUCT_RE = re.compile(r"-(\d{5,}_\d{2,})/?$")


class FashionIdAdapter(SiteAdapter):
    name = "fashionid"
    base_url = "https://www.fashionid.de"
    hints = BrowserHints(
        product_link=".product-tile a[href]",
        listing_ready=".product-tile",
        infinite_scroll=False,
        product_ready=".product-name, h1",
    )
    categories = {
        "dresses": "damen/bekleidung/kleider/",
        "skirts": "damen/bekleidung/roecke/",
        "blouses": "damen/bekleidung/blusen/",
        "tops": "damen/bekleidung/tops-shirts/",
        "knitwear": "damen/bekleidung/strick/",
        "jackets": "damen/bekleidung/jacken/",
        "pants": "damen/bekleidung/hosen/",
    }
    colors = {
        "beige": "beige", "black": "schwarz", "blue": "blau", "gray": "grau", "green": "gruen",
        "pink": "rosa", "red": "rot", "white": "weiss", "yellow": "gelb",
    }

    def color_url(self, category_url: str, color_slug: str) -> str:
        return f"{category_url.rstrip('/')}/?farbe={color_slug}"

    def parse_listing(self, html: str, url: str) -> ListingPage:
        soup = soup_of(html)
        links = [abs_url(url, a["href"]) for a in soup.select(".product-tile a[href]")]
        products = dedupe([self.canonical_product_url(u) for u in links if PRODUCT_RE.search(urlsplit(u).path)])
        nexts = soup.select("a[rel~=next][href], .pagination a.next[href]")
        return ListingPage(products=products, next_pages=dedupe([abs_url(url, n["href"]) for n in nexts]))

    def parse_product(self, html: str, url: str) -> RawProduct:
        soup = soup_of(html)
        ld = json_ld_product(soup) or {}
        m = PRODUCT_RE.search(urlsplit(url).path)
        pid = str(ld.get("sku") or (m.group(1) if m else ""))
        if not pid:
            raise ParseError(f"{url}: no article number in the JSON-LD sku or the URL")
        price, currency = ld_offer(ld)
        if not price:
            node = soup.select_one("[itemprop=price]")
            price = (node.get("content") or text_of(node)) if node else ""
        images = dedupe([image_src(i, url) for i in soup.select(".product-gallery img")])
        details = soup.select_one(".product-details")
        tags = [text_of(li) for li in details.find_all("li") if ":" in text_of(li)] if details else []
        tags += dl_tags(details)
        return RawProduct(
            id=pid, url=url,
            name=ld_name(ld.get("name")) or text_of(soup.select_one(".product-name")),
            brand=ld_name(ld.get("brand")) or text_of(soup.select_one(".product-brand")),
            price=price, currency=currency or "EUR", tags=dedupe(tags),
            image_url=images[0] if images else "", model_image_urls=images[1:],
        )
