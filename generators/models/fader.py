"""Fader Networks: attribute sliders (Lample et al., NIPS 2017).

"A bit longer", "slightly darker": a slider, not a switch. A Fader network encodes an image
into a latent map from which a *latent discriminator* cannot tell the attributes (the encoder
is trained to fool it), and decodes it conditioned on attribute values given explicitly. As
the latent no longer carries the attributes, the decoder must take them from the condition,
and a condition between two values gives an image between them.

As in the paper: convolutional encoder and decoder at one working size, the attribute
condition (one block per editable schema group: here a one-hot block, the paper's ``[1-a, a]``
generalised to several values) tiled as extra channels at the input of every decoder layer,
a latent discriminator with one classifier per group, reconstruction as the main loss and
the encoder's adversarial weight ramped up from 0. The encoder's adversarial target is the
uniform distribution over the *other* values of a group (the paper's "flipped" attribute,
for more than two values).

Lessons of the masked editor (:mod:`generators.models.maskedit`):

- **a residual, exact at strength 0.** The edit is the *difference* of two decodings of the
  same latent, with the condition moved by ``strength`` from the input's values towards the
  target: ``out = x + m * (D(z, y_src + s (y_trg - y_src)) - D(z, y_src))``. At ``s = 0`` it is
  the input exactly, whatever the reconstruction error; the blur both decodings share cancels.
  The change and the mask are applied at the photo's own resolution
  (:mod:`generators.models.residual`), the mask starting open on the garment;
- **pretrained judges.** Frozen attribute heads on EfficientNet-Lite0 features (fitted on
  the training photos before step 1) read the decoded edit, and their cross-entropy to the
  target values is a classification loss on it; a projected discriminator on the same frozen
  features keeps it photo-like. The heads also read the input's values when the caller does
  not know them (an uploaded photo);
- **the silhouette step for shape groups** (:mod:`generators.models.silhouette`): the decoder
  did not learn to move a hem on a CPU budget (it tinted the garment instead), so length,
  sleeve length and fit edits first move the outline by the catalog's mean silhouettes,
  scaled by the strength, and the decoder's change is added to that (a length edit stretches
  the hem instead, :func:`generators.models.silhouette.hem_stretch`);
- **the palette and print steps for colour and pattern** (:mod:`generators.models.palette`,
  :mod:`generators.models.prints`): the decoder overshot colours on some sliders and drew no
  print at all, so a colour edit first moves the dominant colour and a pattern edit first
  draws the target's exemplar print, both scaled by the strength.

Beyond the paper, it is trained as a slider: half the flipped decodings are taken at a random
strength and judged against the mixed condition (:meth:`FaderSolver.sample_strengths`), and
the heads' reading of the groups an edit does not name must not move (:meth:`FaderSolver._keep_kl`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from catalog import Schema
from generators.datasets import group_sizes, one_hot
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
    random_shifts,
    translate,
)
from generators.models.palette import fit_palette, palette_shift, palette_targets
from generators.models.prints import SIZE as PRINT_SIZE
from generators.models.prints import PrintStep, register_prints
from generators.models.residual import apply_change, compose, downsample
from generators.models.silhouette import SilhouetteSteps, register_silhouettes
from generators.options import Config

ANCHOR = "category"  # not a slider: a dress does not fade into trousers


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------
def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))


class FaderEncoder(nn.Module):
    """Strided 4x4 convs with leaky ReLU (the paper's C_k blocks, without batch norm: a served
    model in eval mode must compute what it trained with)."""

    def __init__(self, dim: int, max_dim: int, n_down: int, latent_dim: int) -> None:
        super().__init__()
        layers, cin = [], 3
        for i in range(n_down):
            cout = min(dim * 2**i, max_dim)
            layers.append(_down(cin, cout))
            cin = cout
        self.main = nn.Sequential(*layers)
        self.out = nn.Conv2d(cin, latent_dim, 3, 1, 1)
        self.out_dim = latent_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.main(x))


class FaderDecoder(nn.Module):
    """Each layer sees the attribute condition tiled as extra channels (as in the paper)."""

    def __init__(self, latent_dim: int, dim: int, max_dim: int, n_down: int, c_dim: int,
                 silhouette_shape: tuple[int, int] | None = None, print_values: int | None = None,
                 palette_values: int | None = None, silhouette_bank: tuple[int, int] | None = None,
                 print_painted: bool = True) -> None:
        super().__init__()
        # the fixed steps' data, fitted on the training photos and saved with the weights: the
        # silhouette step's mean outlines (generators/models/silhouette.py), the print step's
        # exemplar tiles (generators/models/prints.py) and each colour value's LAB colour
        # (generators/models/palette.py)
        self.silhouettes: torch.Tensor | None
        self.silhouette_counts: torch.Tensor | None
        self.silhouette_bank: torch.Tensor | None
        register_silhouettes(self, silhouette_shape, silhouette_bank)
        self.print_fabric: torch.Tensor | None
        register_prints(self, print_values, print_painted)
        self.palette: torch.Tensor | None
        if palette_values:
            self.register_buffer("palette", torch.zeros(palette_values, 3))
        else:
            self.palette = None
        chans = [min(dim * 2**i, max_dim) for i in range(n_down)]  # encoder widths, shallow to deep
        self.mid = nn.Conv2d(latent_dim + c_dim, chans[-1], 3, 1, 1)
        self.ups = nn.ModuleList()
        cin = chans[-1]
        for i in reversed(range(n_down)):
            cout = chans[i - 1] if i > 0 else dim
            self.ups.append(nn.Conv2d(cin + c_dim, cout, 3, 1, 1))
            cin = cout
        self.out = nn.Conv2d(cin + c_dim, 4, 3, 1, 1)  # RGB + mask logit
        nn.init.zeros_(self.out.weight[3:])
        nn.init.zeros_(self.out.bias[3:])

    @staticmethod
    def _cat(h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, c.to(h.dtype)[:, :, None, None].expand(-1, -1, h.size(2), h.size(3))], dim=1)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.leaky_relu(self.mid(self._cat(z, c)), 0.2)
        for up in self.ups:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = F.leaky_relu(up(self._cat(h, c)), 0.2)
        out = self.out(self._cat(h, c))
        return torch.tanh(out[:, :3]), out[:, 3:4]


class LatentDiscriminator(nn.Module):
    """Reads every editable group's value from the latent; the encoder learns to make it fail."""

    def __init__(self, latent_dim: int, sizes: Sequence[int], width: int = 128) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.conv = nn.Sequential(nn.Conv2d(latent_dim, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))
        self.fc = nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(0.3),
                                nn.Linear(width, sum(sizes)))

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        h = self.conv(z).mean(dim=(2, 3))
        return list(self.fc(h).float().split(self.sizes, dim=1))


