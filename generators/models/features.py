"""Pretrained features as the judge of a generator: a projected discriminator and attribute heads.

A GAN trained from scratch on 2 CPU cores spends its budget teaching the discriminator what a
garment looks like. Projected GAN (Sauer et al., NeurIPS 2021) and Vision-aided GAN (Kumari et
al., CVPR 2022) show that a discriminator on *frozen pretrained features* gives the generator
useful gradients from the first step. Here the features are the ImageNet EfficientNet-Lite0
the project ships offline (:mod:`indexing.backbones`):

- :class:`FrozenFeatures` runs the frozen trunk once per image and returns feature maps at a
  few stages (for the discriminator) and garment-weighted pooled vectors (for the heads);
- :class:`ProjectedDiscriminator` is a small trainable conv head per feature scale;
- :class:`AttributeHeads` are per-group linear classifiers fitted on the catalog's real photos
  *before* GAN training and then frozen. They are the domain-classification loss: an edit is
  pulled towards what real photos of the target value look like, and the groups an edit does
  not name are pulled to stay as the heads read them on the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from indexing.backbones import build_backbone
from indexing.pooling import LAB_RANGE, foreground_weights, rgb_to_lab, weighted_gem

MAP_STAGES = (3, 5, 11, 16)  # Lite0, the last block at each scale: 24 ch at /4, 40 at /8, 112 at /16, 320 at /32
POOL_STAGES = (5, 11, 16, 17)  # colour and texture early, shape late; 17 is the 1280-ch head conv
STAGE_CHANNELS = {0: 32, 1: 16, 2: 24, 3: 24, 4: 40, 5: 40, 6: 80, 7: 80, 8: 80, 9: 112, 10: 112, 11: 112,
                  12: 192, 13: 192, 14: 192, 15: 192, 16: 320, 17: 1280}


COLOUR_BINS = (4, 6, 6)  # L, a, b centres of the judges' soft colour histogram
COLOUR_SIZE = 48  # the histogram is taken on this downscaled copy
COLOUR_WEIGHT = 2.0  # its share of the judges' input, next to each unit-length stage vector


def pooled_dim(pool_stages: Sequence[int] = POOL_STAGES, colour_bins: Sequence[int] | None = COLOUR_BINS) -> int:
    """Size of the concatenated vector of :class:`FrozenFeatures`: pooled stages + colour histogram."""
    return sum(STAGE_CHANNELS[s] for s in pool_stages) + (math.prod(colour_bins) if colour_bins else 0)


def soft_colour_histogram(x01: torch.Tensor, weights: torch.Tensor, bins: Sequence[int] = COLOUR_BINS,
                          size: int = COLOUR_SIZE) -> torch.Tensor:
    """A differentiable LAB histogram of the garment: ``[B, prod(bins)]``, square-rooted, L2-normalised.

    Each pixel votes for every bin centre with a Gaussian weight one bin wide, so the gradient
    tells a generator which way to move a pixel's colour. ImageNet features were trained to be
    partly colour-invariant; without this, the judges read colour from shape and texture cues
    and a recolouring hardly moves them.
    """
    x01 = F.interpolate(x01.float(), size=(size, size), mode="area")
    w = F.interpolate(weights.float(), size=(size, size), mode="area").flatten(1)  # [B, P]
    lab = rgb_to_lab(x01).flatten(2)  # [B, 3, P]
    votes = None
    for c, (n, (lo, hi)) in enumerate(zip(bins, LAB_RANGE, strict=True)):
        width = (hi - lo) / n
        centres = lo + width * (torch.arange(n, dtype=lab.dtype, device=lab.device) + 0.5)
        k = torch.exp(-0.5 * ((lab[:, c, :, None] - centres) / width) ** 2)  # [B, P, n]
        k = k / k.sum(-1, keepdim=True).clamp(min=1e-8)
        votes = k if votes is None else (votes[..., :, None] * k[..., None, :]).flatten(2)
    hist = (votes * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-6)
    return F.normalize(hist.clamp(min=1e-8).sqrt(), dim=1)


class FrozenFeatures(nn.Module):
    """Frozen Lite0 on images in ``[-1, 1]`` (its own input range): maps and pooled vectors."""

    def __init__(self, image_size: int, map_stages: Sequence[int] = MAP_STAGES,
                 pool_stages: Sequence[int] = POOL_STAGES, colour_bins: Sequence[int] | None = COLOUR_BINS) -> None:
        super().__init__()
        self.colour_bins = tuple(colour_bins) if colour_bins else None
        self.trunk, _ = build_backbone("efficientnet-lite0", None, image_size)
        self.trunk.eval().requires_grad_(False)
        self.map_stages = tuple(map_stages)
        self.pool_stages = tuple(pool_stages)
        self.last = max(self.map_stages + self.pool_stages)

    @property
    def pooled_dim(self) -> int:
        return pooled_dim(self.pool_stages, self.colour_bins)

    @property
    def map_channels(self) -> list[int]:
        return [STAGE_CHANNELS[s] for s in self.map_stages]

    def train(self, mode: bool = True) -> FrozenFeatures:
        return super().train(False)  # BatchNorm statistics stay those of ImageNet

    def forward(self, x: torch.Tensor, maps: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(feature maps at map_stages, [B, pooled_dim] pooled vector)``; gradients reach ``x``."""
        weights = foreground_weights((x.detach() + 1) / 2)
        out_maps: list[torch.Tensor] = []
        pooled: list[torch.Tensor] = []
        h = x
        last = self.last if maps else max(self.pool_stages)
        for i in range(last + 1):
            h = self.trunk.stages[i](h)
            if maps and i in self.map_stages:
                out_maps.append(h)
            if i in self.pool_stages:
                pooled.append(F.normalize(weighted_gem(h, weights), dim=1))
        if self.colour_bins:
            pooled.append(COLOUR_WEIGHT * soft_colour_histogram((x + 1) / 2, weights, self.colour_bins))
        return out_maps, torch.cat(pooled, dim=1)


