"""MaskEdit: an attribute editor that predicts a masked change at low resolution and applies it
at the photo's own resolution.

Why this design (see docs/generators.md for the measurements):

- **Masked residual output** (GANimation, Pumarola et al. 2018; SaGAN, Zhang et al. 2018). The
  generator predicts a per-pixel change and a mask, ``out = m * change + (1 - m) * input``.
  Pixels outside the mask are the input's own, so the garment is sharp from the first step and
  training only has to learn the edit itself.
- **Local affine colour, on the luminance.** The change is ``a * Y + b`` per pixel and channel,
  where ``Y`` is the input's luminance (HDRNet, Gharbi et al. 2017, with a luminance guide as in
  the guided filter). With ``a > 0`` it recolours and keeps the photo's shading and folds; with
  ``a = 0`` it paints a flat colour, which is what a shape edit needs (a longer sleeve needs
  fabric where there was background, a shorter one needs background where there was fabric).
- **Predict at low resolution, apply at full resolution.** The U-Net sees a small copy
  (``pred_size``: 32 px in the CPU recipes, 64 in ``gpu``); its maps are brought to the
  photo's size by a guided upsampling (He & Sun's guided filter, as in Wu et al.'s fast guided
  filter, CVPR 2018) that takes its edges from the full-resolution photo. The output has the
  input's resolution; the cost is a small forward plus a few box filters at full size.
- **A palette step for colour edits** (:mod:`generators.models.palette`): the garment's dominant
  colour is moved to the target value's, in LAB, before the U-Net's maps apply; a print far
  from the dominant colour stays. The judges alone had taught the maps a mean shift, which
  leaves a white target grey and drags prints along.
- **Print removal for "plain"**: an edit to the pattern group's plainest value (found from
  the photos: the value whose training photos have the least texture) first paints the print
  over in the garment's dominant colour.
- **A silhouette step for shape edits** (:mod:`generators.models.silhouette`): the garment's
  outline moves by the difference of the mean silhouettes of its current and its target
  value (per anchor value, fitted on the training photos): fabric is painted where the
  target's silhouette has it, background where it does not. On 2 CPU cores the U-Net alone
  had not learned to paint a hem or cut a sleeve.
- **A neckline step** (:mod:`generators.models.neckline`): the opening of the training photos
  of the target value with the nearest outlines is painted (the inside's shade), the photo's
  own opening lifted back to cloth; it abstains on dark or busy garments. Nothing else had
  changed a neckline.
- **Pretrained judges** (:mod:`generators.models.features`): a projected discriminator on frozen
  EfficientNet-Lite0 features and frozen attribute heads fitted on the catalog's real photos
  give real gradients from step 1; cycle and identity losses keep what the edit does not name.

One model edits every editable schema group, several at once. The condition names only the
groups to change (``[one-hot value, 1]`` per named group, zeros elsewhere); every other group
is kept by construction, so inference needs no labels of the input. During training the
frozen heads read the labels an edit does not name, and the keep loss holds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from catalog import Schema
from generators.datasets import group_sizes, one_hot
from generators.models.bands import by_rows, identity_grid_rows, upsample_rows
from generators.models.base import Solver
from generators.models.features import (
    AttributeHeads,
    FrozenFeatures,
    HeadReader,
    ProjectedDiscriminator,
    fit_heads,
    hinge_d_loss,
    hinge_g_loss,
    pooled_dim,
    translate,
)
from generators.models.neckline import KEY as NECK_KEY
from generators.models.neckline import WINDOW as NECK_WINDOW
from generators.models.neckline import fit_neckline_bank, neckline_shift
from generators.models.palette import (
    dominant_lab,
    fit_palette,
    flatten_print,
    palette_shift,
    palette_targets,
    plain_value,
    tune_palette,
)
from generators.models.prints import SIZE as PRINT_SIZE
from generators.models.prints import PrintStep, register_prints
from generators.models.residual import downsample
from generators.models.silhouette import SilhouetteSteps, register_silhouettes
from generators.options import Config
from indexing.pooling import background_colour, foreground_weights

# mask logit, replacement share k, gain a (per RGB channel, on the luminance), offset b; then flow (dx, dy)
COLOUR_CHANNELS = 1 + 1 + 3 + 3
FLOW_CHANNELS = 2
MAX_FLOW = 0.25  # the largest displacement, as a share of the image's half-width (grid units)


# --------------------------------------------------------------------------------------------
# the condition: which groups to change, and to what
# --------------------------------------------------------------------------------------------
def condition(targets: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """``[B, G]`` target value index per editable group (-1: leave it) -> ``[B, sum(sizes) + G]``."""
    return torch.cat([one_hot(targets, sizes), (targets >= 0).float()], dim=1)


def condition_dim(sizes: Sequence[int]) -> int:
    return sum(sizes) + len(sizes)


# --------------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------------
class FiLM(nn.Module):
    """Feature-wise modulation by the condition: ``h * (1 + gamma(c)) + beta(c)``."""

    def __init__(self, c_dim: int, channels: int) -> None:
        super().__init__()
        self.lin = nn.Linear(c_dim, 2 * channels)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.lin(c).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return h * (1 + gamma) + beta


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    k = 4 if stride == 2 else 3
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, 1), nn.LeakyReLU(0.2, inplace=True))


class ResBlock(nn.Module):
    def __init__(self, ch: int, c_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.film = FiLM(c_dim, ch)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.film(self.conv1(h), c), 0.2)
        return h + self.conv2(y)


class MaskEditGenerator(nn.Module):
    """A U-Net at ``pred_size`` conditioned by FiLM; outputs the edit's maps, not an image.

    No normalisation layers: instance or group norm would strip each photo's mean colour,
    which is exactly what a colour edit must know. The output convolution starts at zero, so
    an untrained model returns its input exactly, and the judges' gradients reach the change
    through a mask that is open on the garment (see :func:`apply_maps`).
    """

    def __init__(self, c_dim: int, conv_dim: int = 32, max_dim: int = 192, levels: int = 3, res_blocks: int = 2,
                 flow: bool = True, pred_size: int = 32, templates: bool = True, palette_values: int = 0,
                 silhouette_shape: tuple[int, int] | None = None, plain: bool = False,
                 neckline_shape: tuple[int, int, int] | None = None, print_values: int | None = None,
                 silhouette_bank: tuple[int, int] | None = None, print_painted: bool = True) -> None:
        super().__init__()
        # the print step's exemplar tiles per pattern value (generators/models/prints.py)
        self.print_tiles: torch.Tensor | None
        self.print_ok: torch.Tensor | None
        self.print_fabric: torch.Tensor | None
        register_prints(self, print_values, print_painted)
        # the neckline step's exemplars per (anchor value, neckline value): outlines, openings in
        # the garment's box, how many, and the shade inside an opening (generators/models/neckline.py)
        self.neck_keys: torch.Tensor | None
        if neckline_shape:
            # flat over (anchor, value, exemplar): a 5-d buffer would not survive channels_last
            n = neckline_shape[0] * neckline_shape[1] * neckline_shape[2]
            self.register_buffer("neck_keys", torch.zeros(n, NECK_KEY, NECK_KEY, dtype=torch.uint8))
            self.register_buffer("neck_windows", torch.zeros(n, NECK_WINDOW, NECK_WINDOW, dtype=torch.uint8))
            self.register_buffer("neck_counts", torch.zeros(*neckline_shape[:2], dtype=torch.long))
            self.register_buffer("neck_shade", torch.full((1,), 0.6))
        else:
            self.neck_keys = None
        # LAB colour of each value of the palette group (fitted on the training photos, shipped with G)
        self.palette: torch.Tensor | None
        if palette_values:
            self.register_buffer("palette", torch.zeros(palette_values, 3))
        else:
            self.palette = None
        # the plain group's value without print (-1: none found), fitted on the training photos
        self.plain: torch.Tensor | None
        if plain:
            self.register_buffer("plain", torch.full((1,), -1, dtype=torch.long))
        else:
            self.plain = None
        # the silhouette step's mean outlines (generators/models/silhouette.py), saved with the weights
        self.silhouettes: torch.Tensor | None
        self.silhouette_counts: torch.Tensor | None
        self.silhouette_bank: torch.Tensor | None
        register_silhouettes(self, silhouette_shape, silhouette_bank)
        dims = [min(conv_dim * 2**i, max_dim) for i in range(levels + 1)]
        self.inp = nn.Sequential(_conv(3, dims[0]), _conv(dims[0], dims[0]))
        self.downs = nn.ModuleList([nn.Sequential(_conv(dims[i], dims[i + 1], 2), _conv(dims[i + 1], dims[i + 1]))
                                    for i in range(levels)])
        self.bottom_in = _conv(dims[-1] + c_dim, dims[-1])
        self.blocks = nn.ModuleList([ResBlock(dims[-1], c_dim) for _ in range(res_blocks)])
        self.ups = nn.ModuleList()
        self.merges = nn.ModuleList()
        self.films = nn.ModuleList()
        for i in reversed(range(levels)):
            self.ups.append(_conv(dims[i + 1], dims[i]))
            self.merges.append(_conv(2 * dims[i], dims[i]))
            self.films.append(FiLM(c_dim, dims[i]))
        out_channels = COLOUR_CHANNELS + (FLOW_CHANNELS if flow else 0)
        self.out = nn.Conv2d(dims[0], out_channels, 3, 1, 1)
        # Each target value also gets its own constant for every map: "black" can learn its
        # colour directly instead of through the whole U-Net, which is what makes a value's
        # edit appear within a few hundred steps on a CPU.
        self.value_bias = nn.Linear(c_dim, out_channels, bias=False)
        for layer in (self.out, self.value_bias):
            nn.init.zeros_(layer.weight)
        # ... and, for shape edits, its own map over the image (every channel but the mask):
        # "short" learns where hems move, "long sleeves" where fabric goes, on photos framed alike.
        self.templates = nn.Parameter(torch.zeros(c_dim, out_channels - 1, pred_size, pred_size)) if templates else None
        nn.init.zeros_(self.out.bias)  # k = a = b = 0: the change is zero, the output is the input

    def forward(self, x_lo: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        skips = [self.inp(x_lo)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        tiled = c.to(h.dtype).view(c.size(0), c.size(1), 1, 1).expand(-1, -1, h.size(2), h.size(3))
        h = self.bottom_in(torch.cat([h, tiled], dim=1))
        for block in self.blocks:
            h = block(h, c)
        for up, merge, film in zip(self.ups, self.merges, self.films, strict=True):
            h = up(F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False))
            h = film(merge(torch.cat([h, skips.pop()], dim=1)), c)
        per_value = self.value_bias(c.to(h.dtype))[:, 1:, None, None]
        if self.templates is not None:
            per_value = per_value + torch.einsum("bc,cohw->bohw", c.to(h.dtype), self.templates)
        # not the mask: a per-value constant there would let a value switch its edit off wholesale,
        # the cheapest way to satisfy every regulariser and the one training otherwise falls into
        maps = self.out(h)
        return torch.cat([maps[:, :1], maps[:, 1:] + per_value], dim=1)


# --------------------------------------------------------------------------------------------
# from the low-resolution maps to the full-resolution photo
# --------------------------------------------------------------------------------------------
def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def guided_coefficients(maps_lo: torch.Tensor, guide_lo: torch.Tensor, radius: int = 1, eps: float = 1e-2
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` at low resolution: locally, each map is modelled as ``a * grey(guide) + b`` (the
    guided filter). ``a`` and ``b`` are smooth, so they are upsampled bilinearly and applied to
    the sharp full-resolution guide (:func:`guided_upsample`)."""
    g_lo = _grey(guide_lo)
    mean_g = _box(g_lo, radius)
    mean_m = _box(maps_lo, radius)
    cov = _box(g_lo * maps_lo, radius) - mean_g * mean_m
    var = _box(g_lo * g_lo, radius) - mean_g * mean_g
    a = cov / (var + eps)
    return a, mean_m - a * mean_g