# --------------------------------------------------------------------------------------------
# shared by training and inference
# --------------------------------------------------------------------------------------------
def editable_groups(cfg: Config, schema: Schema) -> list[str]:
    """``train.groups``, else every schema group but the category."""
    if cfg.train.groups:
        return list(cfg.train.groups)
    return [g for g in schema.names if g != ANCHOR] or list(schema.names)


class FaderNets:
    """The encoder, decoder and the sizes of the condition, built from a config and schema."""

    def __init__(self, cfg: Config, schema: Schema, silhouette: bool = True, prints: bool = True,
                 palette: bool = True, exemplars: bool = True, painted: bool = True) -> None:
        o = cfg.fader
        self.edit_names = editable_groups(cfg, schema)
        self.edit_cols = [schema.names.index(g) for g in self.edit_names]
        self.edit_sizes = [len(schema.values(g)) for g in self.edit_names]
        self.shape = (SilhouetteSteps.build(o.silhouette_groups, self.edit_names, schema, ANCHOR, o.stretch_groups,
                                            o.silhouette_exemplars if exemplars else 0, o.silhouette_exemplar_groups)
                      if silhouette else None)
        self.prints = PrintStep.build(o.print_group, self.edit_names, schema) if prints else None
        self.palette_j = (self.edit_names.index(o.palette_group)
                          if palette and o.palette_group and o.palette_group in self.edit_names else None)
        self.E = FaderEncoder(o.dim, o.max_dim, o.n_down, o.latent_dim)
        self.G = FaderDecoder(o.latent_dim, o.dim, o.max_dim, o.n_down, sum(self.edit_sizes),
                              self.shape.shape if self.shape else None,
                              self.prints.n_values if self.prints else None,
                              self.edit_sizes[self.palette_j] if self.palette_j is not None else None,
                              self.shape.bank_shape if self.shape else None, painted and o.print_paint)


