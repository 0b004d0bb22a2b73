"""The built-in demo shop (``python -m crawler demo serve``): start page -> categories -> colours."""

from __future__ import annotations

from crawler.sites.base import (
    BrowserHints,
    Listing,
    ListingPage,
    ParseError,
    RawProduct,
    SiteAdapter,
    abs_url,
    dedupe,
    dl_tags,
    image_src,
    soup_of,
    text_of,
)


class DemoAdapter(SiteAdapter):
    name = "demo"
    base_url = "http://127.0.0.1:8765"
    hints = BrowserHints(
        product_link="#produkte a.produkt-kachel",
        listing_ready="#produkte[data-status], ul.kategorien",
        listing_done="#produkte[data-status=fertig], ul.kategorien",
        load_more="#mehr-laden:not([hidden])",
        infinite_scroll=True,
        product_ready="article.produkt",
    )

    def start_listings(self, base_url, categories, colors) -> list[Listing]:
        # The start page links every category; the crawler filters them by --categories.
        return [Listing((base_url or self.base_url).rstrip("/") + "/")]

    def parse_listing(self, html: str, url: str) -> ListingPage:
        soup = soup_of(html)
        page = ListingPage()
        for a in soup.select("ul.kategorien a.kategorie[href]"):
            page.facets.append(Listing(abs_url(url, a["href"]), (f"Kategorie: {a.get('data-kategorie') or text_of(a)}",)))
        for a in soup.select("#facetten a.facette[href]"):
            page.facets.append(Listing(abs_url(url, a["href"]), (f"Farbe: {a.get('data-farbe') or text_of(a)}",)))
        page.products = dedupe(
            [self.canonical_product_url(abs_url(url, a["href"])) for a in soup.select("#produkte a.produkt-kachel[href]")]
        )
        page.next_pages = [abs_url(url, a["href"]) for a in soup.select("#seiten a[rel~=next][href]")]
        return page

    def parse_product(self, html: str, url: str) -> RawProduct:
        soup = soup_of(html)
        art = soup.select_one("article.produkt[data-artikel-id]")
        if art is None:
            raise ParseError(f"{url}: no article.produkt[data-artikel-id] on the page")
        img = art.select_one("img.produktbild")
        price = art.select_one("[data-preis]")
        return RawProduct(
            id=art["data-artikel-id"].strip(),
            url=url,
            name=text_of(art.select_one("h1.produkt-name")),
            brand=text_of(art.select_one("a.marke")),
            price=price.get("data-preis", "") if price else "",
            currency=price.get("data-waehrung", "") if price else "",
            tags=dl_tags(art.select_one("dl.eigenschaften")),
            image_url=image_src(img, url) if img else "",
            model_image_urls=dedupe([image_src(i, url) for i in art.select(".modelbilder img")]),
        )
