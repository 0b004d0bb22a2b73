"""pix2pix: product photo -> photo of a person wearing it (or back: ``pix2pix.direction``), on pairs.

U-Net generator, 70x70 PatchGAN conditioned on the input (it sees input and output stacked),
vanilla GAN loss + lambda_L1 * L1, Adam 2e-4 with beta1 0.5: the official configuration.

Two options apply the lessons of the attribute editor (generators.models.features) to a
translation that has to be *searched with*: ``d_kind: projected`` judges the output on frozen
ImageNet feature maps (useful gradients from the first step on a CPU budget, sharper than L1
alone), and ``lambda_feat`` pulls the output's pooled features towards the true photo's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from catalog import Schema
from generators.models.base import GANLoss, Solver, set_requires_grad
from generators.models.features import (
    FrozenFeatures,
    ProjectedDiscriminator,
    hinge_d_loss,
    hinge_g_loss,
    translate,
)
from generators.models.networks import NLayerDiscriminator, UnetGenerator, init_weights
from generators.options import Config


def build_pix2pix_generator(cfg: Config) -> UnetGenerator:
    o = cfg.pix2pix
    num_downs = o.num_downs or int(round(math.log2(cfg.train.image_size)))
    return UnetGenerator(3, 3, num_downs, o.ngf, o.norm, o.use_dropout)


class Pix2PixSolver(Solver):
    kind = "pix2pix"
    inference_nets = ("G",)

    def __init__(self, cfg: Config, schema: Schema, device: torch.device, meta: dict | None = None) -> None:
        super().__init__(cfg, schema, device, meta)
        o = cfg.pix2pix
        self.G = self._place(init_weights(build_pix2pix_generator(cfg), "normal", o.init_gain))
        self.features = None
        if o.d_kind == "projected" or o.lambda_feat > 0:
            self.features = FrozenFeatures(cfg.train.image_size).to(self.device)  # frozen: not in the checkpoint
        if o.d_kind == "projected":
            self.D = self._place(ProjectedDiscriminator(self.features.map_channels, o.d_width))
        else:
            self.D = self._place(init_weights(NLayerDiscriminator(6, o.ndf, o.n_layers_d, o.norm), "normal", o.init_gain))
        self.nets = {"G": self.G, "D": self.D}
        self._add_optim("G", self.G.parameters(), o.lr, (o.beta1, 0.999))
        self._add_optim("D", self.D.parameters(), o.lr, (o.beta1, 0.999))
        self.gan = GANLoss(o.gan_mode)

    def _cat(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([a, b], dim=1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        if self.cfg.pix2pix.d_kind == "projected":
            return self._projected_step(batch)
        real_a, real_b = batch["a"], batch["b"]
        with self.autocast():
            fake_b = self.G(real_a)
        fake_b = fake_b.float()

        # D: (input, real output) -> real, (input, generated output) -> fake.
        set_requires_grad(self.D, True)
        self.optims["D"].zero_grad(set_to_none=True)
        with self.autocast():
            pred_fake = self.D(self._cat(real_a, fake_b.detach()))
            pred_real = self.D(self._cat(real_a, real_b))
        loss_d_fake = self.gan(pred_fake, False)
        loss_d_real = self.gan(pred_real, True)
        loss_d = 0.5 * (loss_d_fake + loss_d_real)
        loss_d.backward()
        self.optims["D"].step()

        # G: fool D and stay close to the true photo in L1.
        set_requires_grad(self.D, False)
        self.optims["G"].zero_grad(set_to_none=True)
        with self.autocast():
            pred_fake = self.D(self._cat(real_a, fake_b))
        loss_g_gan = self.gan(pred_fake, True)
        loss_g_l1 = F.l1_loss(fake_b, real_b)
        loss_g = loss_g_gan + self.cfg.pix2pix.lambda_l1 * loss_g_l1
        logs = {}
        if self.features is not None and self.cfg.pix2pix.lambda_feat > 0:
            loss_feat = self._feature_loss(self.features(fake_b, maps=False)[1], real_b)
            loss_g = loss_g + self.cfg.pix2pix.lambda_feat * loss_feat
            logs["G/loss_feat"] = loss_feat.item()
        loss_g.backward()
        self.optims["G"].step()
        set_requires_grad(self.D, True)
        return {
            "D/loss_real": loss_d_real.item(), "D/loss_fake": loss_d_fake.item(),
            "G/loss_gan": loss_g_gan.item(), "G/loss_l1": loss_g_l1.item(), **logs,
        }

    def _feature_loss(self, pooled_fake: torch.Tensor, real_b: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pooled_real = self.features(real_b, maps=False)[1]
        return ((pooled_fake.float() - pooled_real.float()) ** 2).sum(1).mean()

    def _projected_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Projected critics on frozen feature maps of the output (hinge), + L1 and feature loss."""
        o = self.cfg.pix2pix
        real_a, real_b = batch["a"], batch["b"]
        with self.autocast():
            fake_b = self.G(real_a).float()

        set_requires_grad(self.D, True)
        self.optims["D"].zero_grad(set_to_none=True)
        with torch.no_grad(), self.autocast():
            maps_real = self.features(translate(real_b, self.gen))[0]
            maps_fake = self.features(translate(fake_b.detach(), self.gen))[0]
        loss_d = hinge_d_loss(self.D(maps_real), self.D(maps_fake))
        loss_d.backward()
        self.optims["D"].step()

        set_requires_grad(self.D, False)
        self.optims["G"].zero_grad(set_to_none=True)
        with self.autocast():
            maps, pooled = self.features(fake_b)
        loss_g_gan = hinge_g_loss(self.D(maps))
        loss_g_l1 = F.l1_loss(fake_b, real_b)
        loss_g = loss_g_gan + o.lambda_l1 * loss_g_l1
        logs = {}
        if o.lambda_feat > 0:
            loss_feat = self._feature_loss(pooled, real_b)
            loss_g = loss_g + o.lambda_feat * loss_feat
            logs["G/loss_feat"] = loss_feat.item()
        loss_g.backward()
        self.optims["G"].step()
        set_requires_grad(self.D, True)
        return {"D/loss": loss_d.item(), "G/loss_gan": loss_g_gan.item(), "G/loss_l1": loss_g_l1.item(), **logs}

    @torch.no_grad()
    def sample_grid(self, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        was_training = self.G.training
        self.train(False)
        with self.autocast():
            fake = self.G(fixed["a"]).float()
        self.train(was_training)
        if self.cfg.pix2pix.direction == "model->product":
            return torch.stack([fixed["a"], fake, fixed["b"]], dim=1), ["model photo", "generated product photo",
                                                                       "true product photo"]
        return torch.stack([fixed["a"], fake, fixed["b"]], dim=1), ["product", "generated model photo", "true model photo"]


class Pix2PixInference:
    """product photo -> model photo, or model photo -> product photo (the checkpoint's direction)."""

    full_resolution = False

    def __init__(self, ckpt: dict, cfg: Config, schema: Schema, device: torch.device) -> None:
        self.G = build_pix2pix_generator(cfg)
        self.G.load_state_dict(ckpt["nets"]["G"])
        self.G.to(device).eval().requires_grad_(False)
        self.meta = dict(ckpt.get("meta") or {})

    def capabilities(self) -> dict | None:
        return None

    def translations(self) -> dict[str, str]:
        """Which direction this checkpoint translates: ``{"to_model": net}`` or ``{"to_product": net}``."""
        if self.meta.get("direction") == "model->product":
            return {"to_product": "G"}
        return {"to_model": "G"}

    def translate(self, net: str, x: torch.Tensor) -> torch.Tensor:
        return self.G(x).float()
