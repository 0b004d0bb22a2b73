"""Any shop whose product pages embed schema.org ``Product`` JSON-LD or OpenGraph product tags.

Listings: the start URL's links on the same host that look like product pages
(``product_pattern``), plus ``rel=next`` pagination. Products: JSON-LD first, OpenGraph as
fallback; the first image is taken as the product photo and the others as model photos,
which is how most shops order their galleries.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from crawler.sites.base import (
    BrowserHints,
    Listing,
    ListingPage,
    ParseError,
    RawProduct,
    SiteAdapter,
    abs_url,
    dedupe,
    json_ld_product,
    ld_images,
    ld_name,
    ld_offer,
    ld_tags,
    meta_content,
    soup_of,
    text_of,
)

DEFAULT_PRODUCT_PATTERN = r"/(p|product|products|produkt|artikel|item)/|\.html$|-\d{5,}/?$"


class GenericAdapter(SiteAdapter):
    name = "generic"
    hints = BrowserHints(product_link="a[href]", infinite_scroll=True)

    def __init__(self, product_pattern: str = DEFAULT_PRODUCT_PATTERN) -> None:
        self.product_re = re.compile(product_pattern)

    def start_listings(self, base_url, categories, colors) -> list[Listing]:
        if not base_url:
            raise ValueError("site 'generic' needs --start-url (a listing page or a product page)")
        return [Listing(base_url)]

    def parse_listing(self, html: str, url: str) -> ListingPage:
        soup = soup_of(html)
        host = urlsplit(url).netloc
        page = ListingPage()
        if json_ld_product(soup) is not None or "product" in meta_content(soup, "og:type"):
            page.products = [self.canonical_product_url(url)]  # the start URL is itself a product
            return page
        links = [abs_url(url, a["href"]) for a in soup.find_all("a", href=True)]
        page.products = dedupe(
            [
                self.canonical_product_url(u)
                for u in links
                if urlsplit(u).netloc == host and self.product_re.search(urlsplit(u).path)
            ]
        )
        nexts = soup.select("link[rel~=next][href], a[rel~=next][href]")
        page.next_pages = dedupe([abs_url(url, n["href"]) for n in nexts])
        return page

    def parse_product(self, html: str, url: str) -> RawProduct:
        soup = soup_of(html)
        ld = json_ld_product(soup)
        if ld is not None:
            images = ld_images(ld.get("image"), url)
            price, currency = ld_offer(ld)
            pid = str(ld.get("sku") or ld.get("productID") or ld.get("mpn") or ld.get("gtin13") or "")
            raw = RawProduct(
                id=pid, url=url, name=ld_name(ld.get("name")), brand=ld_name(ld.get("brand")),
                price=price, currency=currency, tags=ld_tags(ld),
                image_url=images[0] if images else "", model_image_urls=images[1:],
            )
        elif "product" in meta_content(soup, "og:type"):
            images = [abs_url(url, u) for u in meta_content(soup, "og:image")]
            raw = RawProduct(
                id=(meta_content(soup, "product:retailer_item_id") or [""])[0],
                url=url,
                name=(meta_content(soup, "og:title") or [text_of(soup.find("h1"))])[0],
                brand=(meta_content(soup, "product:brand") or [""])[0],
                price=(meta_content(soup, "product:price:amount") or [""])[0],
                currency=(meta_content(soup, "product:price:currency") or [""])[0],
                tags=[f"Farbe: {c}" for c in meta_content(soup, "product:color")]
                + [f"Kategorie: {c}" for c in meta_content(soup, "product:category")],
                image_url=images[0] if images else "",
                model_image_urls=images[1:],
            )
        else:
            raise ParseError(f"{url}: no schema.org Product JSON-LD and no og:type=product tags")
        if not raw.id:
            raw.id = _id_from_url(url)
        return raw


def _id_from_url(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    last = path.rsplit("/", 1)[-1]
    return re.sub(r"\.html?$", "", last) or path