class ProjectedDiscriminator(nn.Module):
    """One small conv critic per feature scale; its outputs are patch logits (hinge loss)."""

    def __init__(self, channels: Sequence[int], width: int = 64) -> None:
        super().__init__()
        heads = []
        for c in channels:
            heads.append(nn.Sequential(
                spectral_norm(nn.Conv2d(c, width, 1)), nn.LeakyReLU(0.2, inplace=True),
                spectral_norm(nn.Conv2d(width, width, 3, padding=1)), nn.LeakyReLU(0.2, inplace=True),
                spectral_norm(nn.Conv2d(width, 1, 1)),
            ))
        self.heads = nn.ModuleList(heads)

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [head(m.float()) for head, m in zip(self.heads, maps, strict=True)]


class AttributeHeads(nn.Module):
    """A linear classifier per schema group over :class:`FrozenFeatures` pooled vectors."""

    def __init__(self, dim: int, sizes: Sequence[int]) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.heads = nn.ModuleList([nn.Linear(dim, n) for n in sizes])

    def forward(self, pooled: torch.Tensor) -> list[torch.Tensor]:
        return [h(pooled.float()) for h in self.heads]

    def predict(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[B, G]`` argmax value index per group."""
        return torch.stack([lg.argmax(1) for lg in self(pooled)], dim=1)


class HeadReader:
    """The frozen heads' reading of photos (``[B, G]`` value index per schema group), for the
    inference classes: the Lite0 trunk is built on first use, since serving an edit needs none."""

    def __init__(self, heads: AttributeHeads, size: int, device: torch.device) -> None:
        self.heads, self.size, self.device = heads, size, device
        self._features: FrozenFeatures | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._features is None:
            self._features = FrozenFeatures(self.size).to(self.device)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.heads.predict(self._features(x, maps=False)[1]).cpu()


def fit_heads(heads: AttributeHeads, pooled: torch.Tensor, labels: torch.Tensor, steps: int = 300,
              lr: float = 0.05, weight_decay: float = 1e-4, generator: torch.Generator | None = None,
              holdout: float = 0.15, progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Fit the heads on pooled features of real photos (unknown labels ``-1`` ignored).

    Full-batch AdamW on cached features: a few seconds for thousands of photos. Returns the
    accuracy per group on a random ``holdout`` share of the photos (fitted on the rest first,
    then refitted on all), so the judge's reliability is on record next to the GAN it trains.
    """
    n = pooled.shape[0]
    perm = torch.randperm(n, generator=generator)
    n_test = int(n * holdout) if n >= 20 else 0
    test, train = perm[:n_test], perm[n_test:]
    report: dict[str, float] = {}

    def run(rows: torch.Tensor) -> None:
        heads.requires_grad_(True)
        for h in heads.heads:
            h.reset_parameters()
        opt = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=weight_decay)
        x, y = pooled[rows].float(), labels[rows]
        for step in range(steps):
            loss = sum(F.cross_entropy(lg, y[:, j], ignore_index=-1) if bool((y[:, j] >= 0).any()) else lg.sum() * 0
                       for j, lg in enumerate(heads(x)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if progress is not None:
                progress(step)

    with torch.enable_grad():
        if n_test:
            run(train)
            with torch.no_grad():
                pred = heads.predict(pooled[test])
            y = labels[test]
            for j in range(y.shape[1]):
                known = y[:, j] >= 0
                if bool(known.any()):
                    report[str(j)] = round(float((pred[known, j] == y[known, j]).float().mean()), 4)
        run(torch.arange(n))
    heads.requires_grad_(False)
    return report


def hinge_d_loss(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)) / len(real)


def hinge_g_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(-f.mean() for f in fake) / len(fake)


def translate(x: torch.Tensor, generator: torch.Generator | None, ratio: float = 0.125,
              shifts: tuple[list[int], list[int]] | None = None) -> torch.Tensor:
    """DiffAugment-style random shift of each image, filled with white (the photos' background).

    The judges see shifted copies of real and generated photos alike, so the generator cannot
    satisfy them with a pattern tied to exact pixel positions. ``shifts`` (from
    :func:`random_shifts`) gives the first rows fixed shifts instead, to compare a photo
    and its edit under the same one.
    """
    b, _, h, w = x.shape
    pad_h, pad_w = max(1, int(h * ratio)), max(1, int(w * ratio))
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h), value=1.0)
    dy, dx = shifts if shifts is not None else random_shifts(b, h, w, generator, ratio)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


def random_shifts(b: int, h: int, w: int, generator: torch.Generator | None,
                  ratio: float = 0.125) -> tuple[list[int], list[int]]:
    """Offsets into the padded image for :func:`translate`: ``(dy [b], dx [b])``."""
    pad_h, pad_w = max(1, int(h * ratio)), max(1, int(w * ratio))
    dy = torch.randint(0, 2 * pad_h + 1, (b,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad_w + 1, (b,), generator=generator).tolist()
    return dy, dx
