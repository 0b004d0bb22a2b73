"""Pooling the Fader benchmark's slider samples: counts over all sliders, not a mean of shares."""

from __future__ import annotations

from benchmarks.bench_edits import pool_sliders


def test_pooled_sliders_weigh_each_sample_by_its_size() -> None:
    bench = {"overall": {"queries": 80, "monotone_probability": 73 / 80}}
    seed = {"overall": {"queries": 160, "monotone_probability": 141 / 160}}
    pooled = pool_sliders([bench, seed])
    assert pooled["queries"] == 240 and pooled["monotone"] == 214
    assert abs(pooled["monotone_probability"] - 214 / 240) < 1e-12
    assert pooled["monotone_probability"] != (73 / 80 + 141 / 160) / 2, "not the mean of the two shares"
    assert pool_sliders([])["monotone_probability"] is None
