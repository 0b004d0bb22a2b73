"""Site adapters: one small module per shop, holding only that shop's URLs and selectors."""

from __future__ import annotations

from crawler.sites.base import BrowserHints, Listing, ListingPage, ParseError, RawProduct, SiteAdapter

SITES = {
    "zalando": "crawler.sites.zalando:ZalandoAdapter",
    "aboutyou": "crawler.sites.aboutyou:AboutYouAdapter",
    "fashionid": "crawler.sites.fashionid:FashionIdAdapter",
    "generic": "crawler.sites.generic:GenericAdapter",
    "demo": "crawler.sites.demo:DemoAdapter",
}


def get_adapter(name: str, **kwargs: object) -> SiteAdapter:
    """The adapter called ``name`` (raises ValueError listing the known sites)."""
    import importlib

    if name not in SITES:
        raise ValueError(f"unknown site {name!r}; known sites: {', '.join(SITES)}")
    module, cls = SITES[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


__all__ = ["SITES", "BrowserHints", "Listing", "ListingPage", "ParseError", "RawProduct", "SiteAdapter", "get_adapter"]