def guided_upsample(maps_lo: torch.Tensor, guide_lo: torch.Tensor, guide_hi: torch.Tensor,
                    radius: int = 1, eps: float = 1e-2) -> torch.Tensor:
    """Bring ``maps_lo`` to ``guide_hi``'s size with edges taken from the full-resolution guide.

    Where the guide is flat the result is the bilinear upsampling; at the garment's outline the
    mask follows the photo's edge instead of a 4x blurred one.
    """
    a, b = guided_coefficients(maps_lo, guide_lo, radius, eps)
    up = dict(size=guide_hi.shape[-2:], mode="bilinear", align_corners=False)
    return F.interpolate(a, **up) * _grey(guide_hi) + F.interpolate(b, **up)


def warp(x: torch.Tensor, flow_lo: torch.Tensor) -> torch.Tensor:
    """``x`` resampled at ``identity + flow`` (``flow_lo`` ``[B, 2, h, w]`` in grid units, x then
    y, upsampled bilinearly to ``x``'s size); outside the photo it repeats the border, i.e. the
    background. Runs a band of rows at a time (:mod:`.bands`)."""
    b, _, h, w = x.shape
    sample = lambda g: F.grid_sample(x, g, mode="bilinear", padding_mode="border", align_corners=False)  # noqa: E731

    def band(r0: int, r1: int) -> torch.Tensor:
        base = identity_grid_rows(b, (h, w), r0, r1, x)
        f = upsample_rows(flow_lo.to(x.dtype), (h, w), r0, r1)
        # minus the resampling error of the identity grid: a zero field returns x exactly
        return x[:, :, r0:r1] + (sample(base + f.permute(0, 2, 3, 1)) - sample(base))

    return by_rows(band, h)


