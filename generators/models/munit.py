"""MUNIT: multi-modal unpaired translation between two catalog domains (Huang et al., ECCV 2018).

"This, but with a floral pattern" has many answers. MUNIT splits an image into a *content*
code (a spatial map: the garment's shape and layout, shared by both domains) and a *style*
code (a small vector: the domain-specific look, e.g. which flowers in which colours). A
translation keeps the content and draws a new style from the prior ``N(0, I)``, so every draw
is another plausible answer, and a search can try several.

As in the paper: per domain an autoencoder (content encoder with instance norm, style encoder
without, decoder whose residual blocks are modulated by AdaIN parameters that an MLP makes
from the style code, upsampling with layer norm); losses: within-domain image reconstruction
(``lambda_x`` 10), cross-domain content and style reconstruction (``lambda_c``, ``lambda_s``
1), an optional explicit cycle (``lambda_cyc``, 0 by default as for most of the paper's data).

StarGAN v2's *diversity-sensitive* loss (Choi et al., CVPR 2020) is added (``lambda_ds``): two
style codes for the same content must give different translations (the loss rewards their L1
distance, with a weight decayed linearly to 0 over the run as in that paper). Without it a
short run learns to ignore the style code: the variants of the first demo (31 steps, no such
loss) differed by 0.0024 in pixels, and a search over near-identical variants is one search.

Lessons of the masked editor (:mod:`generators.models.maskedit`):

- the discriminator is a projected one on frozen EfficientNet-Lite0 features, one per
  domain, and a frozen linear domain head fitted on the training photos before step 1 adds a
  classification signal: a translation must read as the target domain from the first step;
- between two kinds of product photo (pattern unicolors <-> floral) the translation is a
  masked residual (:mod:`generators.models.residual`): the decoder also predicts a mask
  logit, the mask starts open on the garment, and the output is applied at the photo's own
  resolution, so the background and the outline stay the input's. Product <-> model photos
  change the whole image and are translated at the working size, as CycleGAN does.

Variant styles are the styles of real photos, not draws from the prior: on a CPU budget the
style encoder's codes stay far from ``N(0, I)`` (norms 0.3-1.5 against the prior's 2.7 in the
demo run), and the decoder answers prior draws with one look (every floral garment turned the
same teal). Each autoencoder keeps a ring of the styles its encoder gave the latest training
photos (``munit.style_bank``, saved with the weights); variant 1, also the single edit, is the
bank's medoid, and the others greedily the bank's style farthest from those chosen. The same
request always gives the same variants. A checkpoint without a bank falls back to the
prior: the zero code, then the most spread of ``diverse_pool`` fixed-seed draws per variant.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from catalog import Schema
from generators.models.base import Solver
from generators.models.features import (
    AttributeHeads,
    FrozenFeatures,
    ProjectedDiscriminator,
    fit_heads,
    hinge_d_loss,
    hinge_g_loss,
    translate,
)
from generators.models.residual import apply_change, compose, downsample
from generators.options import Config

STYLE_SEED = 20180908  # variants are drawn from this seed: the same request gives the same images


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------
class LayerNorm2d(nn.Module):
    """MUNIT's layer norm: per sample over (C, H, W), with a per-channel affine."""

    def __init__(self, ch: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(ch))
        self.beta = nn.Parameter(torch.zeros(ch))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        std = x.std(dim=dims, keepdim=True)
        return (x - mean) / (std + self.eps) * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def _conv(cin: int, cout: int, k: int, stride: int = 1, norm: str = "none", act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ReflectionPad2d(k // 2 if stride == 1 else 1),
                               nn.Conv2d(cin, cout, k, stride)]
    if norm == "in":
        layers.append(nn.InstanceNorm2d(cout))
    elif norm == "ln":
        layers.append(LayerNorm2d(cout))
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convs with instance norm, or with AdaIN when given its parameters."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.ch = ch
        self.conv1 = _conv(ch, ch, 3, act=False)
        self.conv2 = _conv(ch, ch, 3, act=False)

    @staticmethod
    def _norm(h: torch.Tensor, ab: torch.Tensor | None) -> torch.Tensor:
        h = F.instance_norm(h)
        if ab is None:
            return h
        gamma, beta = ab.chunk(2, dim=1)
        return h * (1 + gamma[..., None, None]) + beta[..., None, None]

    def forward(self, x: torch.Tensor, ab1: torch.Tensor | None = None, ab2: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self._norm(self.conv1(x), ab1))
        return x + self._norm(self.conv2(h), ab2)


class ContentEncoder(nn.Module):
    def __init__(self, dim: int, n_down: int, n_res: int) -> None:
        super().__init__()
        layers = [_conv(3, dim, 7, norm="in")]
        for _ in range(n_down):
            layers.append(_conv(dim, dim * 2, 4, 2, norm="in"))
            dim *= 2
        self.down = nn.Sequential(*layers)
        self.res = nn.ModuleList([ResBlock(dim) for _ in range(n_res)])
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(x)
        for block in self.res:
            h = block(h)
        return h


class StyleEncoder(nn.Module):
    """No normalisation (it would remove the very statistics that are the style); global pooling."""

    def __init__(self, dim: int, style_dim: int, n_down: int = 4) -> None:
        super().__init__()
        layers = [_conv(3, dim, 7)]
        for i in range(n_down):
            nxt = dim * 2 if i < 2 else dim
            layers.append(_conv(dim, nxt, 4, 2))
            dim = nxt
        self.main = nn.Sequential(*layers)
        self.out = nn.Conv2d(dim, style_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.adaptive_avg_pool2d(self.main(x), 1)).flatten(1)


class Decoder(nn.Module):
    """AdaIN residual blocks (parameters from the style MLP) -> upsampling -> RGB (+ mask logit)."""

    def __init__(self, dim: int, n_down: int, n_res: int, style_dim: int, mlp_dim: int, mask: bool,
                 up_kernel: int = 5) -> None:
        super().__init__()
        self.res = nn.ModuleList([ResBlock(dim) for _ in range(n_res)])
        self.n_adain = 4 * dim * n_res  # (gamma, beta) for both norms of every block
        self.mlp = nn.Sequential(nn.Linear(style_dim, mlp_dim), nn.ReLU(inplace=True),
                                 nn.Linear(mlp_dim, mlp_dim), nn.ReLU(inplace=True),
                                 nn.Linear(mlp_dim, max(self.n_adain, 1)))
        ups = []
        for _ in range(n_down):
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(dim, dim // 2, up_kernel, norm="ln")]
            dim //= 2
        self.up = nn.Sequential(*ups)
        self.mask = mask
        self.out = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(dim, 4 if mask else 3, 7))

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        params = self.mlp(style.to(content.dtype))
        h = content
        for i, block in enumerate(self.res):
            p = params[:, 4 * i * h.size(1):4 * (i + 1) * h.size(1)]
            ab1, ab2 = p.chunk(2, dim=1)
            h = block(h, ab1, ab2)
        out = self.out(self.up(h))
        rgb = torch.tanh(out[:, :3])
        return rgb, (out[:, 3:4] if self.mask else None)


class AutoEncoder(nn.Module):
    """One domain's content encoder, style encoder and decoder, and a bank of the styles its
    encoder gave the domain's most recent training photos (a ring of ``bank_size``)."""

    def __init__(self, dim: int, n_down: int, n_res: int, style_dim: int, mlp_dim: int, mask: bool,
                 up_kernel: int = 5, bank_size: int = 256) -> None:
        super().__init__()
        self.enc_c = ContentEncoder(dim, n_down, n_res)
        self.enc_s = StyleEncoder(dim, style_dim)
        self.dec = Decoder(self.enc_c.out_dim, n_down, n_res, style_dim, mlp_dim, mask, up_kernel)
        self.register_buffer("bank", torch.zeros(bank_size, style_dim))
        self.register_buffer("bank_seen", torch.zeros((), dtype=torch.long))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.enc_c(x), self.enc_s(x)

    def decode(self, c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.dec(c, s)

    @torch.no_grad()
    def remember(self, styles: torch.Tensor) -> None:
        """Write encoded styles of real photos into the ring (the oldest are overwritten)."""
        size = len(self.bank)
        if size == 0:
            return
        pos = (int(self.bank_seen) + torch.arange(len(styles))) % size
        self.bank[pos.to(self.bank.device)] = styles.detach().float().to(self.bank)
        self.bank_seen += len(styles)

    def styles(self) -> torch.Tensor:
        """The bank's filled part (empty before training)."""
        return self.bank[:min(int(self.bank_seen), len(self.bank))]


def is_masked(cfg: Config, meta: dict[str, Any]) -> bool:
    """The masked residual fits when both domains are product photos (an attribute edit)."""
    mode = cfg.munit.masked
    if mode != "auto":
        return mode == "on"
    kinds = {(meta.get(k) or {}).get("kind") for k in ("domain_a", "domain_b")}
    return kinds == {"product"}


def build_autoencoder(cfg: Config, masked: bool) -> AutoEncoder:
    o = cfg.munit
    return AutoEncoder(o.dim, o.n_down, o.n_res, o.style_dim, o.mlp_dim, masked, o.up_kernel, o.style_bank)


def bank_styles(bank: torch.Tensor, n: int) -> torch.Tensor:
    """``[n, style_dim]`` from a bank of real photos' styles: its medoid (the typical look,
    variant 1 and the single edit), then greedily the style farthest from those chosen."""
    chosen = [int(((bank - bank.mean(0, keepdim=True)) ** 2).sum(1).argmin())]
    while len(chosen) < min(n, len(bank)):
        dist = torch.cdist(bank, bank[chosen]).min(dim=1).values
        dist[chosen] = -1.0
        chosen.append(int(dist.argmax()))
    out = bank[chosen]
    return out if len(out) == n else torch.cat([out, out[:1].expand(n - len(out), -1)])


def spread_styles(n: int, style_dim: int, pool: int = 4, seed: int = STYLE_SEED) -> torch.Tensor:
    """``[n, style_dim]``: the zero code first, then greedily the draw farthest from those chosen.

    Plain draws from ``N(0, I)`` sometimes land close together, and two near-identical
    variants are one wasted search. Picking the most spread of ``pool`` draws per variant
    (farthest-point sampling) keeps every code a draw from the prior, only better spread.
    """
    g = torch.Generator().manual_seed(seed)
    cands = torch.randn(max(n - 1, 0) * pool, style_dim, generator=g)
    chosen = [torch.zeros(style_dim)]
    free = torch.ones(len(cands), dtype=torch.bool)
    while len(chosen) < n:
        dist = torch.cdist(cands, torch.stack(chosen)).min(dim=1).values.masked_fill(~free, -1.0)
        k = int(dist.argmax())
        chosen.append(cands[k])
        free[k] = False
    return torch.stack(chosen[:n])


def variant_styles(ae: AutoEncoder, n: int, cfg: Config) -> torch.Tensor:
    """``[n, style_dim]`` style codes for ``n`` variants into ``ae``'s domain: from its bank of
    real photos' styles (:func:`bank_styles`) once it has one, else from the prior
    (:func:`spread_styles`, a checkpoint from before the bank)."""
    bank = ae.styles()
    if len(bank):
        return bank_styles(bank.float(), n)
    return spread_styles(n, cfg.munit.style_dim, cfg.munit.diverse_pool).to(bank.device)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
class MunitSolver(Solver):
    """Trains two MUNIT autoencoders against frozen-feature judges (see the module docstring)."""

    kind = "munit"
    inference_nets = ("AE_a", "AE_b")

    def __init__(self, cfg: Config, schema: Schema, device: torch.device, meta: dict | None = None) -> None:
        super().__init__(cfg, schema, device, meta)
        o = cfg.munit
        self.masked = is_masked(cfg, self.meta)
        self.AE_a = self._place(build_autoencoder(cfg, self.masked))
        self.AE_b = self._place(build_autoencoder(cfg, self.masked))
        self.features = FrozenFeatures(cfg.train.image_size).to(self.device)
        if self.channels_last:
            self.features = self.features.to(memory_format=torch.channels_last)
        self.D_a = self._place(ProjectedDiscriminator(self.features.map_channels, o.d_width))
        self.D_b = self._place(ProjectedDiscriminator(self.features.map_channels, o.d_width))
        self.C = AttributeHeads(self.features.pooled_dim, [2]).to(self.device)  # domain a (0) or b (1)
        self.C.requires_grad_(False)
        self.nets = {"AE_a": self.AE_a, "AE_b": self.AE_b, "D_a": self.D_a, "D_b": self.D_b, "C": self.C}
        self._add_optim("G", list(self.AE_a.parameters()) + list(self.AE_b.parameters()), o.lr, (o.beta1, o.beta2))
        self._add_optim("D", list(self.D_a.parameters()) + list(self.D_b.parameters()), o.lr, (o.beta1, o.beta2))
        for opt in self.optims.values():
            opt.param_groups[0]["weight_decay"] = o.weight_decay
        self.judge_report: dict[str, Any] = {}

    # --- before the first step: the frozen domain head ----------------------------------------
    def prepare(self, images: dict[str, torch.Tensor], labels: torch.Tensor | None = None, progress: bool = False) -> None:
        """Fit the linear domain head on pooled Lite0 features of both domains' training photos."""
        from generators.datasets import uint8_to_float

        feats, doms = [], []
        with torch.no_grad(), self.autocast():
            for d, name in enumerate(("a", "b")):
                imgs = images[name]
                for i in range(0, len(imgs), 32):
                    x = uint8_to_float(imgs[i:i + 32].to(self.device))
                    feats.append(self.features(x, maps=False)[1].float().cpu())
                    doms.append(torch.full((len(x), 1), d, dtype=torch.long))
        acc = fit_heads(self.C, torch.cat(feats), torch.cat(doms), steps=self.cfg.munit.judge_steps, generator=self.gen)
        self.C.to(self.device)
        self.judge_report = {"heldout_accuracy": acc.get("0"), "photos": {n: int(len(images[n])) for n in ("a", "b")}}

    def extra_state(self) -> dict[str, Any]:
        return {"judge_report": self.judge_report}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.judge_report = state.get("judge_report", {})

    # --- one iteration ------------------------------------------------------------------------
    def _compose(self, x: torch.Tensor, y: torch.Tensor, logit: torch.Tensor | None):
        if not self.masked:
            return y, None, None
        return compose(x, y, logit, self.cfg.munit.mask_prior)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        o = self.cfg.munit
        xa, xb = batch["a"], batch["b"]
        n = min(xa.size(0), xb.size(0))
        xa, xb = xa[:n], xb[:n]
        aug = (lambda t: translate(t, self.gen)) if o.translate else (lambda t: t)
        sa = torch.randn(n, o.style_dim, generator=self.gen).to(self.device)
        sb = torch.randn(n, o.style_dim, generator=self.gen).to(self.device)
        ds_weight = o.lambda_ds * max(0.0, 1.0 - step / max(1, self.cfg.train.steps))
        if ds_weight > 0:  # a second style per image, drawn only when the loss is on (resume stays exact)
            sa2 = torch.randn(n, o.style_dim, generator=self.gen).to(self.device)
            sb2 = torch.randn(n, o.style_dim, generator=self.gen).to(self.device)

        with self.autocast():
            ca, sa_own = self.AE_a.encode(xa)
            cb, sb_own = self.AE_b.encode(xb)
            self.AE_a.remember(sa_own)  # the styles variants are later drawn from
            self.AE_b.remember(sb_own)
            xa_rec, _ = self.AE_a.decode(ca, sa_own)  # within domain: the image itself
            xb_rec, _ = self.AE_b.decode(cb, sb_own)
            yba, lba = self.AE_a.decode(cb, sa)  # across: b's content in a random a style
            yab, lab = self.AE_b.decode(ca, sb)
            xba, mba, gba = self._compose(xb, yba, lba)
            xab, mab, gab = self._compose(xa, yab, lab)
            cb_rec, sa_rec = self.AE_a.encode(xba)
            ca_rec, sb_rec = self.AE_b.encode(xab)
            loss_x = F.l1_loss(xa_rec.float(), xa) + F.l1_loss(xb_rec.float(), xb)
            loss_c = F.l1_loss(ca_rec.float(), ca.float()) + F.l1_loss(cb_rec.float(), cb.float())
            loss_s = F.l1_loss(sa_rec.float(), sa) + F.l1_loss(sb_rec.float(), sb)
            cyc = xa.new_zeros(())
            if o.lambda_cyc > 0:
                xaba, _ = self.AE_a.decode(ca_rec, sa_own)
                xbab, _ = self.AE_b.decode(cb_rec, sb_own)
                cyc = F.l1_loss(xaba.float(), xa) + F.l1_loss(xbab.float(), xb)
            ds = xa.new_zeros(())
            if ds_weight > 0:  # the same content in another style must look different
                xba2 = self._compose(xb, *self.AE_a.decode(cb, sa2))[0]
                xab2 = self._compose(xa, *self.AE_b.decode(ca, sb2))[0]
                ds = (xba.float() - xba2.float()).abs().mean() + (xab.float() - xab2.float()).abs().mean()
            maps_ab, pooled_ab = self.features(aug(xab))
            maps_ba, pooled_ba = self.features(aug(xba))
            adv = hinge_g_loss(self.D_b(maps_ab)) + hinge_g_loss(self.D_a(maps_ba))
            cls = (F.cross_entropy(self.C(pooled_ab)[0].float(), torch.ones(n, dtype=torch.long, device=self.device))
                   + F.cross_entropy(self.C(pooled_ba)[0].float(), torch.zeros(n, dtype=torch.long, device=self.device)))
            mask_l1 = xa.new_zeros(())
            if self.masked:
                mask_l1 = (mab * (1 - gab)).mean() + (mba * (1 - gba)).mean()
        g_loss = (o.lambda_x * loss_x + o.lambda_c * loss_c + o.lambda_s * loss_s + o.lambda_cyc * cyc
                  + o.lambda_adv * adv + o.lambda_cls * cls + o.lambda_mask * mask_l1 - ds_weight * ds)
        self.optims["G"].zero_grad(set_to_none=True)
        g_loss.backward()
        self.optims["G"].step()

        with torch.no_grad(), self.autocast():
            maps_a = self.features(aug(xa))[0]
            maps_b = self.features(aug(xb))[0]
        with self.autocast():
            d_loss = (hinge_d_loss(self.D_a(maps_a), self.D_a([t.detach() for t in maps_ba]))
                      + hinge_d_loss(self.D_b(maps_b), self.D_b([t.detach() for t in maps_ab])))
        self.optims["D"].zero_grad(set_to_none=True)
        d_loss.backward()
        self.optims["D"].step()

        with torch.no_grad():
            acc = 0.5 * (float((self.C(pooled_ab)[0].argmax(1) == 1).float().mean())
                         + float((self.C(pooled_ba)[0].argmax(1) == 0).float().mean()))
        return {"G/rec_x": loss_x.item(), "G/rec_c": loss_c.item(), "G/rec_s": loss_s.item(), "G/cyc": cyc.item(),
                "G/adv": adv.detach().item(), "G/cls": cls.detach().item(), "G/mask": mask_l1.item(), "G/ds": ds.item(), "D/loss": d_loss.item(),
                "G/acc_target": acc}

    # --- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        """Each row: a, a->b with 3 styles, b, b->a with 3 styles (style 1 is the zero code)."""
        self.train(False)
        a, b = fixed["a"], fixed["b"]
        n = min(a.size(0), b.size(0))
        a, b = a[:n], b[:n]
        styles_b, styles_a = (variant_styles(ae, 3, self.cfg) for ae in (self.AE_b, self.AE_a))
        cols, caps = [a], ["A"]
        with self.autocast():
            ca, _ = self.AE_a.encode(a)
            for k in range(3):
                y, lg = self.AE_b.decode(ca, styles_b[k:k + 1].expand(n, -1))
                cols.append(self._compose(a, y.float(), lg)[0].float())
                caps.append(f"A->B style {k + 1}")
            cols.append(b)
            caps.append("B")
            cb, _ = self.AE_b.encode(b)
            for k in range(3):
                y, lg = self.AE_a.decode(cb, styles_a[k:k + 1].expand(n, -1))
                cols.append(self._compose(b, y.float(), lg)[0].float())
                caps.append(f"B->A style {k + 1}")
        self.train(True)
        return torch.stack(cols, dim=1), caps


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------
class MunitInference:
    """What :class:`generators.inference.Editor` calls for a MUNIT checkpoint."""

    def __init__(self, ckpt: dict[str, Any], cfg: Config, schema: Schema, device: torch.device) -> None:
        self.cfg = cfg
        self.meta = dict(ckpt.get("meta") or {})
        self.device = device
        self.masked = is_masked(cfg, self.meta)
        self.full_resolution = self.masked  # a masked residual is applied at the photo's own size
        self.nets: dict[str, AutoEncoder] = {}
        for name in ("AE_a", "AE_b"):
            net = build_autoencoder(cfg, self.masked)
            sd = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["nets"][name].items()}
            sd.setdefault("bank", net.bank)  # a checkpoint from before the style bank: variants from the prior
            sd.setdefault("bank_seen", net.bank_seen)
            net.load_state_dict(sd)
            self.nets[name] = net.to(device).eval().requires_grad_(False)

    # --- what it can do ---------------------------------------------------------------------------
    def fixed_edits(self) -> list[tuple[dict[str, str], str, str, dict[str, str]]]:
        """(the labels an edit asks for, source autoencoder, target autoencoder, the source's labels)."""
        a, b = self.meta.get("domain_a", {}), self.meta.get("domain_b", {})
        out = []
        if a.get("kind") == b.get("kind") == "product":
            if b.get("where"):
                out.append((dict(b["where"]), "AE_a", "AE_b", dict(a.get("where") or {})))
            if a.get("where"):
                out.append((dict(a["where"]), "AE_b", "AE_a", dict(b.get("where") or {})))
        return out

    def capabilities(self) -> dict[str, Any] | None:
        edits = self.fixed_edits()
        if not edits:
            return None
        groups: dict[str, list[str]] = {}
        for where, *_ in edits:
            for g, v in where.items():
                groups.setdefault(g, []).append(v)
        return {"groups": groups, "multi_group": False, "edits": [w for w, *_ in edits],
                "sources": [src for *_, src in edits], "multi_modal": True, "continuous": self.masked,
                "style_dim": self.cfg.munit.style_dim, "full_resolution": self.masked}

    def translations(self) -> dict[str, str]:
        a, b = self.meta.get("domain_a", {}).get("kind"), self.meta.get("domain_b", {}).get("kind")
        if (a, b) == ("product", "model"):
            return {"to_model": "ab", "to_product": "ba"}
        if (a, b) == ("model", "product"):
            return {"to_model": "ba", "to_product": "ab"}
        return {}

    # --- the work -----------------------------------------------------------------------------------
    def _route(self, changes: dict[str, str]) -> tuple[str, str]:
        for where, src, dst, _ in self.fixed_edits():
            if dict(changes) == where:
                return src, dst
        raise ValueError(f"this munit checkpoint does exactly these edits: {[w for w, *_ in self.fixed_edits()]}; "
                         f"got {dict(changes)}")

    def styles(self, dst: str, n: int) -> torch.Tensor:
        return variant_styles(self.nets[dst], n, self.cfg).to(self.device)

    def _translate(self, x: torch.Tensor, src: str, dst: str, styles: torch.Tensor, strength: float) -> torch.Tensor:
        """``[B, N, 3, H, W]``: every image in each of the N styles."""
        size = self.cfg.train.image_size
        x_lo = downsample(x, size)
        content, _ = self.nets[src].encode(x_lo)
        outs = []
        # one decode per style, over the whole batch: variant 1 is then computed exactly as the
        # single edit is (one decode of B images at 4 B can round a pixel differently)
        for style in styles:
            y, logit = self.nets[dst].decode(content, style[None].expand(x.size(0), -1))
            if not self.masked:
                outs.append(x_lo + strength * (y.float() - x_lo))
            else:
                outs.append(apply_change(x, None, logit, self.cfg.munit.mask_prior, strength, replace=y))
        return torch.stack(outs, dim=1)

    def edit(self, x: torch.Tensor, changes: dict[str, str], source_labels: torch.Tensor | None = None,
             strength: float = 1.0) -> torch.Tensor:
        """The edit with the zero style code (the prior's mode): variant 1 of :meth:`edit_variants`."""
        return self.edit_variants(x, changes, 1, strength)[:, 0]

    def edit_variants(self, x: torch.Tensor, changes: dict[str, str], n: int, strength: float = 1.0,
                      source_labels: torch.Tensor | None = None) -> torch.Tensor:
        src, dst = self._route(changes)
        return self._translate(x, src, dst, self.styles(dst, n), strength)

    def translate(self, direction: str, x: torch.Tensor) -> torch.Tensor:
        src, dst = ("AE_a", "AE_b") if direction == "ab" else ("AE_b", "AE_a")
        return self._translate(x, src, dst, self.styles(dst, 1), 1.0)[:, 0]
