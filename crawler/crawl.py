"""Crawl a fashion shop with a real browser into a catalog folder (resumable, polite).

How a crawl runs:

1. Discovery visits listing pages one at a time, in queue order (start page -> category
   facets -> colour facets -> result pages), rendering each in Chromium (JavaScript grids,
   "load more", infinite scroll) and records every product URL with a sequence number. One
   listing page is one SQLite transaction, so the numbering is the same in every run.
2. ``--concurrency`` workers take found products in that order: render the product page,
   parse it with the site adapter, download and normalise the photos (256x256 JPEG on
   white; only from the shop's host and its CDNs, see :mod:`crawler.hosts`), write the image files, then append the catalog row (fsynced), then mark the
   product done in SQLite.
3. When nothing is left, ``catalog.csv`` is rewritten atomically in discovery order with
   duplicates (same product id or same product photo) removed, keeping the first found.

A crawl killed at any moment leaves complete rows only; ``--resume`` picks up the queue,
re-does the product that was in flight, and ends with the same catalog row for row.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from catalog import (
    CATALOG_FILE,
    CatalogWriter,
    Item,
    Schema,
    SchemaError,
    atomic_write_bytes,
    atomic_write_text,
)
from catalog.format import read_rows
from crawler.browser import PermanentError
from crawler.hosts import HostNotAllowed, default_policy
from crawler.images import ImageConfig, ImageError, content_hash, normalize_image
from crawler.normalize import Normalizer, split_tag
from crawler.politeness import GaveUp, Politeness, RetryPolicy
from crawler.sites import SITES, ListingPage, ParseError, RawProduct, get_adapter
from crawler.state import BLOCKED, DONE, DUPLICATE, FAILED, STATE_FILE, CrawlState, ProductTask

DEFAULT_USER_AGENT = (
    "FashionRetrievalCrawler/0.1 (research crawler for content-based fashion retrieval; "
    "obeys robots.txt; +https://github.com/fashion-retrieval/fashion-retrieval)"
)
EXTRA_COLUMNS = ("currency", "price")
SUMMARY_FILE = "crawl_summary.json"
IMAGES_DIR, MODEL_IMAGES_DIR = "images", "model_images"


class CrawlError(RuntimeError):
    """A crawl that cannot start (bad arguments, a folder holding something else)."""


@dataclass
class CrawlConfig:
    site: str
    out: Path
    start_url: str | None = None
    categories: list[str] | None = None  # None: all; schema values ("dresses")
    colors: list[str] | None = None  # None: all; []: do not split listings by colour
    max_products: int | None = None
    concurrency: int = 4
    delay: float = 1.0  # seconds between requests to one host
    resume: bool = False
    retry_failed: bool = False
    tries: int = 5
    timeout_s: float = 20.0
    user_agent: str = DEFAULT_USER_AGENT
    schema_path: Path | None = None
    vocab_path: Path | None = None
    product_pattern: str | None = None  # generic site only
    image_size: int = 256
    image_hosts: list[str] = field(default_factory=list)  # picture hosts allowed besides the shop's and its CDNs
    progress: bool = True
    seed: int | None = None  # jitter of retry delays (timing only, never the output)


@dataclass
class CrawlSummary:
    out: str
    products: int = 0  # rows in the final catalog
    written_this_run: int = 0
    failed: int = 0
    duplicates: int = 0
    robots_blocked: int = 0
    listings_done: int = 0
    listings_failed: int = 0
    requests: int = 0
    retries: int = 0
    browser_requests_blocked: int = 0
    images_refused: int = 0  # picture URLs on hosts the crawl may not fetch from (dropped or failed)
    unknown_tags: int = 0  # tag occurrences in kept rows that set no attribute
    unknown_tags_distinct: int = 0
    top_unknown_tags: list[tuple[str, int]] = field(default_factory=list)
    labels_filled: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    products_per_s: float = 0.0
    finished: bool = False

    def text(self) -> str:
        lines = [
            f"crawl of {self.out}: {'finished' if self.finished else 'NOT finished'}",
            f"  products in catalog: {self.products} ({self.written_this_run} written in this run, "
            f"{self.products_per_s:.2f} products/s over {self.elapsed_s:.1f} s)",
            f"  failures: {self.failed}   duplicates dropped: {self.duplicates}   blocked by robots.txt: {self.robots_blocked}"
            f"   pictures refused (host not allowed): {self.images_refused}",
            f"  listings: {self.listings_done} done, {self.listings_failed} failed;"
            f" requests: {self.requests}, retries: {self.retries}",
            "  labels filled: " + ", ".join(f"{g}={n}" for g, n in self.labels_filled.items()),
            f"  unknown tags: {self.unknown_tags} ({self.unknown_tags_distinct} distinct)",
        ]
        for tag, n in self.top_unknown_tags[:10]:
            lines.append(f"    {n:5d}  {tag}")
        return "\n".join(lines)


def _file_stem(product_id: str) -> str:
    """A file name for a product id; ids with other characters get a hash so none collide."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", product_id)[:80]
    if safe != product_id:
        safe += "_" + hashlib.sha1(product_id.encode()).hexdigest()[:8]
    return safe


