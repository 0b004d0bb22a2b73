"""The crawl state file: queue order, the product limit, duplicates and retrying failures."""

from __future__ import annotations

from crawler.state import DONE, FAILED, CrawlState


def test_queue_order_limit_and_outcomes(tmp_path):
    st = CrawlState(tmp_path / "s.sqlite")
    st.add_listings([("https://s/a", ["Kategorie: Kleider"]), ("https://s/b", []), ("https://s/a", [])])
    first = st.pending_listings(5)
    assert [u for _, u, _ in first] == ["https://s/a", "https://s/b"]  # no duplicate listing
    seq_a = first[0][0]
    added = st.finish_listing(
        seq_a, DONE,
        products=[("https://s/p1", ["Kategorie: Kleider"]), ("https://s/p2", []), ("https://s/p1", []), ("https://s/p3", [])],
        more_listings=[("https://s/a?seite=2", [])],
        product_limit=2,
    )
    assert added == 2 and st.count_products() == 2  # the limit holds, the repeat is ignored
    assert [u for _, u, _ in st.pending_listings(5)] == ["https://s/b", "https://s/a?seite=2"]
    tasks = st.pending_products(set(), 10)
    assert [t.url for t in tasks] == ["https://s/p1", "https://s/p2"] and tasks[0].context == ["Kategorie: Kleider"]
    assert st.pending_products({tasks[0].seq}, 10)[0].url == "https://s/p2"

    st.mark_done(tasks[0].seq, "X1", "h1", {"id": "X1"})
    assert st.earlier_with("product_id", "X1", tasks[1].seq) == tasks[0].seq
    assert st.earlier_with("img_hash", "h1", tasks[0].seq) is None  # only earlier ones count
    st.mark(tasks[1].seq, FAILED, "boom")
    st.record_failure("https://s/p2", "product", 5, "HTTP 503")
    assert st.failures() == [("https://s/p2", "product", 5, "HTTP 503")]
    assert st.product_counts() == {DONE: 1, FAILED: 1}
    assert st.retry_failed() == 1 and st.product_counts() == {DONE: 1, "pending": 1}
    st.close()

    again = CrawlState(tmp_path / "s.sqlite")  # everything survives a reopen
    assert again.done_items() == [(tasks[0].seq, "X1", "h1", {"id": "X1"})]
    again.close()
