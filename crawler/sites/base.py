"""What a site adapter is, and the HTML helpers adapters share.

An adapter holds only one site's knowledge: where its listings are, which selectors the
browser needs to finish rendering a listing, and how to read a rendered page. Parsing works
on an HTML string, so each adapter is unit-tested on saved pages without a browser; the
crawler (``crawler.crawl``) does everything else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

from bs4 import BeautifulSoup, Tag


class ParseError(ValueError):
    """A page that lacks what the adapter needs (the message says what and where)."""


@dataclass(frozen=True)
class Listing:
    """A listing page to visit, with the tags it implies (``"Kategorie: Kleider"``)."""

    url: str
    context: tuple[str, ...] = ()


@dataclass
class ListingPage:
    """What one rendered listing page offers.

    ``facets`` are narrower listings (categories on a start page, colour filters on a
    category page); when the crawler follows them it ignores this page's own products, the
    way the thesis crawled categories x colours to learn each product's colour.
    """

    products: list[str] = field(default_factory=list)
    next_pages: list[str] = field(default_factory=list)
    facets: list[Listing] = field(default_factory=list)


@dataclass
class RawProduct:
    """One product page as the shop shows it, before normalisation."""

    id: str
    url: str
    name: str = ""
    brand: str = ""
    price: str = ""
    currency: str = ""
    tags: list[str] = field(default_factory=list)
    image_url: str = ""
    model_image_urls: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BrowserHints:
    """Selectors the browser needs to render a listing completely."""

    product_link: str = "a[href]"
    listing_ready: str | None = None  # wait for this before reading a listing
    listing_done: str | None = None  # present once everything is loaded (no more scrolling)
    load_more: str | None = None  # a "load more" button to click while visible
    infinite_scroll: bool = True  # scroll to the bottom until nothing new appears
    product_ready: str | None = None  # wait for this on a product page


class SiteAdapter:
    """Base class: subclasses set the class attributes and implement the two parsers."""

    name: str = ""
    base_url: str = ""
    image_hosts: tuple[str, ...] = ()  # CDN hosts the shop's pictures live on (crawler.hosts patterns)
    hints: BrowserHints = BrowserHints()
    # English schema value -> the site's listing path / filter slug.
    categories: dict[str, str] = {}
    colors: dict[str, str] = {}

    def start_listings(self, base_url: str | None, categories: list[str] | None, colors: list[str] | None) -> list[Listing]:
        """Listings to start from; ``None`` means every category / colour the adapter knows."""
        base = (base_url or self.base_url).rstrip("/") + "/"
        cats = categories if categories is not None else list(self.categories)
        unknown = [c for c in cats if c not in self.categories]
        if unknown:
            raise ValueError(f"site {self.name!r} has no categories {unknown}; it knows {sorted(self.categories)}")
        cols = colors if colors is not None else list(self.colors)
        unknown = [c for c in cols if c not in self.colors]
        if unknown:
            raise ValueError(f"site {self.name!r} has no colours {unknown}; it knows {sorted(self.colors)}")
        out = []
        for c in cats:
            cat_url = urljoin(base, self.categories[c])
            if not cols:
                out.append(Listing(cat_url, (f"Kategorie: {c}",)))
            for col in cols:
                out.append(Listing(self.color_url(cat_url, self.colors[col]), (f"Kategorie: {c}", f"Farbe: {col}")))
        return out

    def color_url(self, category_url: str, color_slug: str) -> str:
        return category_url.rstrip("/") + "/" + color_slug + "/"

    def canonical_product_url(self, url: str) -> str:
        """Product URL without tracking query or fragment, so one product is one URL."""
        p = urlsplit(url)
        return urlunsplit((p.scheme, p.netloc, p.path, "", ""))

    def parse_listing(self, html: str, url: str) -> ListingPage:
        raise NotImplementedError

    def parse_product(self, html: str, url: str) -> RawProduct:
        raise NotImplementedError


# --- helpers --------------------------------------------------------------------------------
def soup_of(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def text_of(node: Tag | None) -> str:
    return " ".join(node.get_text(" ", strip=True).split()) if node is not None else ""


def abs_url(base: str, href: str | None) -> str:
    return urljoin(base, href.strip()) if href and href.strip() else ""


def image_src(img: Tag, base: str) -> str:
    """The real picture of an ``<img>``, also when a lazy loader has not swapped it in yet.

    Lazy loaders keep the real URL in ``data-src``/``data-srcset`` (and variants) and a
    placeholder in ``src``; of a srcset the widest candidate is taken.
    """
    for attr in ("data-zoom-src", "data-zoom", "data-large", "data-srcset", "srcset", "data-src", "data-original", "src"):
        value = img.get(attr)
        if not value:
            continue
        if "srcset" in attr:
            best = widest_from_srcset(value)
            if best:
                return abs_url(base, best)
            continue
        if value.startswith("data:"):
            continue
        return abs_url(base, value)
    return ""


def widest_from_srcset(srcset: str) -> str:
    best, best_w = "", -1.0
    for part in srcset.split(","):
        bits = part.strip().split()
        if not bits:
            continue
        w = 1.0
        if len(bits) > 1:
            m = re.match(r"([\d.]+)([wx])", bits[1])
            if m:
                w = float(m.group(1))
        if w > best_w:
            best, best_w = bits[0], w
    return best


def json_ld_objects(soup: BeautifulSoup) -> list[dict]:
    """Every JSON-LD object on the page, ``@graph`` members included; broken blocks skipped."""
    out: list[dict] = []
    for script in soup.find_all("script", attrs={"type": "application/ld+json"}):
        try:
            data = json.loads(script.string or script.get_text() or "")
        except json.JSONDecodeError:
            continue
        stack = data if isinstance(data, list) else [data]
        while stack:
            obj = stack.pop(0)
            if isinstance(obj, dict):
                out.append(obj)
                if isinstance(obj.get("@graph"), list):
                    stack.extend(obj["@graph"])
    return out


def _is_type(obj: dict, name: str) -> bool:
    t = obj.get("@type")
    return t == name or (isinstance(t, list) and name in t)


def json_ld_product(soup: BeautifulSoup) -> dict | None:
    for obj in json_ld_objects(soup):
        if _is_type(obj, "Product"):
            return obj
    return None


def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else value


def ld_name(value: object) -> str:
    """A schema.org field that may be a string, a ``{"name": ...}`` object or a list of them."""
    value = _first(value)
    if isinstance(value, dict):
        return str(value.get("name") or "")
    return str(value or "")


def ld_images(value: object, base: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for it in items:
        if isinstance(it, dict):
            it = it.get("contentUrl") or it.get("url")
        if isinstance(it, str) and it:
            out.append(abs_url(base, it))
    return out


def ld_offer(product: dict) -> tuple[str, str]:
    offer = _first(product.get("offers"))
    if not isinstance(offer, dict):
        return "", ""
    price = offer.get("price", offer.get("lowPrice", ""))
    return str(price or ""), str(offer.get("priceCurrency") or "")


def ld_tags(product: dict) -> list[str]:
    """German-style ``"Key: Value"`` tags from a Product's properties."""
    tags = []
    for prop in product.get("additionalProperty") or []:
        if isinstance(prop, dict) and prop.get("name") and prop.get("value") not in (None, ""):
            tags.append(f"{prop['name']}: {ld_name(prop['value'])}")
    if product.get("color"):
        tags.append(f"Farbe: {ld_name(product['color'])}")
    if product.get("category"):
        tags.append(f"Kategorie: {ld_name(product['category']).split('>')[-1].strip()}")
    for field_name, key in (("pattern", "Muster"), ("material", "Material")):
        if product.get(field_name):
            tags.append(f"{key}: {ld_name(product[field_name])}")
    return tags


def dl_tags(container: Tag | None) -> list[str]:
    """``"Key: Value"`` from ``<dt>/<dd>`` pairs (the usual markup of product details)."""
    if container is None:
        return []
    tags = []
    for dt in container.find_all("dt"):
        dd = dt.find_next_sibling("dd")
        key, value = text_of(dt).rstrip(":").strip(), text_of(dd)
        if value:
            tags.append(f"{key}: {value}" if key else value)
    return tags


def meta_content(soup: BeautifulSoup, prop: str) -> list[str]:
    return [
        m.get("content", "").strip()
        for m in soup.find_all("meta")
        if (m.get("property") == prop or m.get("name") == prop) and m.get("content", "").strip()
    ]


def dedupe(urls: list[str]) -> list[str]:
    seen, out = set(), []
    for u in urls:
        if u and u not in seen:
            seen.add(u)
            out.append(u)
    return out
