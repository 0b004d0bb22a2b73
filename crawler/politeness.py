"""Being a good guest on someone else's server: robots.txt, a per-host rate limit, and retries.

Every request the crawler makes itself (page navigations, image downloads) goes through
:class:`Politeness`; requests the browser makes on a page's behalf are checked against
robots.txt by the browser's request filter (see :mod:`crawler.browser`).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


# --- robots.txt -----------------------------------------------------------------------------
@dataclass
class _Rule:
    allow: bool
    pattern: str
    regex: re.Pattern

    @classmethod
    def make(cls, allow: bool, pattern: str) -> _Rule:
        anchored = pattern.endswith("$")
        body = pattern[:-1] if anchored else pattern
        rx = "".join(".*" if ch == "*" else re.escape(ch) for ch in body)
        return cls(allow, pattern, re.compile(rx + ("$" if anchored else "")))


@dataclass
class RobotsRules:
    """The rules of one robots.txt for one user agent (RFC 9309).

    The longest matching pattern decides and Allow wins a tie; ``*`` and ``$`` work as in
    RFC 9309. (The standard library's parser takes the first match instead, which gets
    ``Allow: /a/b`` after ``Disallow: /a`` wrong.)
    """

    rules: list[_Rule] = field(default_factory=list)
    crawl_delay: float | None = None

    @classmethod
    def parse(cls, text: str, user_agent: str) -> RobotsRules:
        groups: list[tuple[list[str], list[_Rule], float | None]] = []
        agents: list[str] = []
        rules: list[_Rule] = []
        delay: float | None = None
        last_was_agent = False
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if ":" not in line:
                continue
            name, value = (s.strip() for s in line.split(":", 1))
            name = name.lower()
            if name == "user-agent":
                if not last_was_agent and agents:
                    groups.append((agents, rules, delay))
                    agents, rules, delay = [], [], None
                agents.append(value.lower())
                last_was_agent = True
                continue
            last_was_agent = False
            if name in ("allow", "disallow") and agents:
                if value:  # an empty Disallow allows everything
                    rules.append(_Rule.make(name == "allow", value))
            elif name == "crawl-delay" and agents:
                with contextlib.suppress(ValueError):
                    delay = float(value)
        if agents:
            groups.append((agents, rules, delay))
        token = user_agent.split("/")[0].strip().lower()
        specific = [g for g in groups if token in g[0]]
        chosen = specific or [g for g in groups if "*" in g[0]]
        merged = cls()
        for _, rs, d in chosen:
            merged.rules += rs
            if d is not None:
                merged.crawl_delay = d
        return merged

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if path == "/robots.txt":
            return True
        best: _Rule | None = None
        for rule in self.rules:
            if rule.regex.match(path) and (
                best is None
                or len(rule.pattern) > len(best.pattern)
                or (len(rule.pattern) == len(best.pattern) and rule.allow)
            ):
                best = rule
        return best is None or best.allow


# --- retries --------------------------------------------------------------------------------
class RetryableError(Exception):
    """A failure worth trying again (429, 5xx, a timeout, a dropped connection)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GaveUp(Exception):
    """All tries failed; ``attempts`` and the last error say why."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class RetryPolicy:
    tries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.5  # delay is multiplied by a factor in [1 - jitter, 1 + jitter]

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(self.max_delay, retry_after)  # the server said when; no jitter needed
        d = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return d * rng.uniform(1 - self.jitter, 1 + self.jitter)


# --- rate limit -----------------------------------------------------------------------------
class HostRateLimiter:
    """At most one request start per ``interval`` seconds per host."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._intervals: dict[str, float] = {}

    def set_interval(self, host: str, interval: float) -> None:
        self._intervals[host] = max(self.interval, interval)

    async def wait(self, host: str) -> None:
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            now = self._clock()
            start = max(now, self._next.get(host, 0.0))
            if start > now:
                await asyncio.sleep(start - now)
            self._next[host] = start + self._intervals.get(host, self.interval)


# --- all together ---------------------------------------------------------------------------
@dataclass
class PolitenessStats:
    requests: int = 0
    retries: int = 0
    gave_up: int = 0
    robots_blocked: int = 0
    waited_s: float = 0.0


class Politeness:
    """Robots check + rate limit + retry loop around one request.

    ``fetch_robots(origin) -> str | None`` returns a host's robots.txt text (None: no file,
    everything allowed). A robots.txt that cannot be fetched after retries blocks the host,
    as RFC 9309 asks for server errors.
    """

    def __init__(
        self,
        user_agent: str,
        delay: float,
        policy: RetryPolicy,
        fetch_robots: Callable[[str], Awaitable[str | None]],
        obey_robots: bool = True,
        seed: int | None = None,
    ) -> None:
        self.user_agent = user_agent
        self.policy = policy
        self.limiter = HostRateLimiter(delay)
        self.obey_robots = obey_robots
        self._fetch_robots = fetch_robots
        self._robots: dict[str, RobotsRules] = {}
        self._robots_lock = asyncio.Lock()
        self._rng = random.Random(seed)
        self.stats = PolitenessStats()

    @staticmethod
    def origin(url: str) -> str:
        p = urlsplit(url)
        return f"{p.scheme}://{p.netloc}"

    async def robots_for(self, url: str) -> RobotsRules:
        origin = self.origin(url)
        async with self._robots_lock:
            if origin not in self._robots:
                try:
                    text = await self.call(origin + "/robots.txt", self._fetch_robots, check_robots=False)
                except GaveUp:
                    text = "User-agent: *\nDisallow: /\n"
                rules = RobotsRules.parse(text or "", self.user_agent)
                self._robots[origin] = rules
                if rules.crawl_delay:
                    self.limiter.set_interval(urlsplit(url).netloc, rules.crawl_delay)
            return self._robots[origin]

    def allowed_cached(self, url: str) -> bool:
        """Robots verdict without I/O (for the browser's request filter); unknown hosts pass."""
        if not self.obey_robots:
            return True
        rules = self._robots.get(self.origin(url))
        return rules is None or rules.allowed(url)

    async def allowed(self, url: str) -> bool:
        if not self.obey_robots:
            return True
        return (await self.robots_for(url)).allowed(url)

    async def call(
        self, url: str, request: Callable[[str], Awaitable[T]], check_robots: bool = True
    ) -> T:
        """Run ``request(url)`` politely; it raises :class:`RetryableError` for a retry."""
        if check_robots and not await self.allowed(url):
            self.stats.robots_blocked += 1
            raise PermissionError(f"robots.txt disallows {url}")
        host = urlsplit(url).netloc
        last: Exception | None = None
        for attempt in range(1, self.policy.tries + 1):
            await self.limiter.wait(host)
            self.stats.requests += 1
            try:
                return await request(url)
            except RetryableError as exc:
                last = exc
                if attempt == self.policy.tries:
                    break
                pause = self.policy.delay(attempt, exc.retry_after, self._rng)
                self.stats.retries += 1
                self.stats.waited_s += pause
                await asyncio.sleep(pause)
        self.stats.gave_up += 1
        raise GaveUp(f"{url}: gave up after {self.policy.tries} tries: {last}", self.policy.tries)
