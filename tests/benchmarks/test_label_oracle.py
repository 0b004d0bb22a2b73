"""The label oracle of bench_index_quality: the best P@10 a ranking could reach from the labels."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_index_quality import label_oracle


def test_the_oracle_counts_what_the_gallery_holds() -> None:
    # three black tees, one navy tee, two black jeans: a black tee has 2 others sharing both,
    # 1 more tee, 2 more black items
    cat = np.array(["tee", "tee", "tee", "tee", "jeans", "jeans"])
    col = np.array(["black", "black", "black", "navy", "black", "black"])
    out = label_oracle({"category": cat, "color": col}, k=4)
    # per query (both, category only, colour only) within k=4:
    # black tee: 2, 1, 1 | navy tee: 0, 3, 0 | black jeans: 1, 0, 3 (capped at 4 - 1)
    assert out["p10_both_max"] == round((2 * 3 + 0 + 1 * 2) / 6 / 4, 4)
    assert out["p10_category"] == round(((2 + 1) * 3 + 3 + 1 * 2) / 6 / 4, 4)
    assert out["p10_color"] == round(((2 + 1) * 3 + 0 + (1 + 3) * 2) / 6 / 4, 4)
    assert out["queries_with_fewer_than_k_both"] == 1.0