def _item_from_row(row: dict[str, str], schema: Schema) -> Item:
    def lst(v: str) -> list[str]:
        return json.loads(v) if v else []

    return Item(
        id=row["id"], img_path=row["img_path"], img_url=row.get("img_url", ""),
        model_img_urls=lst(row.get("model_img_urls", "")), product_url=row.get("product_url", ""),
        brand=row.get("brand", ""), name=row.get("name", ""), attributes=lst(row.get("attributes", "")),
        labels={g: (row.get(g) or None) for g in schema.names},
        model_img_paths=lst(row.get("model_img_paths", "")),
        extra={c: row.get(c, "") for c in EXTRA_COLUMNS},
    )


class Crawler:
    def __init__(self, config: CrawlConfig) -> None:
        self.config = config
        self.out = Path(config.out)
        kwargs = {"product_pattern": config.product_pattern} if config.site == "generic" and config.product_pattern else {}
        self.adapter = get_adapter(config.site, **kwargs)
        self.schema = Schema.load(config.schema_path) if config.schema_path else Schema.default()
        self.normalizer = Normalizer.load(self.schema, config.vocab_path)
        for name, wanted in (("category", config.categories), ("color", config.colors)):
            if wanted and name in self.schema.groups:
                for v in wanted:
                    self.schema.check_value(name, v)
        self.image_config = ImageConfig(size=config.image_size)
        self.image_policy = default_policy(config.start_url or self.adapter.base_url, self.adapter.image_hosts,
                                           config.image_hosts)
        self.summary = CrawlSummary(out=str(self.out))
        self._in_flight: set[int] = set()
        self._discovery_done = False
        self._cond: asyncio.Condition | None = None
        self._bar = None
        self._written = 0

    # --- setup ----------------------------------------------------------------------------
    def _open_state(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        state_path = self.out / STATE_FILE
        if state_path.exists() and not self.config.resume:
            raise CrawlError(f"{self.out} already holds a crawl ({STATE_FILE}); pass --resume to continue it or choose another --out")
        if not state_path.exists() and (self.out / CATALOG_FILE).exists():
            raise CrawlError(f"{self.out} holds a {CATALOG_FILE} that no crawl state belongs to; choose an empty --out")
        self.state = CrawlState(state_path)
        identity = {
            "site": self.config.site,
            "start_url": self.config.start_url or self.adapter.base_url,
            "categories": self.config.categories,
            "colors": self.config.colors,
            "schema": self.schema.fingerprint(),
        }
        stored = self.state.get_meta("identity")
        if stored is None:
            self.state.set_meta("identity", json.dumps(identity, sort_keys=True))
            self.schema.save(self.out / "schema.json")
        elif json.loads(stored) != identity:
            raise CrawlError(
                f"--resume with other settings than the crawl in {self.out}: it was {stored}, now {json.dumps(identity, sort_keys=True)}"
            )
        self.writer = CatalogWriter(self.out, self.schema, extra_columns=EXTRA_COLUMNS)
        self._reconcile()
        if self.config.retry_failed:
            self.state.retry_failed()
        if not self.state.listing_counts():
            start = self.adapter.start_listings(self.config.start_url, self.config.categories, self.config.colors)
            self.state.add_listings([(ls.url, list(ls.context)) for ls in start])

    def _reconcile(self) -> None:
        """Rows that reached catalog.csv but not SQLite (killed in between) count as done."""
        header, rows = read_rows(self.writer.path)
        for _, record in rows:
            row = dict(zip(header, record, strict=False))
            seq = self.state.seq_for_url(row.get("product_url", ""))
            if seq is None or self.state.status_of(seq) == DONE:
                continue
            img = self.out / row["img_path"]
            h = content_hash(img.read_bytes()) if img.is_file() else ""
            self.state.mark_done(seq, row["id"], h, row)

    # --- discovery ------------------------------------------------------------------------
    def _wanted(self, context: list[str]) -> bool:
        """Does a listing with these implied tags fit --categories / --colors?"""
        labels = self.normalizer.normalize(list(context)).labels
        for group, allowed in (("category", self.config.categories), ("color", self.config.colors)):
            if allowed is None:
                continue
            mentions = any(
                (g := self.normalizer.group_for_key(split_tag(t)[0])) is not None and g.name == group for t in context
            )
            if mentions and labels.get(group) not in allowed:
                return False
        return True

    async def _fetch_listing(self, page, url: str, context: list[str]) -> ListingPage | Exception:  # noqa: ANN001
        hints = self.adapter.hints

        async def render(u: str) -> ListingPage:
            lp = self.adapter.parse_listing(await self.browser.open_listing(page, u, hints), u)
            if self._facets_to_follow(context, lp):
                return lp  # narrower listings will be crawled instead; no need to scroll this one
            return self.adapter.parse_listing(await self.browser.expand_listing(page, u, hints), u)

        try:
            return await self.politeness.call(url, render)
        except Exception as exc:  # noqa: BLE001 - any listing's trouble is recorded, not fatal
            return exc

    def _facets_to_follow(self, context: list[str], lp: ListingPage) -> list[tuple[str, list[str]]]:
        return [(f.url, context + list(f.context)) for f in lp.facets if self._wanted(context + list(f.context))]

    async def _discover(self, pages: list) -> None:
        """Visit listings, several at once, but commit their findings strictly in queue order.

        Committing in queue order makes the product sequence numbers exactly those of a
        one-listing-at-a-time crawl, whatever finishes first.
        """
        limit = self.config.max_products
        try:
            while True:
                if limit is not None and self.state.count_products() >= limit:
                    break
                batch = self.state.pending_listings(len(pages))
                if not batch:
                    break
                results = await asyncio.gather(
                    *(self._fetch_listing(p, url, ctx) for p, (_, url, ctx) in zip(pages, batch, strict=False))
                )
                for (seq, url, context), lp in zip(batch, results, strict=True):
                    if limit is not None and self.state.count_products() >= limit:
                        break  # stays pending, as in a one-at-a-time crawl
                    await self._commit_listing(seq, url, context, lp)
                await self._wake()
        finally:
            self._discovery_done = True
            await self._wake()

    async def _commit_listing(self, seq: int, url: str, context: list[str], lp: ListingPage | Exception) -> None:
        if isinstance(lp, PermissionError):
            self.summary.robots_blocked += 1
            self.state.finish_listing(seq, BLOCKED)
            return
        if isinstance(lp, Exception):
            self.state.record_failure(url, "listing", getattr(lp, "attempts", 1), str(lp))
            self.state.finish_listing(seq, FAILED)
            return
        facets = self._facets_to_follow(context, lp)
        if facets:
            products, more = [], facets
        else:
            products = []
            for u in lp.products:
                if await self.politeness.allowed(u):
                    products.append((u, context))
                else:
                    self.summary.robots_blocked += 1
            more = [(u, context) for u in lp.next_pages]
        self.state.finish_listing(seq, DONE, products, more, product_limit=self.config.max_products)

    async def _wake(self) -> None:
        assert self._cond is not None
        async with self._cond:
            if self._bar is not None:
                known = self.state.count_products()
                total = min(known, self.config.max_products) if self.config.max_products else known
                if total != self._bar.total:
                    self._bar.total = total
                    self._bar.refresh()
            self._cond.notify_all()

    # --- products -------------------------------------------------------------------------
    async def _next_task(self) -> ProductTask | None:
        assert self._cond is not None
        async with self._cond:
            while True:
                tasks = self.state.pending_products(self._in_flight, 1)
                if tasks:
                    self._in_flight.add(tasks[0].seq)
                    return tasks[0]
                if self._discovery_done:
                    return None
                await self._cond.wait()

    async def _worker(self) -> None:
        page = await self.browser.new_page()
        try:
            while (task := await self._next_task()) is not None:
                try:
                    outcome = await self._product(page, task)
                except Exception as exc:  # noqa: BLE001 - e.g. a crashed renderer: record, new page, go on
                    self.state.record_failure(task.url, "product", 1, f"{type(exc).__name__}: {exc}")
                    self.state.mark(task.seq, FAILED, f"{type(exc).__name__}: {exc}")
                    outcome = FAILED
                    with contextlib.suppress(Exception):
                        await page.close()
                    page = await self.browser.new_page()
                finally:
                    self._in_flight.discard(task.seq)
                self._tick(outcome)
        finally:
            with contextlib.suppress(Exception):
                await page.close()

    def _tick(self, outcome: str) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        counts = self.state.product_counts()
        self._bar.set_postfix(
            failed=counts.get(FAILED, 0), dup=counts.get(DUPLICATE, 0), blocked=counts.get(BLOCKED, 0), refresh=False
        )

    async def _image(self, url: str) -> bytes:
        self.image_policy.check(url)  # before politeness: not even robots.txt is fetched from a refused host
        data = await self.politeness.call(url, lambda u: self.browser.download(u, self.image_policy.check))
        return await asyncio.to_thread(normalize_image, data, self.image_config)

    def _refused(self, url: str, exc: HostNotAllowed) -> None:
        self.summary.images_refused += 1
        self.state.record_failure(url, "image", 0, f"refused: {exc}")

    async def _product(self, page, task: ProductTask) -> str:  # noqa: ANN001
        hints = self.adapter.hints
        try:
            html = await self.politeness.call(task.url, lambda u: self.browser.product_html(page, u, hints))
            raw = self.adapter.parse_product(html, task.url)
            self._check(raw)
            earlier = self.state.earlier_with("product_id", raw.id, task.seq)
            if earlier is not None:
                self.state.mark(task.seq, DUPLICATE, f"same product id as #{earlier}", raw.id)
                return DUPLICATE
            # All photos of a product at once; the per-host rate limit still spaces the requests.
            # A model photo on a refused host is left out; a refused product photo fails the product.
            main, *model_results = await asyncio.gather(
                *(self._image(u) for u in [raw.image_url, *raw.model_image_urls]), return_exceptions=True)
            if isinstance(main, BaseException):
                if isinstance(main, HostNotAllowed):
                    self._refused(raw.image_url, main)
                raise main
            model_data: list[tuple[str, bytes]] = []
            for u, res in zip(raw.model_image_urls, model_results, strict=True):
                if isinstance(res, HostNotAllowed):
                    self._refused(u, res)
                elif isinstance(res, BaseException):
                    raise res
                else:
                    model_data.append((u, res))
            h = content_hash(main)
            earlier = self.state.earlier_with("img_hash", h, task.seq)
            if earlier is not None:
                self.state.mark(task.seq, DUPLICATE, f"same product photo as #{earlier}", raw.id)
                return DUPLICATE
            models, model_urls, seen = [], [], {h}
            for u, data in model_data:
                if content_hash(data) not in seen:  # a gallery showing one photo twice
                    seen.add(content_hash(data))
                    models.append(data)
                    model_urls.append(u)
        except PermissionError as exc:
            self.summary.robots_blocked += 1
            self.state.mark(task.seq, BLOCKED, str(exc))
            return BLOCKED
        except GaveUp as exc:
            self.state.record_failure(task.url, "product", exc.attempts, str(exc))
            self.state.mark(task.seq, FAILED, str(exc))
            return FAILED
        except (PermanentError, ParseError, ImageError, HostNotAllowed) as exc:
            self.state.record_failure(task.url, "product", 1, f"{type(exc).__name__}: {exc}")
            self.state.mark(task.seq, FAILED, str(exc))
            return FAILED

        # Images first, the row last: a row never points at a missing file.
        stem = _file_stem(raw.id)
        img_path = f"{IMAGES_DIR}/{stem}.jpg"
        atomic_write_bytes(self.out / img_path, main)
        model_paths = []
        for i, data in enumerate(models):
            rel = f"{MODEL_IMAGES_DIR}/{stem}_{i}.jpg"
            atomic_write_bytes(self.out / rel, data)
            model_paths.append(rel)
        norm = self.normalizer.normalize(raw.tags, task.context)
        item = Item(
            id=raw.id, img_path=img_path, img_url=raw.image_url, model_img_urls=model_urls,
            product_url=task.url, brand=raw.brand, name=raw.name, attributes=raw.tags,
            labels=norm.labels, model_img_paths=model_paths,
            extra={"price": raw.price, "currency": raw.currency},
        )
        self.writer.write(item)
        self.state.mark_done(task.seq, raw.id, h, item.to_row(self.schema.names))
        self._written += 1
        return DONE

    @staticmethod
    def _check(raw: RawProduct) -> None:
        if not raw.id:
            raise ParseError(f"{raw.url}: no product id found")
        if not raw.image_url:
            raise ParseError(f"{raw.url}: no product image found")

    # --- the whole run --------------------------------------------------------------------
    async def _run_async(self) -> None:
        from crawler.browser import Browser, BrowserConfig

        self._cond = asyncio.Condition()
        bconf = BrowserConfig(user_agent=self.config.user_agent, timeout_s=self.config.timeout_s)
        self.politeness = Politeness(
            user_agent=self.config.user_agent,
            delay=self.config.delay,
            policy=RetryPolicy(tries=self.config.tries),
            fetch_robots=lambda url: self.browser.fetch_text(url),
            seed=self.config.seed,
        )
        async with Browser(bconf, self.politeness.allowed_cached) as browser:
            self.browser = browser
            if self.config.progress:
                from tqdm import tqdm

                counts = self.state.product_counts()
                finished = sum(n for s, n in counts.items() if s != "pending")
                self._bar = tqdm(total=self.state.count_products(), initial=finished, unit="product",
                                 desc=f"crawl {self.config.site}", dynamic_ncols=True, file=sys.stderr)
            listing_pages = [await browser.new_page() for _ in range(max(1, self.config.concurrency))]
            try:
                workers = [asyncio.create_task(self._worker()) for _ in range(max(1, self.config.concurrency))]
                await self._discover(listing_pages)
                await asyncio.gather(*workers)
            finally:
                for p in listing_pages:
                    await p.close()
                if self._bar is not None:
                    self._bar.close()
            self.summary.browser_requests_blocked = browser.blocked_requests
        s = self.politeness.stats
        self.summary.requests, self.summary.retries = s.requests, s.retries

    def run(self) -> CrawlSummary:
        t0 = time.monotonic()
        self._open_state()
        try:
            asyncio.run(self._run_async())
        finally:
            self.writer.close()
        self._finalize()
        self.summary.elapsed_s = time.monotonic() - t0
        self.summary.written_this_run = self._written
        self.summary.products_per_s = self._written / self.summary.elapsed_s if self.summary.elapsed_s else 0.0
        atomic_write_text(self.out / SUMMARY_FILE, json.dumps(asdict(self.summary), indent=2, ensure_ascii=False) + "\n")
        self.state.close()
        return self.summary

    def _finalize(self) -> None:
        """Rewrite catalog.csv in discovery order without duplicates, once nothing is pending."""
        counts = self.state.product_counts()
        listings = self.state.listing_counts()
        limit_reached = self.config.max_products is not None and self.state.count_products() >= self.config.max_products
        pending = counts.get("pending", 0) or (listings.get("pending", 0) and not limit_reached)
        items, seen_ids, seen_hashes = [], set(), set()
        for seq, pid, h, row in self.state.done_items():
            if pid in seen_ids or (h and h in seen_hashes):
                self.state.mark(seq, DUPLICATE, "duplicate found at the end of the crawl", pid)
                continue
            seen_ids.add(pid)
            seen_hashes.add(h)
            items.append(_item_from_row(row, self.schema))
        if not pending:
            from catalog import write_catalog

            write_catalog(self.out, items, self.schema)
            referenced = {it.img_path for it in items} | {p for it in items for p in it.model_img_paths}
            for sub in (IMAGES_DIR, MODEL_IMAGES_DIR):
                for f in sorted((self.out / sub).glob("*")) if (self.out / sub).is_dir() else []:
                    if f"{sub}/{f.name}" not in referenced:
                        f.unlink()
            self.state.set_meta("finished", "1")
        counts = self.state.product_counts()
        listings = self.state.listing_counts()
        self.summary.finished = not pending
        self.summary.products = len(items)
        self.summary.failed = counts.get(FAILED, 0)
        self.summary.duplicates = counts.get(DUPLICATE, 0)
        self.summary.listings_done = listings.get(DONE, 0)
        self.summary.listings_failed = listings.get(FAILED, 0)
        unknown: Counter = Counter()
        filled: Counter = Counter()
        for it in items:
            unknown.update(self.normalizer.normalize(it.attributes).unknown)
            filled.update(g for g, v in it.labels.items() if v)
        self.summary.unknown_tags = sum(unknown.values())
        self.summary.unknown_tags_distinct = len(unknown)
        self.summary.top_unknown_tags = unknown.most_common(20)
        self.summary.labels_filled = {g: filled.get(g, 0) for g in self.schema.names}


def crawl(config: CrawlConfig) -> CrawlSummary:
    """Run (or resume) a crawl; returns its summary (also written to ``crawl_summary.json``)."""
    return Crawler(config).run()


# --- CLI ------------------------------------------------------------------------------------
def _list_arg(value: str | None, all_word: str = "all") -> list[str] | None:
    if value is None or value.strip().lower() == all_word:
        return None
    if value.strip().lower() == "none":
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site", required=True, choices=list(SITES), help="site adapter")
    p.add_argument("--out", required=True, help="catalog folder to write (state lives in it too)")
    p.add_argument("--start-url", help="where to start (needed for generic; for demo the shop's address)")
    p.add_argument("--categories", help="comma-separated schema categories (dresses,skirts,...); default all")
    p.add_argument("--colors", help="comma-separated schema colours to split listings by; 'none' to not split; default all")
    p.add_argument("--max-products", type=int, help="visit at most the first N products found (in listing order)")
    p.add_argument("--concurrency", type=int, default=4, help="product pages rendered in parallel (default 4)")
    p.add_argument("--delay", type=float, default=1.0, help="seconds between requests to one host (default 1.0; "
                   "robots.txt Crawl-delay raises it)")
    p.add_argument("--resume", action="store_true", help="continue the crawl in --out")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: try failed products and listings again")
    p.add_argument("--tries", type=int, default=5, help="tries per request before recording a failure (default 5)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per navigation or download (default 20)")
    p.add_argument("--user-agent", default=DEFAULT_USER_AGENT, help="identifying User-Agent header")
    p.add_argument("--schema", help="output schema.json (default: the thesis vocabulary)")
    p.add_argument("--vocab", help="tag vocabulary JSON (default: crawler/vocab/de.json)")
    p.add_argument("--product-pattern", help="generic site: regex a product page's URL path matches")
    p.add_argument("--image-hosts", help="comma-separated picture hosts allowed besides the shop's own and the "
                   "adapter's CDNs: host, host:port or *.domain")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> CrawlConfig:
    if args.concurrency < 1:
        raise CrawlError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.delay < 0:
        raise CrawlError(f"--delay must not be negative, got {args.delay}")
    if args.max_products is not None and args.max_products < 1:
        raise CrawlError(f"--max-products must be at least 1, got {args.max_products}")
    if args.tries < 1:
        raise CrawlError(f"--tries must be at least 1, got {args.tries}")
    if args.retry_failed and not args.resume:
        raise CrawlError("--retry-failed needs --resume")
    start = args.start_url
    if args.site == "demo" and not start:
        start = "http://127.0.0.1:8765"
    return CrawlConfig(
        site=args.site, out=Path(args.out), start_url=start,
        categories=_list_arg(args.categories), colors=_list_arg(args.colors),
        max_products=args.max_products, concurrency=args.concurrency, delay=args.delay,
        resume=args.resume, retry_failed=args.retry_failed, tries=args.tries, timeout_s=args.timeout,
        user_agent=args.user_agent, schema_path=Path(args.schema) if args.schema else None,
        vocab_path=Path(args.vocab) if args.vocab else None, product_pattern=args.product_pattern,
        image_hosts=[h.strip() for h in (args.image_hosts or "").split(",") if h.strip()],
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    from crawler.browser import BrowserMissing

    try:
        summary = crawl(config_from_args(args))
    except (CrawlError, SchemaError, BrowserMissing, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130
    print(summary.text())
    return 0 if summary.finished else 1

