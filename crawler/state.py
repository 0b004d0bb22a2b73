"""The crawl's memory: a SQLite file in the output folder (``crawl_state.sqlite``).

It holds the listing queue, every product URL found (with the order it was found in), the
outcome of each product, the failures and the image hashes. Discovery runs one listing
page at a time in queue order and commits each page in one transaction, so the sequence
numbers of products are the same in every run of the same crawl; the final catalog is
sorted by them, which is why a killed and resumed crawl ends with the same rows in the
same order as one that never stopped.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "crawl_state.sqlite"

PENDING, DONE, FAILED, DUPLICATE, BLOCKED = "pending", "done", "failed", "duplicate", "blocked"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS listings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL UNIQUE,
    context TEXT NOT NULL,              -- JSON list of tags the listing implies
    status TEXT NOT NULL DEFAULT 'pending',
    found INTEGER NOT NULL DEFAULT 0     -- product links seen on it
);
CREATE TABLE IF NOT EXISTS products (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL UNIQUE,
    context TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    product_id TEXT,
    img_hash TEXT,
    item TEXT,                           -- JSON of the catalog row once written
    note TEXT
);
CREATE INDEX IF NOT EXISTS products_status ON products(status, seq);
CREATE INDEX IF NOT EXISTS products_pid ON products(product_id);
CREATE INDEX IF NOT EXISTS products_hash ON products(img_hash);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    kind TEXT NOT NULL,                  -- listing | product
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class ProductTask:
    seq: int
    url: str
    context: list[str]


class CrawlState:
    """Thin typed layer over the SQLite file; every write commits before returning."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # --- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- listings -------------------------------------------------------------------------
    def add_listings(self, listings: Iterable[tuple[str, list[str]]]) -> None:
        with self._tx():
            self._add_listings(listings)

    def _add_listings(self, listings: Iterable[tuple[str, list[str]]]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO listings(url, context) VALUES (?, ?)",
            [(u, json.dumps(c, ensure_ascii=False)) for u, c in listings],
        )

    def pending_listings(self, limit: int) -> list[tuple[int, str, list[str]]]:
        """The ``limit`` pending listings with the lowest sequence numbers."""
        rows = self.db.execute(
            "SELECT seq, url, context FROM listings WHERE status='pending' ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [(s, u, json.loads(c)) for s, u, c in rows]

    def finish_listing(
        self,
        seq: int,
        status: str,
        products: list[tuple[str, list[str]]] = (),
        more_listings: list[tuple[str, list[str]]] = (),
        product_limit: int | None = None,
    ) -> int:
        """Record one listing page's outcome and what it found, atomically.

        Products beyond ``product_limit`` known products are not added. Returns how many
        new product URLs were added.
        """
        added = 0
        with self._tx():
            known = self.count_products()
            for url, context in products:
                if product_limit is not None and known >= product_limit:
                    break
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO products(url, context) VALUES (?, ?)",
                    (url, json.dumps(context, ensure_ascii=False)),
                )
                if cur.rowcount:
                    known += 1
                    added += 1
            self._add_listings(more_listings)
            self.db.execute(
                "UPDATE listings SET status=?, found=? WHERE seq=?", (status, len(products), seq)
            )
        return added

    def listing_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM listings GROUP BY status").fetchall())

    # --- products -------------------------------------------------------------------------
    def count_products(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM products").fetchone()[0]

    def product_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM products GROUP BY status").fetchall())

    def pending_products(self, exclude: set[int], limit: int) -> list[ProductTask]:
        rows = self.db.execute(
            "SELECT seq, url, context FROM products WHERE status='pending' ORDER BY seq LIMIT ?",
            (limit + len(exclude),),
        ).fetchall()
        return [ProductTask(s, u, json.loads(c)) for s, u, c in rows if s not in exclude][:limit]

    def seq_for_url(self, url: str) -> int | None:
        row = self.db.execute("SELECT seq FROM products WHERE url=?", (url,)).fetchone()
        return row[0] if row else None

    def status_of(self, seq: int) -> str:
        return self.db.execute("SELECT status FROM products WHERE seq=?", (seq,)).fetchone()[0]

    def earlier_with(self, column: str, value: str, seq: int) -> int | None:
        """Seq of a finished product before ``seq`` with the same id or image hash."""
        assert column in ("product_id", "img_hash")
        row = self.db.execute(
            f"SELECT seq FROM products WHERE {column}=? AND seq<? AND status='done' ORDER BY seq LIMIT 1",
            (value, seq),
        ).fetchone()
        return row[0] if row else None

    def mark_done(self, seq: int, product_id: str, img_hash: str, item: dict) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE products SET status='done', product_id=?, img_hash=?, item=?, note=NULL WHERE seq=?",
                (product_id, img_hash, json.dumps(item, ensure_ascii=False), seq),
            )

    def mark(self, seq: int, status: str, note: str = "", product_id: str | None = None) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE products SET status=?, note=?, product_id=COALESCE(?, product_id) WHERE seq=?",
                (status, note, product_id, seq),
            )

    def done_items(self) -> list[tuple[int, str, str, dict]]:
        """``(seq, product_id, img_hash, item)`` of every written product, in discovery order."""
        rows = self.db.execute(
            "SELECT seq, product_id, img_hash, item FROM products WHERE status='done' ORDER BY seq"
        ).fetchall()
        return [(s, p, h, json.loads(i)) for s, p, h, i in rows]

    def retry_failed(self) -> int:
        with self._tx():
            n = self.db.execute("UPDATE products SET status='pending', note=NULL WHERE status='failed'").rowcount
            self.db.execute("UPDATE listings SET status='pending' WHERE status='failed'")
        return n

    # --- failures -------------------------------------------------------------------------
    def record_failure(self, url: str, kind: str, attempts: int, error: str) -> None:
        self.db.execute(
            "INSERT INTO failures(url, kind, attempts, error, at) VALUES (?, ?, ?, ?, ?)",
            (url, kind, attempts, error[:2000], time.time()),
        )

    def failures(self) -> list[tuple[str, str, int, str]]:
        return self.db.execute("SELECT url, kind, attempts, error FROM failures ORDER BY id").fetchall()

    # --- helpers --------------------------------------------------------------------------
    def _tx(self) -> _Tx:
        return _Tx(self.db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
