"""Crawler test helpers: skip browser tests cleanly where Debian's Chromium is absent."""

from __future__ import annotations

import pytest

from crawler.browser import CHROMIUM


@pytest.fixture(scope="session")
def chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: install it with `make chromium` (apt-get install chromium)")
