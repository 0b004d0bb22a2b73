"""The real browser: Playwright driving Debian's Chromium (never ``playwright install``).

One browser, one context (one User-Agent, one cookie jar), one page per worker. The context
filters every request the pages make: pictures, fonts and media are not loaded (the
crawler downloads the pictures it wants itself, politely), and nothing robots.txt forbids
is fetched, not even by a page's own scripts.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from crawler.politeness import RETRY_STATUSES, RetryableError, parse_retry_after
from crawler.sites.base import BrowserHints

CHROMIUM = Path(os.environ.get("CRAWLER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SKIPPED_RESOURCES = frozenset({"image", "media", "font"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class BrowserMissing(RuntimeError):
    pass


class PermanentError(Exception):
    """A failure that another try will not fix (404, a page without the expected content)."""


@dataclass(frozen=True)
class BrowserConfig:
    user_agent: str
    timeout_s: float = 20.0  # one navigation / download
    scroll_idle_s: float = 2.0  # no new products for this long: the listing is complete
    max_scroll_rounds: int = 200
    headless: bool = True


def check_chromium() -> Path:
    if not CHROMIUM.exists():
        raise BrowserMissing(
            f"{CHROMIUM} not found: install Debian's Chromium (`make chromium`, i.e. apt-get install chromium); "
            "never run `playwright install`"
        )
    return CHROMIUM


class Browser:
    """Async context manager around Playwright + Chromium."""

    def __init__(self, config: BrowserConfig, allowed: Callable[[str], bool]) -> None:
        self.config = config
        self._allowed = allowed
        self.blocked_requests = 0

    async def __aenter__(self) -> Browser:
        from playwright.async_api import async_playwright

        exe = check_chromium()
        self._pw = await async_playwright().start()
        try:
            self.browser = await self._pw.chromium.launch(
                executable_path=str(exe), headless=self.config.headless, args=CHROMIUM_ARGS
            )
            self.context = await self.browser.new_context(
                user_agent=self.config.user_agent, locale="de-DE", viewport={"width": 1280, "height": 900}
            )
            self.context.set_default_timeout(self.config.timeout_s * 1000)
            await self.context.route("**/*", self._filter)
        except BaseException:
            await self._pw.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.browser.close()
        finally:
            await self._pw.stop()

    async def _filter(self, route) -> None:  # noqa: ANN001 - playwright Route
        req = route.request
        if req.resource_type in SKIPPED_RESOURCES:
            await route.abort()
        elif not self._allowed(req.url):
            self.blocked_requests += 1
            await route.abort("accessdenied")
        else:
            await route.continue_()

    async def new_page(self):  # noqa: ANN201 - playwright Page
        return await self.context.new_page()

    # --- one navigation -------------------------------------------------------------------
    async def goto(self, page, url: str) -> None:  # noqa: ANN001
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            resp = await page.goto(url, wait_until="domcontentloaded", timeout=self.config.timeout_s * 1000)
        except PlaywrightTimeout as exc:
            raise RetryableError(f"timeout loading {url}") from exc
        except PlaywrightError as exc:
            raise RetryableError(f"loading {url}: {exc.message.splitlines()[0]}") from exc
        if resp is None:
            raise RetryableError(f"no response for {url}")
        if resp.status in RETRY_STATUSES or resp.status >= 500:
            raise RetryableError(f"HTTP {resp.status} for {url}", parse_retry_after(resp.headers.get("retry-after")))
        if resp.status >= 400:
            raise PermanentError(f"HTTP {resp.status} for {url}")

    async def listing_html(self, page, url: str, hints: BrowserHints) -> str:  # noqa: ANN001
        """Load a listing and make it show everything: click "load more", scroll, wait."""
        await self.open_listing(page, url, hints)
        return await self.expand_listing(page, url, hints)

    async def open_listing(self, page, url: str, hints: BrowserHints) -> str:  # noqa: ANN001
        """Load a listing until its first products (or facets) are there; its HTML so far."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        await self.goto(page, url)
        try:
            if hints.listing_ready:
                await page.wait_for_selector(hints.listing_ready, state="attached")
        except PlaywrightTimeout as exc:
            raise RetryableError(f"listing {url} did not render in time") from exc
        return await page.content()

    async def expand_listing(self, page, url: str, hints: BrowserHints) -> str:  # noqa: ANN001
        """Click "load more" / scroll until the whole listing is on the (already open) page."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        # A site that marks a complete listing gets nudged until it says so (a slow API is not
        # the end of the list); without a marker, a quiet spell of scroll_idle_s is the end.
        deadline = asyncio.get_running_loop().time() + 3 * self.config.timeout_s
        try:
            for _ in range(self.config.max_scroll_rounds):
                if hints.listing_done and await page.locator(hints.listing_done).count():
                    break
                before = await page.locator(hints.product_link).count()
                clicked = False
                if hints.load_more:
                    button = page.locator(hints.load_more).first
                    if await button.count() and await button.is_visible():
                        await button.click()
                        clicked = True
                if not clicked:
                    if not hints.infinite_scroll:
                        break
                    await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
                try:
                    await page.wait_for_function(
                        "([sel, n, done]) => document.querySelectorAll(sel).length > n"
                        " || (done !== null && document.querySelector(done) !== null)",
                        arg=[hints.product_link, before, hints.listing_done],
                        timeout=self.config.scroll_idle_s * 1000,
                    )
                except PlaywrightTimeout:
                    if hints.listing_done is None:
                        break  # nothing new came: this is all there is
                    if asyncio.get_running_loop().time() > deadline:
                        raise RetryableError(f"listing {url} never showed its end marker") from None
            else:
                if hints.listing_done:
                    raise RetryableError(f"listing {url} still not complete after {self.config.max_scroll_rounds} rounds")
        except PlaywrightTimeout as exc:
            raise RetryableError(f"listing {url} did not render in time") from exc
        return await page.content()

    async def product_html(self, page, url: str, hints: BrowserHints) -> str:  # noqa: ANN001
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        await self.goto(page, url)
        if hints.product_ready:
            try:
                await page.wait_for_selector(hints.product_ready, state="attached")
            except PlaywrightTimeout as exc:
                raise RetryableError(f"product page {url} did not render in time") from exc
        return await page.content()

    async def download(
        self, url: str, check_url: Callable[[str], None] | None = None, max_redirects: int = 5
    ) -> bytes:
        """Bytes at ``url`` through the browser context (same User-Agent and cookies).

        Redirects are followed here, one hop at a time, so that ``check_url`` (which raises
        to refuse a URL, e.g. :meth:`crawler.hosts.HostPolicy.check`) sees every hop: an
        allowed host cannot bounce the crawler to a host it may not fetch from.
        """
        from playwright.async_api import Error as PlaywrightError

        for _ in range(max_redirects + 1):
            if check_url is not None:
                check_url(url)
            try:
                resp = await self.context.request.get(url, timeout=self.config.timeout_s * 1000,
                                                      fail_on_status_code=False, max_redirects=0)
            except PlaywrightError as exc:
                raise RetryableError(f"download {url}: {exc.message.splitlines()[0]}") from exc
            try:
                if resp.status in REDIRECT_STATUSES:
                    location = resp.headers.get("location")
                    if not location:
                        raise PermanentError(f"HTTP {resp.status} without a Location for {url}")
                    url = urljoin(url, location)
                    continue
                if resp.status in RETRY_STATUSES or resp.status >= 500:
                    raise RetryableError(f"HTTP {resp.status} for {url}", parse_retry_after(resp.headers.get("retry-after")))
                if resp.status >= 400:
                    raise PermanentError(f"HTTP {resp.status} for {url}")
                return await resp.body()
            finally:
                await resp.dispose()
        raise PermanentError(f"more than {max_redirects} redirects, last to {url}")

    async def fetch_text(self, url: str) -> str | None:
        """robots.txt and the like: text on 200, None on 4xx (no file), retry on 429/5xx."""
        from playwright.async_api import Error as PlaywrightError

        try:
            resp = await self.context.request.get(url, timeout=self.config.timeout_s * 1000, fail_on_status_code=False)
        except PlaywrightError as exc:
            raise RetryableError(f"fetch {url}: {exc.message.splitlines()[0]}") from exc
        try:
            if resp.status in RETRY_STATUSES or resp.status >= 500:
                raise RetryableError(f"HTTP {resp.status} for {url}", parse_retry_after(resp.headers.get("retry-after")))
            if resp.status >= 400:
                return None
            return await resp.text()
        finally:
            await resp.dispose()


async def screenshot(url: str, out: str | Path, user_agent: str = "fashion-retrieval-crawler/screenshot") -> Path:
    """A full-page screenshot of ``url`` with lazy images loaded (to look at a shop page)."""
    from playwright.async_api import async_playwright

    exe = check_chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(exe), headless=True, args=CHROMIUM_ARGS)
        page = await browser.new_page(user_agent=user_agent, viewport={"width": 1280, "height": 900})
        await page.goto(url, wait_until="networkidle")
        for _ in range(5):
            await page.evaluate("window.scrollBy(0, 800)")
            await asyncio.sleep(0.2)
        await page.evaluate("window.scrollTo(0, 0)")
        await asyncio.sleep(0.5)
        await page.screenshot(path=str(out), full_page=True)
        await browser.close()
    return Path(out)
