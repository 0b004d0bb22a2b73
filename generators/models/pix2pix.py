"""pix2pix: product photo -> photo of a person wearing it, trained on pairs.

U-Net generator, 70x70 PatchGAN conditioned on the input (it sees input and output stacked),
vanilla GAN loss + lambda_L1 * L1, Adam 2e-4 with beta1 0.5: the official configuration.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from catalog import Schema
from generators.models.base import GANLoss, Solver, set_requires_grad
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
        self.D = self._place(init_weights(NLayerDiscriminator(6, o.ndf, o.n_layers_d, o.norm), "normal", o.init_gain))
        self.nets = {"G": self.G, "D": self.D}
        self._add_optim("G", self.G.parameters(), o.lr, (o.beta1, 0.999))
        self._add_optim("D", self.D.parameters(), o.lr, (o.beta1, 0.999))
        self.gan = GANLoss(o.gan_mode)

    def _cat(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([a, b], dim=1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
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
        loss_g.backward()
        self.optims["G"].step()
        set_requires_grad(self.D, True)
        return {
            "D/loss_real": loss_d_real.item(), "D/loss_fake": loss_d_fake.item(),
            "G/loss_gan": loss_g_gan.item(), "G/loss_l1": loss_g_l1.item(),
        }

    @torch.no_grad()
    def sample_grid(self, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        was_training = self.G.training
        self.train(False)
        with self.autocast():
            fake = self.G(fixed["a"]).float()
        self.train(was_training)
        return torch.stack([fixed["a"], fake, fixed["b"]], dim=1), ["product", "generated model photo", "true model photo"]


class Pix2PixInference:
    """product photo -> model photo."""

    full_resolution = False

    def __init__(self, ckpt: dict, cfg: Config, schema: Schema, device: torch.device) -> None:
        self.G = build_pix2pix_generator(cfg)
        self.G.load_state_dict(ckpt["nets"]["G"])
        self.G.to(device).eval().requires_grad_(False)
        self.meta = dict(ckpt.get("meta") or {})

    def capabilities(self) -> dict | None:
        return None

    def translations(self) -> dict[str, str]:
        """Which direction this checkpoint translates: {"to_model": net name}."""
        if self.meta.get("direction") == "model->product":
            return {"to_product": "G"}
        return {"to_model": "G"}

    def translate(self, net: str, x: torch.Tensor) -> torch.Tensor:
        return self.G(x).float()
