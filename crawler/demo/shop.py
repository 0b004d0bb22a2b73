"""Serve the demo catalog as a German fashion shop on 127.0.0.1 (for crawler tests and demos).

The shop behaves like the thesis's shops where it matters to a crawler: listing pages are
empty HTML shells whose product grid, colour filters and pagination are built by JavaScript
from a JSON API (a plain HTTP fetch sees no products), with three listing styles (numbered
pages, a "Mehr laden" button, infinite scroll); images are lazy-loaded; product pages carry
German attribute tags, schema.org Product JSON-LD and OpenGraph tags; robots.txt forbids
some paths; and it can answer 429 (with Retry-After) or 503, or answer slowly, at a chosen
rate, deterministically for a seed.

Python API for tests: ``with DemoShop(catalog_dir, ShopConfig(...)) as shop: shop.base_url``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import io
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from catalog import Item, load_catalog

HOST = "127.0.0.1"

# The shop's own German names: English schema value -> (URL slug, display name).
CATEGORY_NAMES = {
    "dresses": ("kleider", "Kleider"),
    "skirts": ("roecke", "Röcke"),
    "blouses": ("blusen", "Blusen"),
    "tops": ("tops-shirts", "Tops & Shirts"),
    "knitwear": ("strick", "Strick"),
    "jackets": ("jacken", "Jacken"),
    "pants": ("hosen", "Hosen"),
}
COLOR_NAMES = {
    "beige": ("beige", "Beige"),
    "black": ("schwarz", "Schwarz"),
    "blue": ("blau", "Blau"),
    "gray": ("grau", "Grau"),
    "green": ("gruen", "Grün"),
    "pink": ("rosa", "Rosa"),
    "red": ("rot", "Rot"),
    "white": ("weiss", "Weiß"),
    "yellow": ("gelb", "Gelb"),
}
NO_CATEGORY = ("sonstiges", "Sonstiges")
NO_COLOR = ("mehrfarbig", "Mehrfarbig")
LISTING_MODES = ("seiten", "mehr", "scroll")  # numbered pages, "load more" button, infinite scroll

ROBOTS_TXT = """# Demo-Modeshop
User-agent: *
Disallow: /warenkorb
Disallow: /konto/
Disallow: /suche
Disallow: /damen/outlet/
Disallow: /*?sortierung=
Allow: /
"""

# Paths that may be answered with an injected fault (never robots.txt, scripts or the API).
FAULT_PREFIXES = ("/damen/", "/artikel/", "/bilder/")


@dataclass
class ShopConfig:
    page_size: int = 12
    fail_rate: float = 0.0  # share of fault-eligible requests answered 429 or 503
    slow_rate: float = 0.0  # share answered after ``slow_seconds``
    slow_seconds: float = 2.0
    retry_after: int = 1  # Retry-After header on injected 429s (seconds)
    max_faults_per_path: int = 2  # a path fails at most this many times in a row
    fault_seed: int = 0
    crawl_delay: float | None = None  # adds a Crawl-delay line to robots.txt
    # A hostile page: every product lists these absolute picture URLs (other hosts) as extra model
    # photos, and then shop URLs (``/bilder/weiter/N.jpg``) that redirect to ``redirect_images``.
    foreign_images: tuple[str, ...] = ()
    redirect_images: tuple[str, ...] = ()


def slugify(text: str) -> str:
    text = text.replace("ß", "ss").replace("ä", "ae").replace("ö", "oe").replace("ü", "ue")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "artikel"


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (fault and price decisions)."""
    h = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


@dataclass
class _Product:
    item: Item
    index: int
    cat_slug: str
    cat_name: str
    color_slug: str
    color_name: str
    url: str
    price: str


@dataclass
class RequestRecord:
    path: str
    status: int
    user_agent: str


@dataclass
class _ShopData:
    root: Path
    products: list[_Product]
    by_id: dict[str, _Product]
    categories: list[tuple[str, str]]  # (slug, name) in menu order
    image_cache: dict[str, bytes] = field(default_factory=dict)


def _load(root: Path) -> _ShopData:
    cat = load_catalog(root, check_images=False)
    products, by_id = [], {}
    for i, it in enumerate(cat.items):
        c = it.labels.get("category")
        cslug, cname = CATEGORY_NAMES.get(c, (slugify(c), c.title())) if c else NO_CATEGORY
        col = it.labels.get("color")
        kslug, kname = COLOR_NAMES.get(col, (slugify(col), col.title())) if col else NO_COLOR
        price = it.extra.get("price") or f"{19.95 + 10 * int(_unit('price', it.id) * 12):.2f}"
        url = f"/artikel/{quote(it.id, safe='')}/{slugify(it.brand + ' ' + it.name)}.html"
        p = _Product(it, i, cslug, cname, kslug, kname, url, price)
        products.append(p)
        by_id[it.id] = p
    order = [v for v in CATEGORY_NAMES.values()] + [NO_CATEGORY]
    present = {(p.cat_slug, p.cat_name) for p in products}
    cats = [c for c in order if c in present] + sorted(present - set(order))
    return _ShopData(root, products, by_id, cats)


# --- page templates -------------------------------------------------------------------------
CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#111;color:#fff;padding:12px 24px;display:flex;gap:18px;align-items:center}
header a{color:#fff;text-decoration:none;font-size:14px} header .logo{font-weight:bold;font-size:20px;margin-right:24px}
main{padding:16px 24px} h1{font-size:24px;margin:8px 0 12px}
.facetten a{display:inline-block;margin:0 8px 8px 0;padding:4px 10px;border:1px solid #ccc;border-radius:14px;
 color:#333;text-decoration:none;font-size:13px;background:#fff}
.produkt-grid{display:grid;grid-template-columns:repeat(4,1fr);gap:16px}
.produkt-kachel{display:block;background:#fff;border:1px solid #eee;padding:8px;color:#222;text-decoration:none}
.produkt-kachel img{width:100%;aspect-ratio:1/1;object-fit:contain;background:#fff}
.produkt-kachel .marke{font-weight:bold;font-size:13px} .produkt-kachel .name{font-size:13px}
.produkt-kachel .preis{font-size:13px;color:#b00}
.pagination a{margin-right:6px} #mehr-laden{margin:16px 0;padding:8px 24px}
.produkt{display:grid;grid-template-columns:420px 1fr;gap:24px;background:#fff;padding:16px}
.produktbild{width:400px;height:480px;object-fit:contain;background:#fff;border:1px solid #eee}
.modelbilder img{width:120px;height:150px;object-fit:cover;margin:4px}
.eigenschaften{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:14px}
.eigenschaften dt{color:#666} .preis-gross{font-size:22px;color:#b00;margin:8px 0}
"""

PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="

LAZY_JS = """
(function () {
  function swap(img) { if (img.dataset.src) { img.src = img.dataset.src; img.removeAttribute('data-src'); } }
  var io = new IntersectionObserver(function (entries) {
    entries.forEach(function (e) { if (e.isIntersecting) { swap(e.target); io.unobserve(e.target); } });
  }, {rootMargin: '200px'});
  window.lazyObserve = function (root) {
    (root || document).querySelectorAll('img[data-src]').forEach(function (img) { io.observe(img); });
  };
  window.lazyObserve(document);
})();
"""

LISTING_JS = """
(function () {
  var grid = document.getElementById('produkte');
  var mode = document.body.dataset.modus;
  var kat = grid.dataset.kategorie, farbe = grid.dataset.farbe;
  var params = new URLSearchParams(location.search);
  var seite = parseInt(params.get('seite') || '1', 10), seiten = 1;
  var mehr = document.getElementById('mehr-laden'), ende = document.getElementById('listen-ende');

  function laden(n, versuch) {
    versuch = versuch || 0;
    var url = '/api/produkte?kategorie=' + encodeURIComponent(kat) + '&farbe=' + encodeURIComponent(farbe) + '&seite=' + n;
    return fetch(url).then(function (r) {
      if (!r.ok) { throw new Error('HTTP ' + r.status); }
      return r.json();
    }).catch(function (err) {
      if (versuch >= 4) { grid.dataset.status = 'fehler'; throw err; }
      return new Promise(function (ok) { setTimeout(ok, 300 * (versuch + 1)); }).then(function () { return laden(n, versuch + 1); });
    });
  }
  function kachel(p, pos) {
    var a = document.createElement('a');
    a.className = 'produkt-kachel'; a.href = p.url + '?ref=liste&pos=' + pos; a.dataset.artikelId = p.id;
    a.innerHTML = '<img alt="" loading="lazy"><div class="marke"></div><div class="name"></div><div class="preis"></div>';
    var img = a.querySelector('img'); img.src = '""" + PLACEHOLDER + """'; img.dataset.src = p.bild; img.alt = p.name;
    a.querySelector('.marke').textContent = p.marke; a.querySelector('.name').textContent = p.name;
    a.querySelector('.preis').textContent = p.preis_text;
    return a;
  }
  function zeigen(daten) {
    var start = grid.children.length;
    daten.artikel.forEach(function (p, i) { grid.appendChild(kachel(p, start + i + 1)); });
    window.lazyObserve(grid);
    seiten = daten.seiten;
    var facetten = document.getElementById('facetten');
    if (facetten && !facetten.dataset.fertig) {
      facetten.dataset.fertig = '1';
      daten.facetten.forEach(function (f) {
        var a = document.createElement('a'); a.href = f.url; a.className = 'facette'; a.dataset.farbe = f.name;
        a.textContent = f.name + ' (' + f.anzahl + ')'; facetten.appendChild(a);
      });
      var s = document.createElement('a'); s.href = '?sortierung=preis'; s.textContent = 'Nach Preis sortieren';
      facetten.appendChild(s);
    }
  }
  function fertig() { grid.dataset.status = 'fertig'; ende.hidden = false; if (mehr) { mehr.hidden = true; } }

  if (mode === 'seiten') {
    laden(seite).then(function (d) {
      zeigen(d);
      var nav = document.getElementById('seiten');
      for (var k = 1; k <= d.seiten; k++) {
        var a = document.createElement('a'); a.href = '?seite=' + k; a.textContent = k; a.className = 'seite';
        if (k === seite + 1) { a.rel = 'next'; }
        if (k === seite) { a.className += ' aktiv'; }
        nav.appendChild(a);
      }
      fertig();
    });
  } else {
    var naechste = 1, laeuft = false;
    function weiter() {
      if (laeuft || naechste > seiten) { return Promise.resolve(); }
      laeuft = true;
      return laden(naechste).then(function (d) {
        laeuft = false; naechste += 1; zeigen(d);
        if (naechste > d.seiten) { fertig(); } else { grid.dataset.status = 'bereit'; if (mode === 'mehr') { mehr.hidden = false; } }
        // Infinite scroll: if the end of the list is still on screen, nobody will scroll; load on.
        var s = document.getElementById('nachladen');
        if (mode === 'scroll' && naechste <= d.seiten && s.getBoundingClientRect().top < window.innerHeight) { return weiter(); }
      });
    }
    if (mode === 'mehr') { mehr.addEventListener('click', function () { weiter(); }); weiter(); }
    else {
      weiter().then(function () {
        var sentinel = document.getElementById('nachladen');
        new IntersectionObserver(function (entries) {
          if (entries.some(function (e) { return e.isIntersecting; })) { weiter(); }
        }).observe(sentinel);
      });
    }
  }
})();
"""


def _page(title: str, body: str, modus: str = "", head_extra: str = "", scripts: tuple[str, ...] = ("/static/lazy.js",)) -> str:
    nav_scripts = "".join(f'<script src="{s}"></script>' for s in scripts)
    return f"""<!doctype html>
<html lang="de"><head><meta charset="utf-8"><title>{html.escape(title)} | Demo-Modeshop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/shop.css">{head_extra}</head>
<body data-modus="{modus}">
<header><a class="logo" href="/">Demo-Modeshop</a><a href="/damen/">Damen</a><a href="/damen/outlet/">Outlet</a>
<a href="/suche?q=kleid">Suche</a><a href="/konto/anmelden">Konto</a><a href="/warenkorb">Warenkorb</a></header>
<main>{body}</main>{nav_scripts}</body></html>"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms stalls
    server: _ShopServer

    def log_message(self, format: str, *args: object) -> None:  # quiet; the shop keeps its own log
        pass

    # --- plumbing -----------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.shop.record(self.path, status, self.headers.get("User-Agent", ""))

    def _html(self, text: str, status: int = 200) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8")

    def _not_found(self) -> None:
        self._html(_page("Nicht gefunden", "<h1>Seite nicht gefunden</h1>"), 404)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        shop = self.server.shop
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        if path.startswith(FAULT_PREFIXES):
            fault = shop.fault_for(self.path)
            if fault == "slow":
                time.sleep(shop.config.slow_seconds)
            elif fault == "429":
                body = b"Zu viele Anfragen"
                return self._send(429, body, "text/plain; charset=utf-8", {"Retry-After": str(shop.config.retry_after)})
            elif fault == "503":
                return self._send(503, b"Dienst voruebergehend nicht verfuegbar", "text/plain; charset=utf-8")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route(path, query)

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        shop = self.server.shop
        if path == "/robots.txt":
            return self._send(200, shop.robots_txt().encode(), "text/plain; charset=utf-8")
        if path == "/static/shop.css":
            return self._send(200, CSS.encode(), "text/css; charset=utf-8")
        if path == "/static/lazy.js":
            return self._send(200, LAZY_JS.encode(), "application/javascript")
        if path == "/static/liste.js":
            return self._send(200, LISTING_JS.encode(), "application/javascript")
        if path in ("/", "/damen", "/damen/"):
            return self._html(shop.home_page())
        if path == "/api/produkte":
            q = {k: v[0] for k, v in query.items()}
            data = shop.api_listing(q.get("kategorie", ""), q.get("farbe", ""), int(q.get("seite", "1") or 1))
            if data is None:
                return self._send(404, b"{}", "application/json")
            return self._send(200, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8")
        m = re.fullmatch(r"/damen/([a-z0-9-]+)/(?:([a-z0-9-]+)/)?", path)
        if m:
            page = shop.listing_page(m.group(1), m.group(2) or "")
            return self._html(page) if page else self._not_found()
        m = re.fullmatch(r"/artikel/([^/]+)/[a-z0-9-]*\.html", path)
        if m and m.group(1) in shop.data.by_id:
            return self._html(shop.product_page(shop.data.by_id[m.group(1)]))
        m = re.fullmatch(r"/bilder/(?:(produkt)/([^/]+)\.png|(klein)/([^/]+)\.jpg|(model)/([^/]+)/(\d+)\.jpg)", path)
        if m:
            kind = m.group(1) or m.group(3) or m.group(5)
            pid = m.group(2) or m.group(4) or m.group(6)
            data = shop.image(kind, pid, int(m.group(7)) if m.group(7) else None)
            if data is not None:
                ctype = "image/png" if kind == "produkt" else "image/jpeg"
                return self._send(200, data, ctype, {"Cache-Control": "max-age=86400"})
        m = re.fullmatch(r"/bilder/weiter/(\d+)\.jpg", path)
        if m and int(m.group(1)) < len(shop.config.redirect_images):
            target = shop.config.redirect_images[int(m.group(1))]
            return self._send(302, b"", "text/plain", {"Location": target})
        if path in ("/warenkorb", "/suche") or path.startswith(("/konto/", "/damen/outlet")):
            return self._html(_page("Bereich", "<h1>Dieser Bereich ist nicht für Crawler</h1>"))
        return self._not_found()


class _ShopServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    shop: DemoShop


class DemoShop:
    """The demo shop as an object: start it on a free port, read its request log, stop it."""

    def __init__(self, catalog_dir: str | Path, config: ShopConfig | None = None) -> None:
        self.config = config or ShopConfig()
        self.data = _load(Path(catalog_dir))
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._fault_counts: dict[str, int] = {}
        self._fault_streak: dict[str, int] = {}
        self._server: _ShopServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, port: int = 0) -> str:
        self._server = _ShopServer((HOST, port), _Handler)
        self._server.shop = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-shop", daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._server is not None, "shop not started"
        return f"http://{HOST}:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> DemoShop:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- behaviour ------------------------------------------------------------------------
    def record(self, path: str, status: int, user_agent: str) -> None:
        with self._lock:
            self.requests.append(RequestRecord(path, status, user_agent))

    def fault_for(self, path: str) -> str | None:
        """``"429"``, ``"503"``, ``"slow"`` or None: decided by (seed, path, n-th request of path)."""
        c = self.config
        if c.fail_rate <= 0 and c.slow_rate <= 0:
            return None
        with self._lock:
            n = self._fault_counts.get(path, 0)
            self._fault_counts[path] = n + 1
            streak = self._fault_streak.get(path, 0)
            u = _unit(c.fault_seed, path, n)
            if u < c.fail_rate and streak < c.max_faults_per_path:
                self._fault_streak[path] = streak + 1
                return "429" if _unit("kind", c.fault_seed, path, n) < 0.5 else "503"
            self._fault_streak[path] = 0
        if _unit("slow", c.fault_seed, path, n) < c.slow_rate:
            return "slow"
        return None

    def robots_txt(self) -> str:
        text = ROBOTS_TXT
        if self.config.crawl_delay:
            text += f"Crawl-delay: {self.config.crawl_delay}\n"
        return text

    def _mode(self, cat_slug: str) -> str:
        slugs = [s for s, _ in self.data.categories]
        return LISTING_MODES[slugs.index(cat_slug) % len(LISTING_MODES)] if cat_slug in slugs else LISTING_MODES[0]

    def home_page(self) -> str:
        links = "".join(
            f'<li><a class="kategorie" href="/damen/{s}/" data-kategorie="{html.escape(n)}">{html.escape(n)}</a></li>'
            for s, n in self.data.categories
        )
        body = (
            "<h1>Damenmode</h1><p>Entdecke unsere Kategorien:</p>"
            f'<ul class="kategorien">{links}<li><a class="kategorie" href="/damen/outlet/" data-kategorie="Outlet">Outlet %</a></li></ul>'
        )
        return _page("Damenmode", body)

    def _in(self, cat_slug: str, color_slug: str) -> list[_Product]:
        return [
            p for p in self.data.products
            if p.cat_slug == cat_slug and (not color_slug or p.color_slug == color_slug)
        ]

    def listing_page(self, cat_slug: str, color_slug: str) -> str | None:
        names = dict(self.data.categories)
        if cat_slug not in names or not self._in(cat_slug, color_slug):
            return None
        color_name = next((p.color_name for p in self._in(cat_slug, color_slug)), "") if color_slug else ""
        title = f"{names[cat_slug]} in {color_name}" if color_name else names[cat_slug]
        facets = "" if color_slug else '<nav class="facetten" id="facetten"><span>Farbe:</span> </nav>'
        body = (
            f"<h1>{html.escape(title)}</h1>{facets}"
            f'<div id="produkte" class="produkt-grid" data-kategorie="{cat_slug}" data-farbe="{color_slug}"></div>'
            '<nav id="seiten" class="pagination"></nav>'
            '<button id="mehr-laden" type="button" hidden>Mehr laden</button>'
            '<div id="nachladen" style="height:4px"></div><p id="listen-ende" hidden>Alle Artikel geladen</p>'
        )
        return _page(title, body, modus=self._mode(cat_slug), scripts=("/static/lazy.js", "/static/liste.js"))

    def api_listing(self, cat_slug: str, color_slug: str, seite: int) -> dict | None:
        prods = self._in(cat_slug, color_slug)
        if not prods:
            return None
        size = max(1, self.config.page_size)
        pages = (len(prods) + size - 1) // size
        seite = min(max(1, seite), pages)
        chunk = prods[(seite - 1) * size : seite * size]
        facets: dict[str, list] = {}
        if not color_slug:
            for p in prods:
                f = facets.setdefault(p.color_slug, [p.color_name, 0])
                f[1] += 1
        return {
            "seite": seite,
            "seiten": pages,
            "gesamt": len(prods),
            "artikel": [
                {
                    "id": p.item.id, "name": p.item.name, "marke": p.item.brand, "url": p.url,
                    "bild": f"/bilder/klein/{quote(p.item.id, safe='')}.jpg",
                    "preis_text": p.price.replace(".", ",") + " €",
                }
                for p in chunk
            ],
            "facetten": [
                {"name": name, "anzahl": n, "url": f"/damen/{cat_slug}/{slug}/"}
                for slug, (name, n) in facets.items()
            ],
        }

    def product_page(self, p: _Product) -> str:
        it = p.item
        pid = quote(it.id, safe="")
        img = f"/bilder/produkt/{pid}.png"
        models = [f"/bilder/model/{pid}/{i + 1}.jpg" for i in range(len(it.model_img_paths))]
        models += list(self.config.foreign_images)
        models += [f"/bilder/weiter/{i}.jpg" for i in range(len(self.config.redirect_images))]
        rows = []
        for tag in it.attributes:
            key, sep, value = tag.partition(":")
            if sep:
                rows.append(f"<dt>{html.escape(key.strip())}</dt><dd>{html.escape(value.strip())}</dd>")
            else:
                rows.append(f'<dt class="hinweis"></dt><dd>{html.escape(tag)}</dd>')
        model_imgs = "".join(
            f'<img class="modelbild" src="{PLACEHOLDER}" data-src="{u}" loading="lazy" alt="Model {i + 1}">'
            for i, u in enumerate(models)
        )
        base = ""  # absolute URLs in JSON-LD would pin a port; relative ones resolve against the page
        ld = {
            "@context": "https://schema.org",
            "@type": "Product",
            "sku": it.id,
            "productID": it.id,
            "name": it.name,
            "brand": {"@type": "Brand", "name": it.brand},
            "image": [base + img] + models,
            "color": p.color_name if p.color_slug != NO_COLOR[0] else "",
            "category": f"Damen > {p.cat_name}",
            "additionalProperty": [
                {"@type": "PropertyValue", "name": k.strip(), "value": v.strip()}
                for k, sep, v in (t.partition(":") for t in it.attributes)
                if sep
            ],
            "offers": {"@type": "Offer", "price": p.price, "priceCurrency": "EUR", "availability": "https://schema.org/InStock"},
        }
        ld_json = json.dumps(ld, ensure_ascii=False).replace("</", "<\\/")
        head = (
            f'\n<meta property="og:type" content="product"><meta property="og:title" content="{html.escape(it.name)}">'
            f'<meta property="og:image" content="{img}"><meta property="product:brand" content="{html.escape(it.brand)}">'
            f'<meta property="product:price:amount" content="{p.price}"><meta property="product:price:currency" content="EUR">'
            f'<meta property="product:retailer_item_id" content="{html.escape(it.id)}">'
            f'<script type="application/ld+json">{ld_json}</script>'
        )
        body = f"""<nav class="brotkrumen"><a href="/damen/">Damen</a> › <a href="/damen/{p.cat_slug}/">{html.escape(p.cat_name)}</a></nav>
<article class="produkt" data-artikel-id="{html.escape(it.id)}">
<div><img class="produktbild" src="{PLACEHOLDER}" data-src="{img}" loading="lazy" alt="{html.escape(it.name)}">
<div class="modelbilder">{model_imgs}</div></div>
<div><a class="marke" href="/marken/{slugify(it.brand)}/">{html.escape(it.brand)}</a>
<h1 class="produkt-name">{html.escape(it.name)}</h1>
<div class="preis-gross" data-preis="{p.price}" data-waehrung="EUR">{p.price.replace('.', ',')} €</div>
<p>Farbe: <span class="farbe">{html.escape(p.color_name)}</span></p>
<h2>Produktdetails</h2><dl class="eigenschaften">{''.join(rows)}</dl>
<button type="button" onclick="location.href='/warenkorb'">In den Warenkorb</button></div>
</article>"""
        return _page(it.name, body, head_extra=head)

    def image(self, kind: str, pid: str, n: int | None) -> bytes | None:
        p = self.data.by_id.get(unquote(pid))
        if p is None:
            return None
        key = f"{kind}/{p.item.id}/{n}"
        with self._lock:
            cached = self.data.image_cache.get(key)
        if cached is not None:
            return cached
        if kind == "model":
            paths = p.item.model_img_paths
            if n is None or not 1 <= n <= len(paths):
                return None
            data = (self.data.root / paths[n - 1]).read_bytes()
        elif kind == "klein":
            data = (self.data.root / p.item.img_path).read_bytes()
        else:
            data = _shop_photo(self.data.root / p.item.img_path)
        with self._lock:
            self.data.image_cache[key] = data
        return data


def _shop_photo(path: Path) -> bytes:
    """The product photo the way shops serve it: a portrait PNG with a transparent background.

    The crawler has to undo this (flatten on white, pad to a square, resize) to get the
    thesis's 256x256 JPEG back.
    """
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB").resize((360, 360), Image.Resampling.BICUBIC)
    arr = np.asarray(rgb)
    alpha = np.where(arr.min(axis=2) > 245, 0, 255).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([arr, alpha]), "RGBA")
    canvas = Image.new("RGBA", (360, 440), (0, 0, 0, 0))
    canvas.paste(rgba, (0, 40))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


# --- CLI ------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fashion-retrieval" / "demo-shop"


def ensure_catalog(products: int, seed: int, cache_dir: Path | None = None) -> Path:
    """The rendered demo catalog for ``(products, seed)``, rendered once into the cache."""
    out = (cache_dir or default_cache_dir()) / f"n{products}_s{seed}"
    if (out / "catalog.csv").is_file():
        return out
    from crawler.demo.render import render_catalog

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        render_catalog(tmp, products=products, seed=seed)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0 picks a free one; default 8765)")
    p.add_argument("--products", type=int, default=300, help="products to render when --catalog is not given")
    p.add_argument("--seed", type=int, default=0, help="render seed (default 0)")
    p.add_argument("--catalog", help="serve this catalog folder instead of rendering one")
    p.add_argument("--cache-dir", help=f"where rendered catalogs are kept (default {default_cache_dir()})")
    p.add_argument("--page-size", type=int, default=ShopConfig.page_size, help="products per listing page")
    p.add_argument("--fail-rate", type=float, default=0.0, help="share of page/image requests answered 429 or 503")
    p.add_argument("--slow-rate", type=float, default=0.0, help="share of page/image requests answered slowly")
    p.add_argument("--slow-seconds", type=float, default=ShopConfig.slow_seconds)
    p.add_argument("--retry-after", type=int, default=ShopConfig.retry_after, help="Retry-After on injected 429s")
    p.add_argument("--fault-seed", type=int, default=0, help="seed of the fault decisions")
    p.add_argument("--crawl-delay", type=float, default=None, help="Crawl-delay line in robots.txt")


def run(args: argparse.Namespace) -> int:
    for name in ("fail_rate", "slow_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            print(f"error: --{name.replace('_', '-')} must be between 0 and 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    if args.catalog:
        root = Path(args.catalog)
        if not (root / "catalog.csv").is_file():
            print(f"error: --catalog {root}: no catalog.csv there", file=sys.stderr)
            return 2
    else:
        print(f"rendering demo catalog ({args.products} products, seed {args.seed}) if not cached ...", flush=True)
        root = ensure_catalog(args.products, args.seed, Path(args.cache_dir) if args.cache_dir else None)
    config = ShopConfig(
        page_size=args.page_size, fail_rate=args.fail_rate, slow_rate=args.slow_rate,
        slow_seconds=args.slow_seconds, retry_after=args.retry_after, fault_seed=args.fault_seed,
        crawl_delay=args.crawl_delay,
    )
    shop = DemoShop(root, config)
    try:
        shop.start(args.port)
    except OSError as exc:
        print(f"error: cannot listen on {HOST}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"demo shop: {len(shop.data.products)} products from {root}", flush=True)
    print(f"serving on {shop.base_url}/  (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        shop.stop()
    return 0
