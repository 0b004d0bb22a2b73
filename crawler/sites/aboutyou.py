"""aboutyou.de, women's clothing (markup from best knowledge; the site is not reachable here).

Listings: ``/c/frauen/bekleidung/<kategorie>-<id>`` with a ``color`` query filter and
``page=N``. Product URLs: ``/p/<marke>/<name>-<id>``. Product pages: JSON-LD for id, name,
brand and price; attributes as ``<li>`` "Key: Value" lines in the product-details section
(data-testid ``productDetails...``); images on ``cdn.aboutstatic.com``, where the packshot is
the transparent ``.png`` and model photos are ``.jpg``.
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
    ld_images,
    ld_name,
    ld_offer,
    soup_of,
    text_of,
)

PRODUCT_RE = re.compile(r"^/p/[^/]+/[^/]+-(\d+)/?$")


class AboutYouAdapter(SiteAdapter):
    name = "aboutyou"
    base_url = "https://www.aboutyou.de"
    image_hosts = ("cdn.aboutstatic.com", "*.aboutstatic.com")
    hints = BrowserHints(
        product_link="a[href^='/p/']",
        listing_ready="[data-testid='productTile'], a[href^='/p/']",
        load_more="[data-testid='loadMoreButton']",
        infinite_scroll=True,
        product_ready="[data-testid='productName'], h1",
    )
    categories = {
        "dresses": "c/frauen/bekleidung/kleider-20204",
        "skirts": "c/frauen/bekleidung/roecke-20208",
        "blouses": "c/frauen/bekleidung/blusen-und-tuniken-20205",
        "tops": "c/frauen/bekleidung/shirts-und-tops-20206",
        "knitwear": "c/frauen/bekleidung/pullover-und-strickjacken-20207",
        "jackets": "c/frauen/bekleidung/jacken-20210",
        "pants": "c/frauen/bekleidung/hosen-20211",
    }
    colors = {
        "beige": "beige", "black": "schwarz", "blue": "blau", "gray": "grau", "green": "gruen",
        "pink": "pink", "red": "rot", "white": "weiss", "yellow": "gelb",
    }

    def color_url(self, category_url: str, color_slug: str) -> str:
        return f"{category_url.rstrip('/')}?color={color_slug}"

    def parse_listing(self, html: str, url: str) -> ListingPage:
        soup = soup_of(html)
        links = [abs_url(url, a["href"]) for a in soup.find_all("a", href=True)]
        products = dedupe([self.canonical_product_url(u) for u in links if PRODUCT_RE.match(urlsplit(u).path)])
        nexts = soup.select("a[rel~=next][href], [data-testid='paginationNext'][href]")
        return ListingPage(products=products, next_pages=dedupe([abs_url(url, n["href"]) for n in nexts]))

    def parse_product(self, html: str, url: str) -> RawProduct:
        soup = soup_of(html)
        ld = json_ld_product(soup) or {}
        m = PRODUCT_RE.match(urlsplit(url).path)
        pid = str(ld.get("sku") or ld.get("productID") or (m.group(1) if m else ""))
        if not pid:
            raise ParseError(f"{url}: no product id in the JSON-LD or the URL")
        price, currency = ld_offer(ld)
        images = ld_images(ld.get("image"), url)
        images += [image_src(i, url) for i in soup.select("[data-testid='productImage'] img, [data-testid^='productImage'] img")]
        images = dedupe(images)
        packshots = [u for u in images if urlsplit(u).path.endswith(".png")]
        product_img = packshots[0] if packshots else (images[0] if images else "")
        tags: list[str] = []
        for section in soup.select("[data-testid^='productDetails'], [data-testid='productAttributes']"):
            tags += [text_of(li) for li in section.find_all("li") if ":" in text_of(li)]
            tags += dl_tags(section)
        return RawProduct(
            id=pid, url=url,
            name=ld_name(ld.get("name")) or text_of(soup.select_one("[data-testid='productName'], h1")),
            brand=ld_name(ld.get("brand")) or text_of(soup.select_one("[data-testid='brandName']")),
            price=price, currency=currency, tags=dedupe(tags),
            image_url=product_img,
            model_image_urls=[u for u in images if u != product_img and u not in packshots],
        )
