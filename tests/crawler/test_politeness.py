"""robots.txt rules, retry/backoff and the rate limit, the last two against a real local server."""

from __future__ import annotations

import asyncio
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crawler.politeness import (
    GaveUp,
    HostRateLimiter,
    Politeness,
    RetryPolicy,
    RobotsRules,
    parse_retry_after,
)

UA = "FashionRetrievalCrawler/0.1 (+test)"

ROBOTS = """
User-agent: *
Disallow: /konto/
Disallow: /damen/outlet/
Allow: /damen/outlet/neu/
Disallow: /*?sortierung=
Disallow: /*.pdf$
Crawl-delay: 0.5

User-agent: BadBot
Disallow: /
"""


def test_robots_longest_match_wildcards_and_end_anchor():
    r = RobotsRules.parse(ROBOTS, UA)
    assert r.allowed("https://s.example/damen/kleider/")
    assert not r.allowed("https://s.example/konto/anmelden")
    assert not r.allowed("https://s.example/damen/outlet/")
    assert r.allowed("https://s.example/damen/outlet/neu/kleid")  # longer Allow beats shorter Disallow
    assert not r.allowed("https://s.example/damen/kleider/?sortierung=preis")
    assert not r.allowed("https://s.example/agb.pdf")
    assert r.allowed("https://s.example/agb.pdf?x=1")
    assert r.allowed("https://s.example/robots.txt")
    assert r.crawl_delay == 0.5


def test_robots_agent_groups():
    assert not RobotsRules.parse(ROBOTS, "BadBot/2.0").allowed("https://s.example/damen/")
    assert RobotsRules.parse("", UA).allowed("https://s.example/anything")
    grouped = "User-agent: a\nUser-agent: fashionretrievalcrawler\nDisallow: /x\n"
    assert not RobotsRules.parse(grouped, UA).allowed("https://s.example/x/1")
    assert RobotsRules.parse(grouped, "Other/1").allowed("https://s.example/x/1")


def test_backoff_is_exponential_with_jitter_and_honours_retry_after():
    p = RetryPolicy(tries=6, base_delay=0.5, max_delay=4.0, jitter=0.5)
    rng = random.Random(1)
    for attempt, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0)]:
        d = p.delay(attempt, None, rng)
        assert nominal * 0.5 <= d <= nominal * 1.5
    assert p.delay(1, 3.0, rng) == 3.0
    assert p.delay(1, 100.0, rng) == 4.0  # capped
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("bald") is None


class _FlakyHandler(BaseHTTPRequestHandler):
    """/flaky: 429 (Retry-After: 1), then 503, then 200. /down: always 503. /robots.txt: rules."""

    counts: dict[str, int] = {}
    lock = threading.Lock()
    agents: list[str] = []

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):
        with self.lock:
            n = self.counts.get(self.path, 0)
            self.counts[self.path] = n + 1
            self.agents.append(self.headers.get("User-Agent", ""))
        if self.path == "/robots.txt":
            return self._reply(200, b"User-agent: *\nDisallow: /geheim/\n")
        if self.path == "/flaky":
            if n == 0:
                return self._reply(429, b"slow down", {"Retry-After": "1"})
            if n == 1:
                return self._reply(503, b"busy")
            return self._reply(200, b"ok")
        if self.path == "/down":
            return self._reply(503, b"down")
        if self.path == "/gone":
            return self._reply(404, b"nope")
        return self._reply(200, b"fine")

    def _reply(self, status, body, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def flaky_server():
    _FlakyHandler.counts = {}
    _FlakyHandler.agents = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_retries_robots_and_giving_up_against_a_local_server(chromium, flaky_server):
    from crawler.browser import Browser, BrowserConfig, PermanentError

    async def go():
        holder = {}
        pol = Politeness(UA, delay=0.0, policy=RetryPolicy(tries=3, base_delay=0.05, max_delay=2.0),
                         fetch_robots=lambda u: holder["b"].fetch_text(u), seed=0)
        async with Browser(BrowserConfig(user_agent=UA, timeout_s=5), pol.allowed_cached) as b:
            holder["b"] = b
            body = await pol.call(flaky_server + "/flaky", b.download)
            assert body == b"ok"
            assert pol.stats.retries == 2
            assert pol.stats.waited_s >= 1.0  # the Retry-After of the 429 was honoured
            with pytest.raises(GaveUp) as err:
                await pol.call(flaky_server + "/down", b.download)
            assert err.value.attempts == 3
            with pytest.raises(PermissionError, match="robots.txt"):
                await pol.call(flaky_server + "/geheim/x", b.download)
            with pytest.raises(PermanentError, match="404"):
                await pol.call(flaky_server + "/gone", b.download)

    asyncio.run(go())
    assert _FlakyHandler.counts["/flaky"] == 3
    assert _FlakyHandler.counts["/down"] == 3
    assert "/geheim/x" not in _FlakyHandler.counts  # never requested
    assert _FlakyHandler.counts["/gone"] == 1  # a 404 is not retried
    assert set(_FlakyHandler.agents) == {UA}


def test_rate_limiter_spaces_requests_per_host(monkeypatch):
    now = [0.0]
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(s):  # a fake clock: the test takes no real time
        slept.append(s)
        now[0] += s
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    async def go():
        lim = HostRateLimiter(0.25, clock=lambda: now[0])
        for _ in range(3):
            await lim.wait("a.example")
        await lim.wait("b.example")  # another host does not wait
        lim.set_interval("c.example", 1.0)  # robots.txt Crawl-delay
        await lim.wait("c.example")
        await lim.wait("c.example")

    asyncio.run(go())
    assert slept == [0.25, 0.25, 1.0]
