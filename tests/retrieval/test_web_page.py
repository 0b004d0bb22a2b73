"""The shopper's page in real Chromium (Playwright driving Debian's /usr/bin/chromium) against a
real server process: upload, edit, search, click a hit, a bad upload, phone width."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
# as root in a container: no sandbox; nothing that would reach out of the machine
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: install it with `make chromium` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # launch() gives every run a fresh temporary profile (user data dir)
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def open_page(browser, url: str, width: int = 1280, height: int = 900):
    ctx = browser.new_context(viewport={"width": width, "height": height})
    ctx.set_default_timeout(90_000)
    page = ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector('body[data-state="ready"] #catalog-grid .card img')
    return ctx, page


@pytest.fixture
def page(browser, web_server):
    ctx, page = open_page(browser, web_server.http_url)
    yield page
    ctx.close()
    assert not page.errors, page.errors  # no uncaught script error


def searches_done(page, n: int) -> None:
    """Wait until the page has finished its n-th search (success or error)."""
    page.wait_for_selector(f'body[data-searches="{n}"][data-state="ready"]')


@pytest.fixture(scope="module")
def catalog(demo_catalog_dir: Path):
    from catalog import load_catalog

    return load_catalog(demo_catalog_dir)


def other_colour(page, own: str | None) -> str:
    values = page.locator("#edit-color option").evaluate_all("opts => opts.map(o => o.value).filter(Boolean)")
    return next(v for v in values if v != own)


def test_upload_edit_search_shows_modified_image_and_hits(page, catalog, tmp_path: Path) -> None:
    item = catalog.items[0]
    photo = tmp_path / "my_photo.jpg"
    Image.open(catalog.image_path(item)).convert("RGB").save(photo, quality=90)
    page.set_input_files("#upload", str(photo))
    searches_done(page, 1)  # choosing a photo searches with it unchanged
    assert page.locator("#hits .hit").count() >= 1
    assert page.locator("#modified").is_hidden()

    colour = other_colour(page, item.labels.get("color"))
    page.select_option("#edit-color", colour)
    page.click("#search")
    searches_done(page, 2)

    assert page.locator("#error").is_hidden()
    assert page.locator("#modified").is_visible()
    assert f"color → {colour}" in page.locator("#modified-caption").inner_text()
    src = page.locator("#modified-images img").first.get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).format == "PNG"
    assert page.locator("#modified-images img").first.evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.locator("#query-image").evaluate("img => img.complete && img.naturalWidth > 0")
    hits = page.locator("#hits .hit")
    assert hits.count() >= 1
    first = hits.first
    assert first.locator("img").evaluate("img => img.complete && img.naturalWidth > 0") or \
        first.locator("img").get_attribute("src").startswith("/v1/items/")
    assert "score" in first.inner_text()
    assert "total" in page.locator("#timings").inner_text()

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1280


def test_clicking_a_hit_makes_it_the_next_query(page, catalog) -> None:
    page.locator("#catalog-grid .card").first.click()
    searches_done(page, 1)
    picked = page.locator("#query-caption").get_attribute("data-query")
    assert picked in {it.id for it in catalog.items}
    hit = page.locator("#hits .hit").first
    hit_id = hit.get_attribute("data-id")
    assert hit_id != picked  # an item query leaves the item itself out
    hit.click()
    searches_done(page, 2)
    assert page.locator("#query-caption").get_attribute("data-query") == hit_id
    assert hit_id not in page.locator("#hits .hit").evaluate_all("cards => cards.map(c => c.dataset.id)")
    # the query's own values show on the controls, ready for the next edit
    own = next(it for it in catalog.items if it.id == hit_id).labels.get("color")
    if own:
        assert page.locator("#edit-color option").first.inner_text() == f"keep ({own})"


def test_a_bad_upload_shows_a_readable_error(page) -> None:
    page.set_input_files("#upload", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                            "buffer": b"this is a shopping list, not a photo"}])
    searches_done(page, 1)
    error = page.locator("#error")
    assert error.is_visible()
    text = error.inner_text()
    assert "not a decodable image" in text and "INVALID_ARGUMENT" in text
    assert page.locator("#hits .hit").count() == 0
    # and the page recovers: a catalog pick searches normally and clears the message
    page.locator("#catalog-grid .card").first.click()
    searches_done(page, 2)
    assert error.is_hidden() and page.locator("#hits .hit").count() >= 1


def test_phone_width_and_product_to_model(browser, web_server, tmp_path: Path) -> None:
    ctx, page = open_page(browser, web_server.http_url, width=390, height=844)
    try:
        # only what the server offers: strength/variants only when a generator says it has them
        from retrieval.client import RetrievalClient

        with RetrievalClient(web_server.address) as c:
            gens = c.list_attributes().generators
        assert page.locator("#strength-row").is_hidden() is not any(g.continuous for g in gens)
        assert page.locator("#variants-row").is_hidden() is not any(g.multi_modal for g in gens)
        page.locator("#catalog-grid .card").first.click()
        searches_done(page, 1)
        if page.locator("#to-model-row").is_visible():
            page.check("#to-model")
            page.click("#search")
            searches_done(page, 2)
            assert "worn by a model" in page.locator("#modified-caption").inner_text()
            assert page.locator("#modified").is_visible()
        assert page.locator("#hits .hit").count() >= 1
        # nothing wider than the phone's screen
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        assert not page.errors, page.errors
    finally:
        ctx.close()
