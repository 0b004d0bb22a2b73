"""Image metrics of the evaluation: L1, SSIM, and a Fréchet distance in the encoder's space."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from catalog.images import square_on_white
from generators.evaluate.common import EvaluationError


# --------------------------------------------------------------------------------------------
# image metrics
# --------------------------------------------------------------------------------------------
def to_float_tensor(images: list[Image.Image], size: int) -> torch.Tensor:
    """PIL images → ``[N, 3, size, size]`` in [0, 1] (padded square on white, bicubic)."""
    out = [np.asarray(square_on_white(im, size), dtype=np.float32) / 255.0 for im in images]
    return torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in out])


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image, images in [0, 1]."""
    return (a - b).abs().flatten(1).mean(1)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image (Wang et al. 2004): 11×11 Gaussian window σ=1.5, K1=0.01, K2=0.03.

    Computed per colour channel over the 'valid' window positions and averaged, as the
    reference implementation does for grey images.
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ssim needs two [N, C, H, W] tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    c = a.shape[1]
    w = _gaussian_window(window, sigma).to(a)[None, None].repeat(c, 1, 1, 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    a, b = a.double(), b.double()
    w = w.double()
    mu_a = F.conv2d(a, w, groups=c)
    mu_b = F.conv2d(b, w, groups=c)
    saa = F.conv2d(a * a, w, groups=c) - mu_a**2
    sbb = F.conv2d(b * b, w, groups=c) - mu_b**2
    sab = F.conv2d(a * b, w, groups=c) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2)
    return (num / den).flatten(1).mean(1).float()


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    ``tr sqrt(S1 S2)`` is computed without a d×d matrix square root: with centred data
    ``X`` (n1×d) and ``Y`` (n2×d) scaled so that ``S1 = XᵀX`` and ``S2 = YᵀY``, the non-zero
    eigenvalues of ``S1 S2`` are those of ``(X Yᵀ)(X Yᵀ)ᵀ``, so the trace is the sum of the
    singular values of ``X Yᵀ`` (n1×n2) — exact, and ~1000× faster than ``scipy.linalg.sqrtm``
    on 1280-d features. With more samples than dimensions the symmetric form
    ``eig(S1^½ S2 S1^½)`` is used instead.

    With fewer samples than dimensions the covariances are singular and the value carries a
    sample-size bias: compare numbers only at equal sample counts (the report has them).
    """
    if len(x) < 2 or len(y) < 2:
        raise EvaluationError("Fréchet distance needs at least two images on each side")
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mu1, mu2 = x.mean(0), y.mean(0)
    xc = (x - mu1) / np.sqrt(len(x) - 1)
    yc = (y - mu2) / np.sqrt(len(y) - 1)
    tr1, tr2 = float((xc**2).sum()), float((yc**2).sum())
    d = x.shape[1]
    if min(len(x), len(y)) <= d:
        cross = float(np.linalg.svd(xc @ yc.T, compute_uv=False).sum())
    else:
        w, v = np.linalg.eigh(xc.T @ xc)
        root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        ev = np.linalg.eigvalsh(root1 @ (yc.T @ yc) @ root1)
        cross = float(np.sqrt(np.clip(ev, 0, None)).sum())
    return float(((mu1 - mu2) ** 2).sum() + tr1 + tr2 - 2 * cross)


class FeatureSpace:
    """Features for the Fréchet distance: the project encoder, else raw Lite0 pooled features."""

    def __init__(self, encoder: str | None, size: int, device: str) -> None:
        self.size = size
        try:
            from indexing.encoder import Encoder
        except ImportError:
            from generators.evaluate.classifier import FeatureExtractor

            self._fx = FeatureExtractor(size, "cpu")
            self.name = "efficientnet-lite0 avg-pooled (indexing.encoder unavailable)"
            self._enc = None
            return
        self._enc = Encoder.load(encoder, device=device)
        self.name = f"indexing.encoder.Encoder {self._enc.encoder_id}"

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        # Real photos are first brought to the generator's size so both sides are equally sharp.
        imgs = [im.convert("RGB").resize((self.size, self.size), Image.BICUBIC) for im in images]
        if self._enc is not None:
            return self._enc.embed_images(imgs).astype(np.float64)
        return self._fx(imgs).astype(np.float64)


# --------------------------------------------------------------------------------------------
