"""Attention pooling of the parts head: the flattened maps, and what the pool reads from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from indexing.attention import GRID, HIST_BINS, PIXELS, AttentionPool, flatten_maps, maps_dim, unflatten_maps
from indexing.encoder import Encoder, EncoderConfig, EncoderError, PartsHead

CH = (4, 6, 8)


def _flat(mask: torch.Tensor, x01: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    b = x01.shape[0]
    maps = {5: torch.randn(b, CH[0], 28, 28), 11: torch.randn(b, CH[1], 14, 14), 16: torch.randn(b, CH[2], 7, 7)}
    return flatten_maps(maps, mask, x01)


def _uniform_scores(pool: AttentionPool, prior: float) -> AttentionPool:
    with torch.no_grad():
        last = pool.score
        last.weight.zero_()
        last.bias.zero_()
        pool.prior.fill_(prior)
    return pool.eval()


def test_flattened_maps_round_trip():
    x01 = torch.rand(2, 3, 56, 56)
    flat = _flat(torch.ones(2, 1, 56, 56), x01)
    assert flat.shape == (2, maps_dim(CH))
    s5, s11, s16, mask, bins = unflatten_maps(flat, CH)
    assert s5.shape == (2, CH[0], GRID, GRID) and s11.shape == (2, CH[1], GRID, GRID)
    assert s16.shape == (2, CH[2], GRID // 2, GRID // 2) and mask.shape == (2, 1, PIXELS, PIXELS)
    assert bins.dtype == torch.long and int(bins.min()) >= 0 and int(bins.max()) < HIST_BINS**3
    torch.testing.assert_close(mask, torch.ones_like(mask))


def test_uniform_attention_gives_the_whole_photo_histogram():
    x01 = torch.rand(1, 3, PIXELS, PIXELS)
    flat = _flat(torch.ones(1, 1, PIXELS, PIXELS), x01)
    pool = _uniform_scores(AttentionPool(CH, heads=2), prior=0.0)
    with torch.no_grad():
        out = pool(flat)
    hist = (out.view(1, 2, -1)[0, 0, : HIST_BINS**3] / 4) ** 2
    q = (x01[0] * HIST_BINS).long().clamp(max=HIST_BINS - 1)
    bins = ((q[0] * HIST_BINS + q[1]) * HIST_BINS + q[2]).flatten()
    expected = torch.bincount(bins, minlength=HIST_BINS**3).float() / bins.numel()
    torch.testing.assert_close(hist, expected, atol=1e-6, rtol=1e-4)


def test_the_garment_mask_keeps_attention_off_the_background():
    """Left half red on a zero mask (background), right half blue on the garment: the pooled
    histogram is (almost) all blue."""
    x01 = torch.zeros(1, 3, PIXELS, PIXELS)
    x01[0, 0, :, : PIXELS // 2] = 0.9
    x01[0, 2, :, PIXELS // 2 :] = 0.9
    mask = torch.zeros(1, 1, PIXELS, PIXELS)
    mask[..., PIXELS // 2 :] = 1.0
    pool = _uniform_scores(AttentionPool(CH, heads=1), prior=1.0)
    with torch.no_grad():
        hist = (pool(_flat(mask, x01))[0, : HIST_BINS**3] / 4) ** 2
    blue, red = (0 * HIST_BINS + 0) * HIST_BINS + 7, (7 * HIST_BINS + 0) * HIST_BINS + 0
    assert float(hist[blue]) > 0.99 and float(hist[red]) < 0.01


def _pool_by_definition(pool: AttentionPool, flat: torch.Tensor) -> torch.Tensor:
    """The pool as its docstring defines it, on stage-16 maps upsampled to the grid (slow, plain)."""
    s5, s11, s16, mask, bins = unflatten_maps(flat, CH)
    b, k = flat.shape[0], pool.heads
    up = s16.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    pos = torch.cat([s11, up], dim=1).flatten(2).transpose(1, 2)  # [B, P, c11 + c16]
    hidden = pool.norm(pool.hidden(pos).flatten(0, 1)).view(b, GRID * GRID, -1)
    logits = pool.score(F.gelu(hidden)).transpose(1, 2)
    prior = torch.log(F.avg_pool2d(mask, 2).clamp(min=1e-3)).flatten(1)
    att = torch.softmax(logits + pool.prior.view(1, -1, 1) * prior[:, None, :], dim=-1)
    att_px = att.view(b, k, GRID, GRID).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3).flatten(2) / 4
    hist = torch.zeros(b, k, HIST_BINS**3).scatter_add(2, bins.flatten(1)[:, None, :].expand(-1, k, -1), att_px)
    feats = torch.cat([s5, s11, up], dim=1).flatten(2).transpose(1, 2)  # [B, P, c5 + c11 + c16]
    return torch.cat([4 * (hist + 1e-8).sqrt(), att @ feats], dim=2).flatten(1)


def test_the_pool_computes_its_definition_with_stage_16_on_its_own_grid():
    """The fast path (stage 16's share of the MLP and of the pooled features computed on its
    7x7 grid) gives what the plain definition on upsampled maps gives, from a strided slice of
    a wider input as the parts head hands it over."""
    torch.manual_seed(1)
    x01 = torch.rand(3, 3, 56, 56)
    flat = torch.cat([torch.randn(3, 7), _flat((torch.rand(3, 1, 56, 56) > 0.3).float(), x01)], dim=1)[:, 7:]
    pool = AttentionPool(CH, heads=2)
    with torch.no_grad():
        pool.norm.running_mean.normal_()
        pool.norm.running_var.uniform_(0.5, 2.0)
        pool.prior.fill_(0.7)
    pool.eval()
    with torch.no_grad():
        torch.testing.assert_close(pool(flat), _pool_by_definition(pool, flat), atol=1e-5, rtol=1e-4)


def test_a_parts_head_with_attention_reads_maps_and_refuses_a_wrong_input_size():
    parts = [{"name": "category", "values": ["a", "b", "c"]}, {"name": "color", "values": ["x", "y"]}]
    head = PartsHead(5, parts, {"heads": 2, "channels": list(CH)}).eval()
    z = torch.cat([torch.randn(3, 5), _flat(torch.ones(3, 1, 56, 56), torch.rand(3, 3, 56, 56))], dim=1)
    with torch.no_grad():
        v = head(z)
    assert v.shape == (3, 5)
    np.testing.assert_allclose(v.norm(dim=1).numpy(), 1.0, rtol=1e-5)
    with pytest.raises(EncoderError, match="expects inputs of"):
        head(torch.randn(3, 5))


def test_an_encoder_with_attention_outputs_its_global_vector_then_the_maps():
    """The features encoder the recipe caches with: its first values are those of the same
    encoder without attention, so one trunk pass serves both."""
    base = dict(image_size=64, pool_stages=[5, 11, 16, 17], foreground=True, colour_bins=[8, 8, 8], colour_space="rgb")
    plain = Encoder.builtin(EncoderConfig(**base), device="cpu")
    with_maps = Encoder.builtin(EncoderConfig(**base, attention=2), device="cpu")
    assert with_maps.dim == plain.dim + with_maps.maps_dim and with_maps.map_channels == (40, 112, 320)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    a, b = plain.embed_tensor(x), with_maps.embed_tensor(x)
    torch.testing.assert_close(b[:, : plain.dim], a)
    assert plain.checksum != with_maps.checksum
    with pytest.raises(EncoderError, match="attention needs pool_stages"):
        Encoder(EncoderConfig(image_size=64, attention=2), weights="random")