def fixed_steps(G: FaderDecoder, x: torch.Tensor, named_trg: torch.Tensor, strength: float | torch.Tensor,
                shape: SilhouetteSteps | None, prints: PrintStep | None, source: torch.Tensor | None,
                palette_j: int | None = None) -> torch.Tensor:
    """``x`` after the palette step of the colour group (``palette_j``), the silhouette step of the
    shape groups and the print step of the pattern group that ``named_trg`` (``[B, E]``, -1: not
    changed) names, each scaled by ``strength``."""
    if palette_j is not None and G.palette is not None:
        target, on = palette_targets(G.palette, named_trg[:, palette_j])
        if bool(on.any()):
            x = palette_shift(x, target.to(x.device), on.to(x.device), strength).to(x.dtype)
    if shape is not None and G.silhouettes is not None:
        x = shape.apply(G, x, named_trg, strength, source)
    if prints is not None:
        x = prints.apply(G, x, named_trg, strength)
    return x


def slide(x: torch.Tensor, E: nn.Module, G: FaderDecoder, c_src: torch.Tensor, c_trg: torch.Tensor,
          strength: float | torch.Tensor, size: int, prior: float, shape: SilhouetteSteps | None = None,
          own: torch.Tensor | None = None, trg: torch.Tensor | None = None,
          source: torch.Tensor | None = None, prints: PrintStep | None = None,
          palette_j: int | None = None) -> torch.Tensor:
    """The edit at ``x``'s own resolution: the difference of two decodings, masked (module
    docstring), after the fixed steps of the groups it changes (:func:`fixed_steps`, with the
    editable groups' value indices ``own``/``trg`` and the photos' labels ``source``; None:
    the network alone)."""
    x_lo = downsample(x, size)
    z = E(x_lo)
    s = strength if isinstance(strength, float) else strength.view(-1, 1)
    c_s = c_src + s * (c_trg - c_src)
    y_src, _ = G(z, c_src)
    y_s, logit = G(z, c_s)
    if own is not None and trg is not None:
        x = fixed_steps(G, x, torch.where(trg != own, trg, -1), strength, shape, prints, source, palette_j)
    return apply_change(x, (y_s - y_src).float(), logit, prior, 1.0)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