def apply_maps(x: torch.Tensor, maps_lo: torch.Tensor, x_lo: torch.Tensor, upsample: str = "guided",
               strength: torch.Tensor | float = 1.0, prior: float = 3.0, flow: bool = False,
               flow_on: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The edited photo at ``x``'s resolution, its mask and the garment prior.

    ``out = m * change + (1 - m) * x`` with ``change = (1 - k) * x + a * Y + b``: where the mask is
    0 the input pixel is returned exactly, and a zero change (``k = a = b = 0``, the initial
    state) returns the photo whatever the mask. ``k`` in [0, 1] moves from adjusting the input's
    colours (``k = 0``: prints and shading kept) to replacing them (``k = 1``: a new colour with
    the input's shading through ``a * Y``, or flat paint for a shape edit). The mask's logit starts from a
    garment prior (``prior * (2 * garment - 1)``, the garment being the pixels unlike the
    background, taken at full resolution), so an edit acts on the garment unless the
    generator learns to reach beyond it (a longer sleeve) or to hold back (a collar).

    With ``flow``, the photo is first warped by a smooth displacement field (bilinear from the
    low-resolution map, at most ``MAX_FLOW``): a hem moves down, a sleeve stretches, a body
    widens, all with the garment's own sharp pixels; the colour change then acts on the warped
    photo. ``strength`` scales both the displacement and the change; ``flow_on`` (``[B]``, 0/1)
    switches the displacement per photo. The maps are brought to full resolution a band of
    rows at a time, so a 1024 px photo never holds eight full-size maps.
    """
    s_map = strength.view(-1, 1, 1, 1) if isinstance(strength, torch.Tensor) else float(strength)
    if flow:
        f = MAX_FLOW * torch.tanh(maps_lo[:, 8:10])
        if flow_on is not None:
            f = f * flow_on.to(f).view(-1, 1, 1, 1)
        x = warp(x, f * s_map)
        x_lo = downsample(x, x_lo.shape[-1])
    maps_lo = maps_lo[:, :8]
    size = tuple(x.shape[-2:])
    guided = upsample == "guided" and size != tuple(maps_lo.shape[-2:])
    coef = guided_coefficients(maps_lo, x_lo) if guided else None
    bg = background_colour((x.detach() + 1) / 2)

    def band(r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xb = x[:, :, r0:r1]
        if coef is not None:
            maps = upsample_rows(coef[0], size, r0, r1) * _grey(xb) + upsample_rows(coef[1], size, r0, r1)
        else:
            maps = upsample_rows(maps_lo, size, r0, r1)
        garment = foreground_weights((xb.detach() + 1) / 2, floor=0.0, bg=bg)
        mask = torch.sigmoid(maps[:, 0:1] + prior * (2 * garment - 1))
        k = maps[:, 1:2].clamp(0, 1)
        delta = maps[:, 2:5] * _grey(xb) + maps[:, 5:8] - k * xb
        m = mask * s_map if not (isinstance(s_map, float) and s_map == 1.0) else mask
        return (xb + m * delta).clamp(-1, 1), mask, garment

    return by_rows(band, size[0])


def total_variation(m: torch.Tensor) -> torch.Tensor:
    return (m[..., 1:, :] - m[..., :-1, :]).abs().mean() + (m[..., :, 1:] - m[..., :, :-1]).abs().mean()


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def flow_indices(cfg: Config, schema: Schema) -> list[int]:
    """Positions of ``maskedit.flow_groups`` among the editable groups: the edits that may warp."""
    names = editable_groups(cfg, schema)
    return [names.index(g) for g in cfg.maskedit.flow_groups if g in names]


def editable_groups(cfg: Config, schema: Schema) -> list[str]:
    """``train.groups``, else every group except the anchor (category edits are not attribute edits)."""
    if cfg.train.groups:
        return list(cfg.train.groups)
    anchor = cfg.maskedit.anchor_group
    return [g for g in schema.names if g != anchor] or list(schema.names)


def palette_index(cfg: Config, schema: Schema) -> int | None:
    """Position of ``maskedit.palette_group`` among the editable groups (None: no palette step)."""
    names = editable_groups(cfg, schema)
    g = cfg.maskedit.palette_group
    return names.index(g) if g and g in names else None


@dataclass(frozen=True)
class NecklineStep:
    """Where the neckline step reads and writes: the editable group's position ``j``, the
    anchor's column in the judges' schema (-1: none) and the bank's shape."""

    j: int
    anchor_col: int
    shape: tuple[int, int, int]  # anchors, values, exemplars per pair


def neckline_step(cfg: Config, schema: Schema) -> NecklineStep | None:
    """The ``maskedit.neckline_group`` step, if this catalog edits that group (None: no step)."""
    names = editable_groups(cfg, schema)
    g, anchor = cfg.maskedit.neckline_group, cfg.maskedit.anchor_group
    if not g or g not in names:
        return None
    col = schema.names.index(anchor) if anchor in schema.names else -1
    return NecklineStep(names.index(g), col, (len(schema.values(anchor)) if col >= 0 else 1,
                                              len(schema.values(g)), cfg.maskedit.neckline_exemplars))


def _neck_bank(G: MaskEditGenerator) -> dict[str, torch.Tensor]:
    a, v = G.neck_counts.shape
    return {"keys": G.neck_keys.view(a, v, -1, *G.neck_keys.shape[1:]),
            "windows": G.neck_windows.view(a, v, -1, *G.neck_windows.shape[1:]),
            "counts": G.neck_counts, "shade": G.neck_shade}


def plain_index(cfg: Config, schema: Schema) -> int | None:
    """Position of ``maskedit.plain_group`` among the editable groups (None: no print removal)."""
    names = editable_groups(cfg, schema)
    g = cfg.maskedit.plain_group
    return names.index(g) if g and g in names else None


def silhouette_steps(cfg: Config, schema: Schema, exemplars: bool = True) -> SilhouetteSteps | None:
    """The groups of ``maskedit.silhouette_groups`` that this catalog edits (None: none), with an
    exemplar bank of ``maskedit.silhouette_exemplars`` masks unless ``exemplars`` is off."""
    return SilhouetteSteps.build(cfg.maskedit.silhouette_groups, editable_groups(cfg, schema), schema,
                                 cfg.maskedit.anchor_group, cfg.maskedit.stretch_groups,
                                 cfg.maskedit.silhouette_exemplars if exemplars else 0,
                                 cfg.maskedit.silhouette_exemplar_groups)


def print_step(cfg: Config, schema: Schema) -> PrintStep | None:
    """The ``maskedit.print_group`` step, if this catalog edits that group (None: no step)."""
    return PrintStep.build(cfg.maskedit.print_group, editable_groups(cfg, schema), schema)


def build_maskedit_generator(cfg: Config, schema: Schema, palette: bool = True,
                             silhouette: bool = True, plain: bool = True, neckline: bool = True,
                             prints: bool = True, exemplars: bool = True, painted: bool = True) -> MaskEditGenerator:
    o = cfg.maskedit
    names = editable_groups(cfg, schema)
    sizes = [len(schema.values(g)) for g in names]
    j = palette_index(cfg, schema) if palette else None
    steps = silhouette_steps(cfg, schema, exemplars) if silhouette else None
    neck = neckline_step(cfg, schema) if neckline else None
    tiles = print_step(cfg, schema) if prints else None
    return MaskEditGenerator(condition_dim(sizes), o.conv_dim, o.max_dim, o.levels, o.res_blocks, o.flow,
                             o.pred_size, o.templates, palette_values=sizes[j] if j is not None else 0,
                             silhouette_shape=steps.shape if steps else None,
                             plain=plain and plain_index(cfg, schema) is not None,
                             neckline_shape=neck.shape if neck else None,
                             print_values=tiles.n_values if tiles else None,
                             silhouette_bank=steps.bank_shape if steps else None,
                             print_painted=painted and o.print_paint)


def _rows(on: torch.Tensor, strength: torch.Tensor | float, device: torch.device
          ) -> tuple[torch.Tensor, torch.Tensor | float]:
    """The rows a fixed step changes and their strengths: a step runs on those photos only (in
    training, one edit in six names a given group)."""
    rows = torch.nonzero(on.to(device)).flatten()
    s = strength[rows.to(strength.device)] if isinstance(strength, torch.Tensor) and strength.dim() else strength
    return rows, s


def fixed_edit(G: MaskEditGenerator, x: torch.Tensor, trg: torch.Tensor, o: Any, palette_j: int | None,
               strength: torch.Tensor | float = 1.0, palette_target: torch.Tensor | None = None,
               shape: SilhouetteSteps | None = None, source: torch.Tensor | None = None,
               plain_j: int | None = None, neck: NecklineStep | None = None,
               prints: PrintStep | None = None) -> torch.Tensor:
    """The fixed steps of an edit, before the learned maps: the palette shift, print removal
    (or the print step, which also draws a print), silhouette and neckline steps of the groups
    ``trg`` names (see :func:`edit_photo` for the arguments). Rows no step changes are returned
    as they are."""
    if palette_j is not None and G.palette is not None:
        target, on = palette_targets(G.palette, trg[:, palette_j])
        if palette_target is not None:
            target = palette_target.to(target)
        rows, s = _rows(on, strength, x.device)
        if len(rows):
            x = x.index_copy(0, rows, palette_shift(x[rows], target[rows], None, s, o.palette_sigma).to(x.dtype))
    if prints is not None and G.print_tiles is not None:
        x = prints.apply(G, x, trg, strength)
    elif plain_j is not None and G.plain is not None and int(G.plain) >= 0:
        rows, s = _rows(trg[:, plain_j].to(G.plain.device) == G.plain, strength, x.device)
        if len(rows):
            x = x.index_copy(0, rows, flatten_print(x[rows], None, s, o.palette_sigma).to(x.dtype))
    if shape is not None and G.silhouettes is not None:
        x = shape.apply(G, x, trg, strength, source)
    if neck is not None and G.neck_keys is not None:
        on = trg[:, neck.j] >= 0
        rows, s = _rows(on, strength, x.device)
        if len(rows):
            r = rows.cpu()
            anchor = (source[r, neck.anchor_col] if source is not None and neck.anchor_col >= 0
                      else torch.full((len(r),), -1, dtype=torch.long))
            y = neckline_shift(x[rows], _neck_bank(G), trg[r, neck.j], anchor, s, o.neckline_k, o.neckline_clutter)
            x = x.index_copy(0, rows, y.to(x.dtype))
    return x


def learned_edit(G: MaskEditGenerator, x: torch.Tensor, trg: torch.Tensor, sizes: Sequence[int], o: Any,
                 strength: torch.Tensor | float = 1.0, flow_js: Sequence[int] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The U-Net's masked change of ``x`` (after the fixed steps), its mask and the garment prior."""
    x_lo = downsample(x, o.pred_size)
    maps = G(x_lo, condition(trg, sizes).to(x.device))
    flow_on = (trg[:, list(flow_js)] >= 0).any(1) if flow_js is not None else None
    return apply_maps(x, maps, x_lo, o.upsample, strength, o.mask_prior, o.flow, flow_on)


def edit_photo(G: MaskEditGenerator, x: torch.Tensor, trg: torch.Tensor, sizes: Sequence[int], o: Any,
               palette_j: int | None, strength: torch.Tensor | float = 1.0,
               palette_target: torch.Tensor | None = None, fixed_steps: bool = True,
               shape: SilhouetteSteps | None = None, source: torch.Tensor | None = None,
               flow_js: Sequence[int] | None = None, plain_j: int | None = None, learned: bool = True,
               neck: NecklineStep | None = None, prints: PrintStep | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One edit, as training and inference both run it: the fixed palette, print-removal,
    silhouette and neckline steps, then the learned maps.

    ``trg``: ``[B, E]`` target value per editable group (-1: leave it). ``palette_target``
    (``[B, 3]`` LAB) replaces the palette's colour for the target value (training's cycle
    asks for the input's own colour back). ``source`` (``[B, G]``, the judges' schema) is the
    photo's current labels, as known or read; the silhouette step needs its anchor and
    current values (without it they are read from the templates), the neckline step its
    anchor (without it, every anchor's exemplars are searched). Only edits that name one of
    the editable groups ``flow_js`` warp the photo (None: every edit may). ``learned=False``
    stops after the fixed steps (the benchmark's ablation of the U-Net).
    """
    if fixed_steps:
        x = fixed_edit(G, x, trg, o, palette_j, strength, palette_target, shape, source, plain_j, neck, prints)
    if not learned:
        return x, torch.zeros_like(x[:, :1]), torch.zeros_like(x[:, :1])
    return learned_edit(G, x, trg, sizes, o, strength, flow_js)


class MaskEditSolver(Solver):
    """Trains :class:`MaskEditGenerator` against frozen Lite0 judges (see the module docstring)."""

    kind = "maskedit"
    inference_nets = ("G", "C")

    @staticmethod
    def training_schema(cfg: Config, catalog_schema: Schema) -> Schema:
        """The judges read every group of the catalog (or ``maskedit.judge_groups``)."""
        judge = cfg.maskedit.judge_groups
        schema = catalog_schema.subset(judge) if judge else catalog_schema
        for g in cfg.train.groups or []:
            schema.check_group(g)
        return schema

    def __init__(self, cfg: Config, schema: Schema, device: torch.device, meta: dict | None = None) -> None:
        super().__init__(cfg, schema, device, meta)
        o = cfg.maskedit
        self.edit_names = editable_groups(cfg, schema)
        self.edit_cols = [schema.names.index(g) for g in self.edit_names]
        self.edit_sizes = [len(schema.values(g)) for g in self.edit_names]
        self.sizes = group_sizes(schema)
        self.palette_j = palette_index(cfg, schema)
        self.shape = silhouette_steps(cfg, schema)
        self.flow_js = flow_indices(cfg, schema)
        self.plain_j = plain_index(cfg, schema)
        self.neck = neckline_step(cfg, schema)
        self.prints = print_step(cfg, schema)
        self.G = self._place(build_maskedit_generator(cfg, schema))
        self.features = FrozenFeatures(cfg.train.image_size).to(self.device)
        if self.channels_last:
            self.features = self.features.to(memory_format=torch.channels_last)
        self.D = self._place(ProjectedDiscriminator(self.features.map_channels, o.d_width))
        self.C = AttributeHeads(self.features.pooled_dim, self.sizes).to(self.device)
        self.C.requires_grad_(False)
        self.nets = {"G": self.G, "D": self.D, "C": self.C}
        self._add_optim("G", self.G.parameters(), o.g_lr, (o.beta1, o.beta2))
        self._add_optim("D", self.D.parameters(), o.d_lr, (o.beta1, o.beta2))
        # value_ok[j][a, v]: value v of editable group j occurs with anchor value a in training
        self.value_ok: list[torch.Tensor] | None = None
        self.anchor_col: int | None = None
        self.judge_report: dict[str, Any] = {}
        self.prototypes: torch.Tensor | None = None
        self.proto_counts: torch.Tensor | None = None

    # --- before the first step: fit the judges' heads on the real photos --------------------
    def prepare(self, images: torch.Tensor, labels: torch.Tensor, progress: bool = False) -> None:
        """Fit the frozen attribute heads and the value table on the training photos.

        ``images``: every training photo, uint8 ``[N, 3, S, S]``; ``labels``: ``[N, G]``.
        """
        from tqdm import tqdm

        from generators.datasets import uint8_to_float

        pooled = []
        bs = 32
        with torch.no_grad(), self.autocast():
            for i in tqdm(range(0, len(images), bs), desc="judge features", unit="batch", disable=not progress,
                          leave=False):
                x = uint8_to_float(images[i:i + bs].to(self.device))
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                for flip in (False, True):
                    pooled.append(self.features(x.flip(-1) if flip else x, maps=False)[1].float().cpu())
        feats = torch.cat(pooled)
        unflipped = torch.cat(pooled[0::2]) if pooled else feats  # [batch, flipped batch] pairs: in images' order
        # the loop appended [batch, flipped batch] pairs: reorder the labels the same way
        lab = torch.cat([torch.cat([labels[i:i + bs], labels[i:i + bs]]) for i in range(0, len(labels), bs)])
        acc = fit_heads(self.C, feats, lab, steps=self.cfg.maskedit.judge_steps, generator=self.gen)
        self.C.to(self.device)
        self.judge_report = {"heldout_accuracy": {self.schema.names[int(j)]: a for j, a in acc.items()},
                             "photos": int(len(images))}
        self.value_ok = self._value_table(labels)
        self.prototypes, self.proto_counts = self._prototypes(feats, lab)
        if self.palette_j is not None:
            col = self.edit_cols[self.palette_j]
            with torch.no_grad():
                palette = fit_palette(images, labels[:, col], self.edit_sizes[self.palette_j])
                if self.cfg.maskedit.palette_tune:
                    palette = self._tune_palette(palette, images, labels, col, unflipped)
                self.G.palette.copy_(palette)
        if self.plain_j is not None:
            col = self.edit_cols[self.plain_j]
            self.G.plain.fill_(plain_value(images, labels[:, col], self.edit_sizes[self.plain_j]))
        if self.shape is not None:
            self.shape.fit(self.G, images, labels)
        if self.prints is not None:
            self.prints.fit(self.G, images, labels)
        if self.neck is not None:
            nk = self.neck
            anchors = labels[:, nk.anchor_col] if nk.anchor_col >= 0 else torch.zeros(len(labels), dtype=torch.long)
            bank = fit_neckline_bank(images, anchors, labels[:, self.edit_cols[nk.j]], nk.shape[0], nk.shape[1],
                                     nk.shape[2])
            for name, key in (("neck_keys", "keys"), ("neck_windows", "windows"), ("neck_counts", "counts"),
                              ("neck_shade", "shade")):
                getattr(self.G, name).copy_(bank[key].reshape(getattr(self.G, name).shape))

    @property
    def hires_size(self) -> int:
        """The size at which the trainer hands the photos to :meth:`prepare_hires` (0: not at all)."""
        return PRINT_SIZE if self.prints is not None else 0

    def prepare_hires(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Refit the print tiles from the training photos at :attr:`hires_size` (uint8; :meth:`prepare`
        fitted them at the working size, where fine prints are blocks)."""
        self.prints.fit(self.G, images, labels)

    def _tune_palette(self, palette: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, col: int,
                      pooled: torch.Tensor) -> torch.Tensor:
        """Each colour value's palette colour, chosen by what the judges' features retrieve
        (:func:`generators.models.palette.tune_palette`)."""
        anchor = self.cfg.maskedit.anchor_group
        anchors = labels[:, self.schema.names.index(anchor)] if anchor in self.schema.names else torch.zeros_like(labels[:, 0])

        def embed(x: torch.Tensor) -> torch.Tensor:
            out = []
            for i in range(0, len(x), 32):
                with self.autocast():
                    out.append(self.features(x[i:i + 32].to(self.device), maps=False)[1].float().cpu())
            return F.normalize(torch.cat(out), dim=1)

        return tune_palette(palette, images, labels[:, col], anchors, embed, F.normalize(pooled.float(), dim=1),
                            generator=self.gen)

    def _prototypes(self, feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean judge feature of the training photos per (anchor value, group value).

        ``[A + 1, V, D]``: row 0 over all photos, row ``1 + a`` over the photos of anchor value
        ``a`` (a sleeve looks different on a dress than on a jacket); ``V`` runs over the values
        of every group, in schema order. Deep Feature Interpolation (Upchurch et al., CVPR 2017):
        the difference of two such means is the direction in feature space that changes the
        attribute and nothing else.
        """
        n_anchor = self.sizes[self.anchor_col] if self.anchor_col is not None else 0
        offsets = [0, *torch.tensor(self.sizes).cumsum(0).tolist()]
        sums = torch.zeros(n_anchor + 1, offsets[-1], feats.shape[1])
        counts = torch.zeros(n_anchor + 1, offsets[-1])
        for j in range(len(self.sizes)):
            known = labels[:, j] >= 0
            idx = offsets[j] + labels[known, j]
            sums[0].index_add_(0, idx, feats[known])
            counts[0].index_add_(0, idx, torch.ones(len(idx)))
            if self.anchor_col is not None:
                a = labels[known, self.anchor_col]
                has = a >= 0
                flat = (1 + a[has]) * offsets[-1] + idx[has]
                sums.view(-1, feats.shape[1]).index_add_(0, flat, feats[known][has])
                counts.view(-1).index_add_(0, flat, torch.ones(len(flat)))
        return sums / counts.clamp(min=1)[..., None], counts

    def feature_targets(self, pooled_real: torch.Tensor, trg: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Where each edit should land in the judges' feature space: the input's features moved by
        (prototype of the target value - prototype of its current value), per named group, using
        the prototypes of the input's anchor value when both have enough photos."""
        o = self.cfg.maskedit
        offsets = [0, *torch.tensor(self.sizes).cumsum(0).tolist()]
        delta = torch.zeros_like(pooled_real)
        protos, counts = self.prototypes.to(pooled_real.device), self.proto_counts
        for j, col in enumerate(self.edit_cols):
            for i in torch.nonzero(trg[:, j] >= 0).flatten().tolist():
                t, s = offsets[col] + int(trg[i, j]), offsets[col] + int(current[i, col])
                row = 0
                if self.anchor_col is not None and int(current[i, self.anchor_col]) >= 0:
                    a = 1 + int(current[i, self.anchor_col])
                    if counts[a, t] >= o.proto_min and counts[a, s] >= o.proto_min:
                        row = a
                delta[i] += protos[row, t] - protos[row, s]
        return pooled_real + delta

    def _value_table(self, labels: torch.Tensor) -> list[torch.Tensor]:
        anchor = self.cfg.maskedit.anchor_group
        self.anchor_col = self.schema.names.index(anchor) if anchor in self.schema.names else None
        n_anchor = self.sizes[self.anchor_col] if self.anchor_col is not None else 1
        table = []
        for col, n in zip(self.edit_cols, self.edit_sizes, strict=True):
            ok = torch.zeros(n_anchor, n, dtype=torch.bool)
            a = labels[:, self.anchor_col] if self.anchor_col is not None else torch.zeros(len(labels), dtype=torch.long)
            v = labels[:, col]
            known = (a >= 0) & (v >= 0)
            ok[a[known], v[known]] = True
            ok[ok.sum(1) == 0] = True  # an anchor value never seen with this group: anything goes
            table.append(ok)
        return table

    def extra_state(self) -> dict[str, Any]:
        return {"value_ok": self.value_ok, "anchor_col": self.anchor_col, "judge_report": self.judge_report,
                "prototypes": self.prototypes, "proto_counts": self.proto_counts}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.value_ok = state.get("value_ok")
        self.anchor_col = state.get("anchor_col")
        self.judge_report = state.get("judge_report", {})
        self.prototypes = state.get("prototypes")
        self.proto_counts = state.get("proto_counts")

    # --- what to ask for ------------------------------------------------------------------------
    def sample_edits(self, labels: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """``[B, E]`` target per editable group (-1: not named): 1 group, sometimes more.

        Only groups whose label is known are edited, and only to values seen with the item's
        anchor value (a top is not given knee length), uniformly so rare values are learned.
        """
        o = self.cfg.maskedit
        b = labels.size(0)
        known = torch.stack([labels[:, c] >= 0 for c in self.edit_cols], dim=1)
        score = torch.rand(b, len(self.edit_cols), generator=self.gen).masked_fill(~known, 2.0)
        n_named = 1 + (torch.rand(b, generator=self.gen) < o.multi_edit_prob).long() * (o.max_edit_groups - 1)
        rank = score.argsort(dim=1).argsort(dim=1)
        named = (rank < n_named[:, None]) & known
        trg = torch.full((b, len(self.edit_cols)), -1, dtype=torch.long)
        for j, (col, n) in enumerate(zip(self.edit_cols, self.edit_sizes, strict=True)):
            cur = current[:, col]
            if self.value_ok is not None and self.anchor_col is not None:
                allowed = self.value_ok[j][current[:, self.anchor_col].clamp(min=0)].clone()
            else:
                allowed = torch.ones(b, n, dtype=torch.bool)
            allowed[torch.arange(b), cur.clamp(min=0)] = False
            has = allowed.any(1)
            pick = torch.multinomial(allowed.float() + (~has)[:, None].float(), 1, generator=self.gen).squeeze(1)
            trg[:, j] = torch.where(named[:, j] & has, pick, torch.full_like(pick, -1))
        return trg

    def _edit(self, x: torch.Tensor, trg: torch.Tensor, source: torch.Tensor | None = None,
              palette_target: torch.Tensor | None = None,
              fixed_steps: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The edit, its mask, the garment prior, and the photo after the fixed steps alone."""
        o = self.cfg.maskedit
        x0 = fixed_edit(self.G, x, trg, o, self.palette_j, 1.0, palette_target, self.shape, source,
                        self.plain_j, self.neck, self.prints) if fixed_steps else x
        return (*learned_edit(self.G, x0, trg, self.edit_sizes, o, flow_js=self.flow_js), x0)

    def _after(self, current: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:
        """The labels a photo with ``current`` labels has once edited to ``trg``."""
        out = current.clone()
        for j, col in enumerate(self.edit_cols):
            out[:, col] = torch.where(trg[:, j] >= 0, trg[:, j], current[:, col])
        return out

    # --- one iteration ------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        o = self.cfg.maskedit
        x = batch["image"]
        labels = batch["labels"]
        aug = (lambda t: translate(t, self.gen)) if o.translate else (lambda t: t)

        with torch.no_grad(), self.autocast():
            maps_real, pooled_real = self.features(aug(x))
            read = self.C.predict(pooled_real).cpu()
        current = torch.where(labels >= 0, labels, read)  # unknown labels: as the judge reads them
        trg = self.sample_edits(labels, current)
        named = trg >= 0
        own = current[:, self.edit_cols]
        back = torch.where(named, own, torch.full_like(own, -1))
        # identity: name one known group with its own value; the photo must come back unchanged
        idt = torch.where(torch.stack([labels[:, c] >= 0 for c in self.edit_cols], 1) & named, own,
                          torch.full_like(own, -1))

        b = x.size(0)
        n_cyc = min(b, max(1, round(b * o.cycle_share))) if o.cycle_share > 0 else 0
        n_id = min(b, max(1, round(b * o.identity_share))) if o.identity_share > 0 else 0
        with self.autocast():
            fake, mask, garment, fixed = self._edit(x, trg, current)
            # where a fixed step already made the edit, the U-Net may only refine it
            acted = (fixed != x).flatten(1).any(1)
            anchor = ((fake.float() - fixed.float())[acted].abs().mean() if bool(acted.any())
                      else fake.new_zeros((), dtype=torch.float32))
            maps_fake, pooled_fake = self.features(aug(fake))
            g_adv = hinge_g_loss(self.D(maps_fake))
            logits = self.C(pooled_fake)
            masks, garments = [mask], [garment]
            cyc = idl = fake.new_zeros((), dtype=torch.float32)
            if n_cyc:  # edit back to the input's values: the rest of the photo must survive the round trip
                # the palette step takes the photo back to its own dominant colour, not its value's
                own_colour = dominant_lab((x[:n_cyc].float() + 1) / 2) if self.palette_j is not None else None
                rec, mask_rec, garment_rec, _ = self._edit(fake[:n_cyc], back[:n_cyc],
                                                           self._after(current, trg)[:n_cyc], palette_target=own_colour)
                cyc = (rec.float() - x[:n_cyc]).abs().mean()
                masks.append(mask_rec)
                garments.append(garment_rec)
            if n_id:  # ask for the values the photo already has: nothing may change
                same, _, _, _ = self._edit(x[:n_id], idt[:n_id], fixed_steps=False)
                idl = (same.float() - x[:n_id]).abs().mean()
        cls, keep = self._judge_losses(logits, trg, current)
        feat = (pooled_fake.float() - self.feature_targets(pooled_real.float(), trg, current)).pow(2).sum(1).mean()
        m = torch.cat(masks).float()
        mask_l1 = (m * (1 - torch.cat(garments))).mean()  # reaching beyond the garment costs a little
        tv = total_variation(m)
        # The regularisers ramp up over the warm-up: first the edit is found, then it is made tidy.
        # From the start they would close the mask before the judges' gradient has opened it.
        ramp = min(1.0, (step + 1) / max(1.0, o.warmup * self.cfg.train.steps))
        g_loss = (o.lambda_feat * feat + o.lambda_cls * cls + o.lambda_fixed * anchor
                  + ramp * (o.lambda_adv * g_adv + o.lambda_keep * keep + o.lambda_cyc * cyc + o.lambda_id * idl
                            + o.lambda_mask * mask_l1 + o.lambda_tv * tv))
        self.optims["G"].zero_grad(set_to_none=True)
        g_loss.backward()
        self.optims["G"].step()

        with self.autocast():
            d_loss = hinge_d_loss(self.D(maps_real), self.D([t.detach() for t in maps_fake]))
        self.optims["D"].zero_grad(set_to_none=True)
        d_loss.backward()
        self.optims["D"].step()

        with torch.no_grad():
            hit = self._target_accuracy(logits, trg)
            per_group = self._target_accuracy_per_group(logits, trg)
        return {**per_group,
            "G/adv": g_adv.item(), "G/cls": cls.item(), "G/feat": feat.item(), "G/keep": keep.item(), "G/cyc": cyc.item(),
            "G/id": idl.item(), "G/fixed": anchor.item(), "G/mask": mask_l1.item(), "G/tv": tv.item(), "D/loss": d_loss.item(),
            "G/acc_target": hit,
        }

    def _judge_losses(self, logits: list[torch.Tensor], trg: torch.Tensor,
                      current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy to the target where a group is named, to the input's value elsewhere."""
        dev = self.device
        named_all = torch.zeros_like(current, dtype=torch.bool)
        target_all = current.clone()
        for j, col in enumerate(self.edit_cols):
            named_all[:, col] = trg[:, j] >= 0
            target_all[:, col] = torch.where(trg[:, j] >= 0, trg[:, j], current[:, col])
        cls = logits[0].new_zeros((), dtype=torch.float32)
        keep = logits[0].new_zeros((), dtype=torch.float32)
        n_cls = n_keep = 0
        for j, lg in enumerate(logits):
            lg = lg.float()
            y = target_all[:, j].to(dev)
            nm = named_all[:, j].to(dev)
            if bool(nm.any()):
                cls = cls + F.cross_entropy(lg[nm], y[nm], reduction="sum")
                n_cls += int(nm.sum())
            kp = ~nm & (y >= 0)
            if bool(kp.any()):
                keep = keep + F.cross_entropy(lg[kp], y[kp], reduction="sum")
                n_keep += int(kp.sum())
        return cls / max(n_cls, 1), keep / max(n_keep, 1)

    def _target_accuracy(self, logits: list[torch.Tensor], trg: torch.Tensor) -> float:
        hits, n = 0, 0
        for j, col in enumerate(self.edit_cols):
            nm = trg[:, j] >= 0
            if bool(nm.any()):
                pred = logits[col][nm.to(self.device)].argmax(1).cpu()
                hits += int((pred == trg[nm, j]).sum())
                n += int(nm.sum())
        return hits / n if n else float("nan")

    def _target_accuracy_per_group(self, logits: list[torch.Tensor], trg: torch.Tensor) -> dict[str, float]:
        out = {}
        for j, (g, col) in enumerate(zip(self.edit_names, self.edit_cols, strict=True)):
            nm = trg[:, j] >= 0
            out[f"acc/{g}"] = (float((logits[col][nm.to(self.device)].argmax(1).cpu() == trg[nm, j]).float().mean())
                               if bool(nm.any()) else float("nan"))
        return out

    # --- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        """Inputs, then one column per (editable group, value)."""
        self.train(False)
        x = fixed["image"]
        cols, captions = [x], ["input"]
        b = x.size(0)
        for j, g in enumerate(self.edit_names):
            for k, v in enumerate(self.schema.values(g)):
                trg = torch.full((b, len(self.edit_names)), -1, dtype=torch.long)
                trg[:, j] = k
                with self.autocast():
                    cols.append(self._edit(x, trg, fixed["labels"])[0].float())
                captions.append(f"{g}={v}")
        self.train(True)
        return torch.stack(cols, dim=1), captions


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------
class MaskEditInference:
    """What :class:`generators.inference.Editor` calls for a maskedit checkpoint."""

    full_resolution = True

    def __init__(self, ckpt: dict[str, Any], cfg: Config, schema: Schema, device: torch.device) -> None:
        self.cfg = cfg
        self.schema = schema
        self.device = device
        self.edit_names = editable_groups(cfg, schema)
        self.edit_sizes = [len(schema.values(g)) for g in self.edit_names]
        # checkpoints from before the palette or silhouette step carry none: they edit as they were trained
        has_palette = "palette" in ckpt["nets"]["G"]
        self.palette_j = palette_index(cfg, schema) if has_palette else None
        has_silhouettes = "silhouettes" in ckpt["nets"]["G"]
        has_bank = "silhouette_bank" in ckpt["nets"]["G"]
        self.shape = silhouette_steps(cfg, schema, has_bank) if has_silhouettes else None
        has_plain = "plain" in ckpt["nets"]["G"]
        self.plain_j = plain_index(cfg, schema) if has_plain else None
        has_neckline = "neck_keys" in ckpt["nets"]["G"]
        self.neck = neckline_step(cfg, schema) if has_neckline else None
        has_prints = "print_tiles" in ckpt["nets"]["G"]
        self.prints = print_step(cfg, schema) if has_prints else None
        self.G = build_maskedit_generator(cfg, schema, palette=has_palette, silhouette=has_silhouettes,
                                          plain=has_plain, neckline=has_neckline, prints=has_prints,
                                          exemplars=has_bank, painted="print_fabric" in ckpt["nets"]["G"])
        self.flow_js = flow_indices(cfg, schema)
        self.G.load_state_dict(ckpt["nets"]["G"])
        self.G.to(device).eval().requires_grad_(False)
        self.C = AttributeHeads(pooled_dim(), group_sizes(schema))
        self.C.load_state_dict(ckpt["nets"]["C"])
        self.C.to(device).eval().requires_grad_(False)
        self._read = HeadReader(self.C, cfg.train.image_size, device)
        self.learned = True  # False: only the fixed steps (palette, print removal, silhouette)

    def capabilities(self) -> dict[str, Any]:
        return {"groups": {g: list(self.schema.values(g)) for g in self.edit_names}, "multi_group": True,
                "unnamed_groups": "kept: the edit changes only the groups it names",
                "full_resolution": True, "continuous": True}

    def edit(self, x: torch.Tensor, changes: dict[str, str], strength: float = 1.0) -> torch.Tensor:
        trg = torch.full((x.size(0), len(self.edit_names)), -1, dtype=torch.long)
        for g, v in changes.items():
            trg[:, self.edit_names.index(g)] = self.schema.index(g, v)
        # the silhouette and neckline steps work from the photo's anchor (and current value): the judges read them
        named = set(map(self.edit_names.index, changes))
        reshapes = ((self.shape is not None and bool(named & set(self.shape.js)))
                    or (self.neck is not None and self.neck.j in named))
        source = self._read(x) if reshapes else None
        out, _, _ = edit_photo(self.G, x, trg, self.edit_sizes, self.cfg.maskedit, self.palette_j, float(strength),
                               shape=self.shape, source=source, flow_js=self.flow_js, plain_j=self.plain_j,
                               learned=self.learned, neck=self.neck, prints=self.prints)
        return out

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen judge's reading of each photo: ``[B, G]`` value index per schema group."""
        return self._read(x)
