"""CycleGAN for unpaired translation between two catalog domains.

Typical domains (see :func:`generators.datasets.parse_domain`):

- pattern add/remove: ``product:pattern=unicolors`` <-> ``product:pattern=stripes``;
- product -> model without pairs: ``product`` <-> ``model``.

ResNet generators, PatchGAN critics, LSGAN, lambda_cyc=10, identity 0.5, image pools of 50:
the official configuration. ``G_A`` maps A -> B, ``G_B`` maps B -> A.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from catalog import Schema
from generators.models.base import GANLoss, Solver, set_requires_grad
from generators.models.networks import NLayerDiscriminator, ResnetGenerator, init_weights
from generators.options import Config


def build_cyclegan_generator(cfg: Config) -> ResnetGenerator:
    o = cfg.cyclegan
    n_blocks = o.n_blocks or (9 if cfg.train.image_size >= 256 else 6)
    return ResnetGenerator(3, 3, o.ngf, o.norm, n_blocks, o.use_dropout)


class ImagePool:
    """History of generated images: D sees older fakes too, which damps oscillation.

    Uses the solver's generator (not Python's ``random``) and is saved in checkpoints, so a
    resumed run draws exactly what an uninterrupted one would.
    """

    def __init__(self, size: int, gen: torch.Generator) -> None:
        self.size = size
        self.gen = gen
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif float(torch.rand(1, generator=self.gen)) > 0.5:
                k = int(torch.randint(0, self.size, (1,), generator=self.gen))
                out.append(self.images[k].clone())
                self.images[k] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, dim=0)

    def state(self) -> torch.Tensor | None:
        return torch.cat(self.images).cpu() if self.images else None

    def load(self, t: torch.Tensor | None, device: torch.device) -> None:
        self.images = [] if t is None else [x.unsqueeze(0).to(device) for x in t]


class CycleGANSolver(Solver):
    kind = "cyclegan"
    inference_nets = ("G_A", "G_B")

    def __init__(self, cfg: Config, schema: Schema, device: torch.device, meta: dict | None = None) -> None:
        super().__init__(cfg, schema, device, meta)
        o = cfg.cyclegan
        self.G_A = self._place(init_weights(build_cyclegan_generator(cfg), "normal", o.init_gain))
        self.G_B = self._place(init_weights(build_cyclegan_generator(cfg), "normal", o.init_gain))
        self.D_A = self._place(init_weights(NLayerDiscriminator(3, o.ndf, o.n_layers_d, o.norm), "normal", o.init_gain))
        self.D_B = self._place(init_weights(NLayerDiscriminator(3, o.ndf, o.n_layers_d, o.norm), "normal", o.init_gain))
        self.nets = {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}
        self._add_optim("G", list(self.G_A.parameters()) + list(self.G_B.parameters()), o.lr, (o.beta1, 0.999))
        self._add_optim("D", list(self.D_A.parameters()) + list(self.D_B.parameters()), o.lr, (o.beta1, 0.999))
        self.gan = GANLoss(o.gan_mode)
        self.pool_a = ImagePool(o.pool_size, self.gen)  # generated A images (for D_B)
        self.pool_b = ImagePool(o.pool_size, self.gen)  # generated B images (for D_A)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        o = self.cfg.cyclegan
        real_a, real_b = batch["a"], batch["b"]
        lam_idt = o.lambda_identity * o.lambda_cyc

        # Generators: fool both critics, reconstruct through the cycle, keep in-domain images.
        set_requires_grad([self.D_A, self.D_B], False)
        self.optims["G"].zero_grad(set_to_none=True)
        with self.autocast():
            fake_b = self.G_A(real_a)
            rec_a = self.G_B(fake_b)
            fake_a = self.G_B(real_b)
            rec_b = self.G_A(fake_a)
            loss_g_a = self.gan(self.D_A(fake_b), True)
            loss_g_b = self.gan(self.D_B(fake_a), True)
            if lam_idt > 0:
                loss_idt_a = F.l1_loss(self.G_A(real_b).float(), real_b) * lam_idt
                loss_idt_b = F.l1_loss(self.G_B(real_a).float(), real_a) * lam_idt
            else:
                loss_idt_a = loss_idt_b = torch.zeros((), device=self.device)
        loss_cyc_a = F.l1_loss(rec_a.float(), real_a) * o.lambda_cyc
        loss_cyc_b = F.l1_loss(rec_b.float(), real_b) * o.lambda_cyc
        loss_g = loss_g_a + loss_g_b + loss_cyc_a + loss_cyc_b + loss_idt_a + loss_idt_b
        loss_g.backward()
        self.optims["G"].step()

        # Critics: real vs (pooled) fake.
        set_requires_grad([self.D_A, self.D_B], True)
        self.optims["D"].zero_grad(set_to_none=True)
        fake_b_p = self.pool_b.query(fake_b.detach().float())
        fake_a_p = self.pool_a.query(fake_a.detach().float())
        with self.autocast():
            loss_d_a = 0.5 * (self.gan(self.D_A(real_b), True) + self.gan(self.D_A(fake_b_p), False))
            loss_d_b = 0.5 * (self.gan(self.D_B(real_a), True) + self.gan(self.D_B(fake_a_p), False))
        (loss_d_a + loss_d_b).backward()
        self.optims["D"].step()
        return {
            "G/loss_gan_a": loss_g_a.item(), "G/loss_gan_b": loss_g_b.item(),
            "G/loss_cyc_a": loss_cyc_a.item(), "G/loss_cyc_b": loss_cyc_b.item(),
            "G/loss_idt_a": loss_idt_a.item(), "G/loss_idt_b": loss_idt_b.item(),
            "D/loss_a": loss_d_a.item(), "D/loss_b": loss_d_b.item(),
        }

    @torch.no_grad()
    def sample_grid(self, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        was_training = self.G_A.training
        self.train(False)
        a, b = fixed["a"], fixed["b"]
        n = min(a.size(0), b.size(0))
        a, b = a[:n], b[:n]
        with self.autocast():
            fb = self.G_A(a).float()
            ra = self.G_B(fb).float()
            fa = self.G_B(b).float()
            rb = self.G_A(fa).float()
        self.train(was_training)
        return torch.stack([a, fb, ra, b, fa, rb], dim=1), ["A", "A->B", "A->B->A", "B", "B->A", "B->A->B"]

    def extra_state(self) -> dict:
        return {"pool_a": self.pool_a.state(), "pool_b": self.pool_b.state()}

    def load_extra_state(self, state: dict) -> None:
        self.pool_a.load(state.get("pool_a"), self.device)
        self.pool_b.load(state.get("pool_b"), self.device)


class CycleGANInference:
    """Two generators between two domains: fixed attribute edits, or product <-> model."""

    full_resolution = False

    def __init__(self, ckpt: dict, cfg: Config, schema: Schema, device: torch.device) -> None:
        self.meta = dict(ckpt.get("meta") or {})
        self.nets = {}
        for name in ("G_A", "G_B"):
            net = build_cyclegan_generator(cfg)
            net.load_state_dict(ckpt["nets"][name])
            self.nets[name] = net.to(device).eval().requires_grad_(False)

    def fixed_edits(self) -> list[tuple[dict[str, str], str]]:
        """(the labels an edit must ask for, the generator that does it)."""
        a, b = self.meta.get("domain_a", {}), self.meta.get("domain_b", {})
        out = []
        if a.get("kind") == b.get("kind") == "product":
            if b.get("where"):
                out.append((dict(b["where"]), "G_A"))
            if a.get("where"):
                out.append((dict(a["where"]), "G_B"))
        return out

    def capabilities(self) -> dict | None:
        edits = self.fixed_edits()
        if not edits:
            return None
        groups: dict[str, list[str]] = {}
        for where, _ in edits:
            for g, v in where.items():
                groups.setdefault(g, []).append(v)
        return {"groups": groups, "multi_group": False, "edits": [where for where, _ in edits]}

    def translations(self) -> dict[str, str]:
        a, b = self.meta.get("domain_a", {}).get("kind"), self.meta.get("domain_b", {}).get("kind")
        if (a, b) == ("product", "model"):
            return {"to_model": "G_A", "to_product": "G_B"}
        if (a, b) == ("model", "product"):
            return {"to_model": "G_B", "to_product": "G_A"}
        return {}

    def edit(self, x: torch.Tensor, changes: dict[str, str], source_labels: torch.Tensor | None = None,
             strength: float = 1.0) -> torch.Tensor:
        for where, net in self.fixed_edits():
            if dict(changes) == where:
                out = self.nets[net](x).float()
                return x + strength * (out - x) if strength != 1.0 else out
        raise ValueError(f"this cyclegan checkpoint does exactly these edits: {[w for w, _ in self.fixed_edits()]}; "
                         f"got {dict(changes)}")

    def translate(self, net: str, x: torch.Tensor) -> torch.Tensor:
        return self.nets[net](x).float()
