"""Which hosts the crawler downloads pictures from: the shop's own and its CDNs, nothing else.

A product page names its pictures by URL, and a page is data from someone else's server: a
compromised or hostile page can name ``http://127.0.0.1:6379/``, a cloud metadata address or
another site, and a crawler that fetches whatever it is told becomes a request proxy into
the network it runs in. So picture URLs must be ``http(s)`` on an allowed host, and every
redirect hop is checked again (see :meth:`crawler.browser.Browser.download`).

Patterns: ``host`` or ``host:port`` (exact; without a port only the scheme's default port),
``*.domain`` (any subdomain of ``domain``, default port). By default the shop's host (with
its port) is allowed, a ``www.`` shop also allows its bare domain and subdomains, and each
site adapter names its known CDN hosts (``SiteAdapter.image_hosts``); ``--image-hosts``
adds more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class HostNotAllowed(ValueError):
    """A picture URL on a host the crawl may not fetch from; the message names the allowed hosts."""


def _split(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise HostNotAllowed(f"{url[:200]}: only http and https pictures are fetched, not {scheme or 'no'} scheme")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise HostNotAllowed(f"{url[:200]}: invalid port") from None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise HostNotAllowed(f"{url[:200]}: no host")
    return scheme, host, port


@dataclass(frozen=True)
class HostPolicy:
    """An allow-list of picture hosts (see the module docstring for the pattern syntax)."""

    patterns: tuple[str, ...]

    @staticmethod
    def _matches(pattern: str, scheme: str, host: str, port: int) -> bool:
        name, sep, pport = pattern.lower().rpartition(":") if ":" in pattern else (pattern.lower(), "", "")
        want_port = int(pport) if sep and pport.isdigit() else DEFAULT_PORTS[scheme]
        if port != want_port:
            return False
        if name.startswith("*."):
            return host.endswith(name[1:])
        return host == name

    def check(self, url: str) -> None:
        """Raise :class:`HostNotAllowed` unless ``url`` is http(s) on an allowed host."""
        scheme, host, port = _split(url)
        if not any(self._matches(p, scheme, host, port) for p in self.patterns):
            shown = f"{host}:{port}" if port != DEFAULT_PORTS[scheme] else host
            raise HostNotAllowed(
                f"picture host {shown} is not allowed (allowed: {', '.join(self.patterns)}; "
                "add hosts with --image-hosts)"
            )

    def allows(self, url: str) -> bool:
        try:
            self.check(url)
        except HostNotAllowed:
            return False
        return True


def shop_host_patterns(shop_url: str) -> list[str]:
    """The shop's own host (with its port when not the default); ``www.x`` adds ``x`` and ``*.x``."""
    scheme, host, port = _split(shop_url)
    out = [host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"]
    if host.startswith("www.") and port == DEFAULT_PORTS[scheme]:
        out += [host[4:], "*." + host[4:]]
    return out


def default_policy(shop_url: str, adapter_hosts: Iterable[str] = (), extra: Iterable[str] = ()) -> HostPolicy:
    """The shop's hosts, the adapter's CDN hosts and ``extra`` patterns, in that order, without repeats."""
    patterns = [*shop_host_patterns(shop_url), *adapter_hosts, *extra]
    return HostPolicy(tuple(dict.fromkeys(p.strip().lower() for p in patterns if p.strip())))
