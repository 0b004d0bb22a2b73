"""The colour-reading analysis: a share of the misread rows read right, with the same confidence."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.bench_colour_reading import corrected_colour_logits


def _logits() -> tuple[torch.Tensor, np.ndarray]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 6, generator=gen)
    truth = np.random.default_rng(1).integers(0, 6, 200)
    truth[:10] = -1  # unknown labels
    return logits, truth


def test_no_share_changes_nothing_and_a_full_share_reads_every_known_label() -> None:
    logits, truth = _logits()
    assert torch.equal(corrected_colour_logits(logits, truth, 0.0, np.random.default_rng(0)), logits)
    full = corrected_colour_logits(logits, truth, 1.0, np.random.default_rng(0))
    known = truth >= 0
    assert (full.argmax(1).numpy()[known] == truth[known]).all()
    assert torch.equal(full[~torch.from_numpy(known)], logits[~torch.from_numpy(known)]), "unknown labels untouched"


def test_a_share_corrects_that_many_misread_rows_keeping_each_rows_values() -> None:
    logits, truth = _logits()
    reading = logits.argmax(1).numpy()
    wrong = (reading != truth) & (truth >= 0)
    half = corrected_colour_logits(logits, truth, 0.5, np.random.default_rng(0))
    changed = (half != logits).any(1).numpy()
    assert changed.sum() == round(0.5 * wrong.sum()) and not changed[~wrong].any()
    # a swap of two logits: the same values, so the same confidence, now on the label
    assert torch.equal(half.sort(1).values, logits.sort(1).values)
    assert (half.argmax(1).numpy()[changed] == truth[changed]).all()