class FaderSolver(Solver):
    kind = "fader"
    inference_nets = ("E", "G", "C")

    def __init__(self, cfg: Config, schema: Schema, device: torch.device, meta: dict | None = None) -> None:
        super().__init__(cfg, schema, device, meta)
        o = cfg.fader
        nets = FaderNets(cfg, schema)
        self.edit_names, self.edit_cols, self.edit_sizes = nets.edit_names, nets.edit_cols, nets.edit_sizes
        self.shape, self.prints, self.palette_j = nets.shape, nets.prints, nets.palette_j
        self.E = self._place(nets.E)
        self.G = self._place(nets.G)
        self.LD = self._place(LatentDiscriminator(o.latent_dim, self.edit_sizes))
        self.features = FrozenFeatures(cfg.train.image_size).to(self.device)
        if self.channels_last:
            self.features = self.features.to(memory_format=torch.channels_last)
        self.sizes = group_sizes(schema)
        self.C = AttributeHeads(self.features.pooled_dim, self.sizes).to(self.device)
        self.C.requires_grad_(False)
        self.nets = {"E": self.E, "G": self.G, "LD": self.LD, "C": self.C}
        self._add_optim("AE", list(self.E.parameters()) + list(self.G.parameters()), o.lr, (o.beta1, o.beta2))
        self._add_optim("LD", self.LD.parameters(), o.dis_lr, (o.beta1, o.beta2))
        if o.d_width > 0 and o.lambda_adv > 0:
            self.D = self._place(ProjectedDiscriminator(self.features.map_channels, o.d_width))
            self.nets["D"] = self.D
            self._add_optim("D", self.D.parameters(), o.dis_lr, (o.beta1, o.beta2))
        else:
            self.D = None
        self.value_ok: list[torch.Tensor] | None = None
        self.judge_report: dict[str, Any] = {}

    # --- before the first step ------------------------------------------------------------------
    def prepare(self, images: torch.Tensor, labels: torch.Tensor, progress: bool = False) -> None:
        """Fit the frozen attribute heads on the training photos; note which values go with which category."""
        from tqdm import tqdm

        from generators.datasets import uint8_to_float

        feats = []
        with torch.no_grad(), self.autocast():
            for i in tqdm(range(0, len(images), 32), desc="judge features", unit="batch", disable=not progress,
                          leave=False):
                x = uint8_to_float(images[i:i + 32].to(self.device))
                feats.append(self.features(x, maps=False)[1].float().cpu())
        acc = fit_heads(self.C, torch.cat(feats), labels, steps=self.cfg.fader.judge_steps, generator=self.gen)
        self.C.to(self.device)
        self.judge_report = {"heldout_accuracy": {self.schema.names[int(j)]: a for j, a in acc.items()},
                             "photos": int(len(images))}
        self.value_ok = self._value_table(labels)
        if self.shape is not None:
            self.shape.fit(self.G, images, labels)
        if self.prints is not None:
            self.prints.fit(self.G, images, labels)
        if self.palette_j is not None:
            col = self.edit_cols[self.palette_j]
            self.G.palette.copy_(fit_palette(images, labels[:, col], self.edit_sizes[self.palette_j]))

    @property
    def hires_size(self) -> int:
        """The size at which the trainer hands the photos to :meth:`prepare_hires` (0: not at all)."""
        return PRINT_SIZE if self.prints is not None else 0

    def prepare_hires(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Refit the print tiles from the training photos at :attr:`hires_size` (uint8): at the
        working size of 64 px a lace is a grid of blocks (:meth:`prepare` fitted them there).
        Each value's tile is chosen among ``fader.print_tune`` candidates by the frozen heads
        (:func:`generators.models.prints.tune_prints`)."""
        scores = self.prints.fit(self.G, images, labels, judge=self._pattern_judge, candidates=self.cfg.fader.print_tune)
        if scores:
            values = self.schema.values(self.schema.names[self.prints.col])
            self.judge_report["print_tune"] = {values[v]: p for v, p in scores.items()}

    @torch.no_grad()
    def _pattern_judge(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, V]``: the frozen heads' probabilities of the pattern group's values for photos
        ``x`` in ``[-1, 1]`` (any size; read at the working size, as in training)."""
        size = self.cfg.train.image_size
        out = []
        for i in range(0, len(x), 32):
            xb = x[i:i + 32].to(self.device)
            if xb.shape[-1] != size:
                xb = F.interpolate(xb, size=(size, size), mode="area")
            out.append(self.C(self.features(xb, maps=False)[1])[self.prints.col].float().softmax(1).cpu())
        return torch.cat(out)

    def _value_table(self, labels: torch.Tensor) -> list[torch.Tensor]:
        """``[A, V]`` per editable group: value V seen with anchor value A (a top is not given knee length)."""
        anchor = self.schema.names.index(ANCHOR) if ANCHOR in self.schema.names else None
        n_anchor = self.sizes[anchor] if anchor is not None else 1
        table = []
        for col, n in zip(self.edit_cols, self.edit_sizes, strict=True):
            ok = torch.zeros(n_anchor, n, dtype=torch.bool)
            a = labels[:, anchor] if anchor is not None else torch.zeros(len(labels), dtype=torch.long)
            known = (a >= 0) & (labels[:, col] >= 0)
            ok[a[known], labels[known, col]] = True
            ok[ok.sum(1) == 0] = True
            table.append(ok)
        return table

    def extra_state(self) -> dict[str, Any]:
        return {"value_ok": self.value_ok, "judge_report": self.judge_report}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.value_ok = state.get("value_ok")
        self.judge_report = state.get("judge_report", {})

    # --- what to ask for ------------------------------------------------------------------------
    def sample_targets(self, current: torch.Tensor) -> torch.Tensor:
        """``[B, E]``: the input's value per editable group, one group changed to a value seen with
        the item's category (uniformly, so rare values are learned too)."""
        b = current.size(0)
        trg = current[:, self.edit_cols].clone()
        group = torch.randint(0, len(self.edit_cols), (b,), generator=self.gen)
        anchor = self.schema.names.index(ANCHOR) if ANCHOR in self.schema.names else None
        for i in range(b):
            j = int(group[i])
            ok = (self.value_ok[j][int(current[i, anchor])] if self.value_ok is not None and anchor is not None
                  else torch.ones(self.edit_sizes[j], dtype=torch.bool)).clone()
            ok[int(trg[i, j])] = False
            if bool(ok.any()):
                trg[i, j] = int(torch.multinomial(ok.float(), 1, generator=self.gen))
        return trg

    # --- one iteration ------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        o = self.cfg.fader
        x, labels = batch["image"], batch["labels"]
        dev = self.device
        # one shift per photo, used for the photo and its edit alike: the keep term compares the
        # judges' readings of the two, and the judges' reading moves with the shift
        shifts = random_shifts(x.size(0), x.size(2), x.size(3), self.gen) if o.translate else None

        def aug(t: torch.Tensor) -> torch.Tensor:
            return translate(t, None, shifts=(shifts[0][:len(t)], shifts[1][:len(t)])) if shifts else t

        with torch.no_grad(), self.autocast():
            maps_real, pooled_real = self.features(aug(x))
            real_logits = self.C(pooled_real)
            read = torch.stack([lg.argmax(1) for lg in real_logits], dim=1).cpu()
        current = torch.where(labels >= 0, labels, read)  # unknown labels: as the heads read them
        own = current[:, self.edit_cols]
        known = labels[:, self.edit_cols] >= 0
        c_src = one_hot(own, self.edit_sizes).to(dev)
        trg = self.sample_targets(current)
        c_trg = one_hot(trg, self.edit_sizes).to(dev)

        # 1. the latent discriminator learns to read the (known) attributes from the latent
        with self.autocast():
            z = self.E(x)
            logits = self.LD(z.detach())
            ld_loss = self._latent_ce(logits, own.to(dev), known.to(dev))
        self.optims["LD"].zero_grad(set_to_none=True)
        ld_loss.backward()
        self.optims["LD"].step()

        # 2. the autoencoder: reconstruct, fool the latent discriminator, make the flipped decoding read as the target
        n_flip = min(x.size(0), max(1, round(x.size(0) * o.flip_share))) if o.flip_share > 0 else 0
        ramp = min(1.0, (step + 1) / max(1.0, o.lat_warmup * self.cfg.train.steps))
        with self.autocast():
            rec, _ = self.G(z, c_src)
            rec_loss = F.mse_loss(rec.float(), x)
            lat_adv = self._latent_flip(self.LD(z), own.to(dev), known.to(dev))
            cls = keep = adv = mask_l1 = x.new_zeros(())
            acc = float("nan")
            if n_flip:
                s = self.sample_strengths(n_flip).to(dev)
                c_s = c_src[:n_flip] + s[:, None] * (c_trg[:n_flip] - c_src[:n_flip])
                y_s, logit = self.G(z[:n_flip], c_s)
                with torch.no_grad():
                    named_trg = torch.where(trg[:n_flip] != own[:n_flip], trg[:n_flip], -1)
                    base = fixed_steps(self.G, x[:n_flip], named_trg, s, self.shape, self.prints, current[:n_flip],
                                       self.palette_j)
                edited, mask, garment = compose(base, base + (y_s.float() - rec[:n_flip].float()), logit, o.mask_prior)
                maps_fake, pooled_fake = self.features(aug(edited))
                named = trg[:n_flip] != own[:n_flip]
                judged = self.C(pooled_fake)
                cls, acc = self._target_ce(judged, own[:n_flip], trg[:n_flip], named, s)
                keep = self._keep_kl(judged, [lg[:n_flip] for lg in real_logits], named)
                if self.D is not None:
                    adv = hinge_g_loss(self.D(maps_fake))
                mask_l1 = (mask * (1 - garment)).mean()
        loss = (o.lambda_rec * rec_loss + ramp * o.lambda_lat * lat_adv + o.lambda_cls * cls
                + o.lambda_keep * keep + o.lambda_adv * adv + o.lambda_mask * mask_l1)
        self.optims["AE"].zero_grad(set_to_none=True)
        loss.backward()
        self.optims["AE"].step()

        d_loss = x.new_zeros(())
        if self.D is not None and n_flip:
            with self.autocast():
                d_loss = hinge_d_loss(self.D([m[:n_flip] for m in maps_real]),
                                      self.D([t.detach() for t in maps_fake]))
            self.optims["D"].zero_grad(set_to_none=True)
            d_loss.backward()
            self.optims["D"].step()
        return {"G/rec": rec_loss.item(), "G/lat": lat_adv.item(), "G/cls": cls.item(), "G/keep": keep.item(),
                "G/adv": adv.item(),
                "G/mask": mask_l1.item(), "LD/loss": ld_loss.item(), "D/loss": d_loss.item(),
                "G/acc_target": acc, "lat_ramp": ramp}

    def _latent_ce(self, logits: list[torch.Tensor], y: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        loss, n = logits[0].new_zeros(()), 0
        for j, lg in enumerate(logits):
            k = known[:, j]
            if bool(k.any()):
                loss = loss + F.cross_entropy(lg[k], y[k, j], reduction="sum")
                n += int(k.sum())
        return loss / max(n, 1)

    def _latent_flip(self, logits: list[torch.Tensor], y: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Cross-entropy to the uniform distribution over the *other* values of each known group."""
        loss, n = logits[0].new_zeros(()), 0
        for j, lg in enumerate(logits):
            k = known[:, j]
            if not bool(k.any()) or lg.size(1) < 2:
                continue
            logp = F.log_softmax(lg[k], dim=1)
            other = 1 - F.one_hot(y[k, j], lg.size(1)).float()
            loss = loss - (logp * other).sum() / (lg.size(1) - 1)
            n += int(k.sum())
        return loss / max(n, 1)

    def sample_strengths(self, n: int) -> torch.Tensor:
        """``[n]`` slider positions: 1 for the first ``1 - slide_share`` of the rows, uniform in
        (0, 1) for the rest. The paper trains the decoder on the true attribute values only,
        and nothing then makes an intermediate condition read as an intermediate image; the
        slider wandered (the target probability rose monotonically on 60 % of queries)."""
        s = torch.ones(n)
        k = round(n * self.cfg.fader.slide_share)
        if k:
            s[n - k:] = torch.rand(k, generator=self.gen)
        return s

    def _target_ce(self, logits: list[torch.Tensor], own: torch.Tensor, trg: torch.Tensor, named: torch.Tensor,
                   s: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Cross-entropy of the frozen heads' reading of each named group to the condition itself:
        ``(1 - s) * source + s * target``, so at strength s the edit should read as that mix.
        The accuracy counts the rows at strength 1."""
        loss, n, hits, full = logits[0].new_zeros(()), 0, 0, 0
        for j, col in enumerate(self.edit_cols):
            nm = named[:, j].to(self.device)
            if bool(nm.any()):
                lg = logits[col].float()[nm]
                size = lg.size(1)
                t = trg[:, j].to(self.device)[nm]
                sj = s[nm][:, None]
                q = (1 - sj) * F.one_hot(own[:, j].to(self.device)[nm], size) + sj * F.one_hot(t, size)
                loss = loss - (q * F.log_softmax(lg, dim=1)).sum()
                at_one = sj[:, 0] == 1
                hits += int((lg.argmax(1) == t)[at_one].sum())
                full += int(at_one.sum())
                n += int(nm.sum())
        return loss / max(n, 1), (hits / full if full else float("nan"))

    def _keep_kl(self, logits: list[torch.Tensor], real: list[torch.Tensor], named: torch.Tensor) -> torch.Tensor:
        """KL from the frozen heads' reading of the input to their reading of the edit, over every
        group the edit does not name (the category included): StarGAN's contract that a sleeve
        edit keeps the colour. Without it a shape edit learned to tint the garment, which moved
        the heads. The input's own reading is the target, not its label, so a head's errors
        leave no floor to push against."""
        unnamed = torch.ones(named.size(0), len(self.schema.names), dtype=torch.bool)
        unnamed[:, self.edit_cols] = ~named.cpu()
        unnamed = unnamed.to(self.device)
        loss = logits[0].new_zeros(())
        for col, (lg, ref) in enumerate(zip(logits, real, strict=True)):
            kl = F.kl_div(F.log_softmax(lg.float(), 1), F.log_softmax(ref.float(), 1), log_target=True,
                          reduction="none").sum(1)
            loss = loss + (kl * unnamed[:, col]).sum()
        return loss / named.size(0)

    # --- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        """Inputs, then one column per (editable group, value) at strength 1."""
        self.train(False)
        x, labels = fixed["image"], fixed["labels"]
        with self.autocast():
            read = self.C.predict(self.features(x, maps=False)[1]).cpu()
        own = torch.where(labels >= 0, labels, read)[:, self.edit_cols]
        c_src = one_hot(own, self.edit_sizes).to(self.device)
        cols, caps = [x], ["input"]
        for j, g in enumerate(self.edit_names):
            for k, v in enumerate(self.schema.values(g)):
                trg = own.clone()
                trg[:, j] = k
                with self.autocast():
                    cols.append(slide(x, self.E, self.G, c_src, one_hot(trg, self.edit_sizes).to(self.device), 1.0,
                                      self.cfg.train.image_size, self.cfg.fader.mask_prior, self.shape, own, trg,
                                      torch.where(labels >= 0, labels, read), self.prints, self.palette_j).float())
                caps.append(f"{g}={v}")
        self.train(True)
        return torch.stack(cols, dim=1), caps


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------
class FaderInference:
    """What :class:`generators.inference.Editor` calls for a Fader checkpoint."""

    full_resolution = True

    def __init__(self, ckpt: dict[str, Any], cfg: Config, schema: Schema, device: torch.device) -> None:
        self.cfg = cfg
        self.schema = schema
        self.device = device
        # checkpoints from before the silhouette or print step (or the exemplar bank, or painted print
        # tiles) carry none: they edit as they were trained
        nets = FaderNets(cfg, schema, silhouette="silhouettes" in ckpt["nets"]["G"],
                         prints="print_tiles" in ckpt["nets"]["G"], palette="palette" in ckpt["nets"]["G"],
                         exemplars="silhouette_bank" in ckpt["nets"]["G"],
                         painted="print_fabric" in ckpt["nets"]["G"])
        self.edit_names, self.edit_cols, self.edit_sizes = nets.edit_names, nets.edit_cols, nets.edit_sizes
        self.shape, self.prints, self.palette_j = nets.shape, nets.prints, nets.palette_j
        self.E, self.G = nets.E, nets.G
        self.C = AttributeHeads(pooled_dim(), group_sizes(schema))
        for name, net in (("E", self.E), ("G", self.G), ("C", self.C)):
            net.load_state_dict({k: v.float() for k, v in ckpt["nets"][name].items()})
            net.to(device).eval().requires_grad_(False)
        self._read = HeadReader(self.C, cfg.train.image_size, device)

    def capabilities(self) -> dict[str, Any]:
        return {"groups": {g: list(self.schema.values(g)) for g in self.edit_names}, "multi_group": True,
                "unnamed_groups": "kept: the edit changes only the groups it names",
                "full_resolution": True, "continuous": True}

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen heads' reading of each photo: ``[B, G]`` value index per schema group."""
        return self._read(x)

    def edit(self, x: torch.Tensor, changes: dict[str, str], source_labels: torch.Tensor | None = None,
             strength: float = 1.0) -> torch.Tensor:
        """Slide the named groups from the input's values (``source_labels`` where known, else as the
        heads read them) towards the targets by ``strength``; 0 returns the input exactly."""
        read = self.predict_labels(x)
        current = read if source_labels is None else torch.where(source_labels >= 0, source_labels, read)
        own = current[:, self.edit_cols]
        trg = own.clone()
        for g, v in changes.items():
            trg[:, self.edit_names.index(g)] = self.schema.index(g, v)
        c_src = one_hot(own, self.edit_sizes).to(self.device)
        c_trg = one_hot(trg, self.edit_sizes).to(self.device)
        return slide(x, self.E, self.G, c_src, c_trg, float(strength), self.cfg.train.image_size,
                     self.cfg.fader.mask_prior, self.shape, own, trg, current, self.prints, self.palette_j)
