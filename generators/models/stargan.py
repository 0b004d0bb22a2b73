"""StarGAN over every attribute group of a schema: one generator edits them all.

The label vector is the concatenation of one one-hot block per schema group; a zero block
means "unspecified" (an unknown label). The discriminator's classifier head outputs
``sum(len(values))`` logits, split per group, each with its own softmax cross-entropy loss;
unknown labels are masked out of it.

Training targets: every group changes with probability ``change_prob`` to a uniformly drawn
value, otherwise keeps the input's label, so the generator learns single and multi-group
edits and to leave the other groups alone. At inference the input's own labels come from the
discriminator's classifier, so an :class:`~generators.inference.Editor` needs only the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from catalog import Schema
from generators.datasets import group_sizes, one_hot
from generators.models.base import Solver, set_requires_grad
from generators.models.networks import StarDiscriminator, StarGenerator
from generators.options import Config


def build_stargan_nets(cfg: Config, schema: Schema) -> tuple[StarGenerator, StarDiscriminator]:
    o = cfg.stargan
    c_dim = schema.num_values
    g = StarGenerator(c_dim, o.g_conv_dim, o.g_repeat_num)
    d = StarDiscriminator(cfg.train.image_size, c_dim, o.d_conv_dim, o.d_repeat_num)
    return g, d


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Sum over groups of the mean cross-entropy over samples whose label is known."""
    total = logits.new_zeros((), dtype=torch.float32)
    start = 0
    for j, n in enumerate(sizes):
        lab = labels[:, j]
        known = lab >= 0
        if bool(known.any()):
            total = total + F.cross_entropy(logits[known, start:start + n].float(), lab[known])
        start += n
    return total


def predict_labels(logits: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Argmax class per group: ``[B, G]``."""
    out, start = [], 0
    for n in sizes:
        out.append(logits[:, start:start + n].argmax(dim=1))
        start += n
    return torch.stack(out, dim=1)


def group_accuracy(logits: torch.Tensor, labels: torch.Tensor, sizes: list[int]) -> float:
    pred = predict_labels(logits, sizes)
    known = labels >= 0
    if not bool(known.any()):
        return float("nan")
    return float((pred[known] == labels[known]).float().mean())


class StarGANSolver(Solver):
    kind = "stargan"
    inference_nets = ("G", "D")

    def __init__(self, cfg: Config, schema: Schema, device: torch.device, meta: dict | None = None) -> None:
        super().__init__(cfg, schema, device, meta)
        self.sizes = group_sizes(schema)
        g, d = build_stargan_nets(cfg, schema)
        self.G = self._place(g)
        self.D = self._place(d)
        self.nets = {"G": self.G, "D": self.D}
        o = cfg.stargan
        self._add_optim("G", self.G.parameters(), o.g_lr, (o.beta1, o.beta2))
        self._add_optim("D", self.D.parameters(), o.d_lr, (o.beta1, o.beta2))
        self.lean = cfg.speed.lean_steps

    # --- targets -----------------------------------------------------------------------------
    def sample_targets(self, labels: torch.Tensor) -> torch.Tensor:
        b = labels.size(0)
        trg = labels.clone()
        p = self.cfg.stargan.change_prob
        for j, n in enumerate(self.sizes):
            change = torch.rand(b, generator=self.gen) < p
            new = torch.randint(0, n, (b,), generator=self.gen)
            trg[:, j] = torch.where(change, new, labels[:, j])
        return trg

    def _gradient_penalty(self, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        alpha = self.rand(x_real.size(0), 1, 1, 1)
        x_hat = (alpha * x_real + (1 - alpha) * x_fake).requires_grad_(True)
        with self.autocast():
            out = self.D.src(x_hat) if self.lean else self.D(x_hat)[0]
        grad = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)[0]
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    # --- one iteration: a critic update, and a generator update every n_critic ----------------
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        o = self.cfg.stargan
        x_real = batch["image"]
        label_org = batch["labels"]
        label_trg = self.sample_targets(label_org)
        c_org = one_hot(label_org, self.sizes).to(self.device)
        c_trg = one_hot(label_trg, self.sizes).to(self.device)
        lab_org_d = label_org.to(self.device)
        lab_trg_d = label_trg.to(self.device)
        b = x_real.size(0)
        logs: dict[str, float] = {}

        # Critic: real -> high, fake -> low, classify real labels, gradient penalty.
        if self.lean:
            with torch.no_grad(), self.autocast():
                x_fake = self.G(x_real, c_trg)
            x_fake = x_fake.float()
            with self.autocast():
                src, cls = self.D(torch.cat([x_real, x_fake]))
            out_src_real, out_src_fake, out_cls = src[:b], src[b:], cls[:b]
        else:
            with self.autocast():
                out_src_real, out_cls = self.D(x_real)
                x_fake = self.G(x_real, c_trg)
                out_src_fake, _ = self.D(x_fake.detach())
            x_fake = x_fake.detach().float()
        d_loss_real = -out_src_real.float().mean()
        d_loss_fake = out_src_fake.float().mean()
        d_loss_cls = classification_loss(out_cls, lab_org_d, self.sizes)
        d_loss_gp = self._gradient_penalty(x_real, x_fake)
        d_loss = d_loss_real + d_loss_fake + o.lambda_cls * d_loss_cls + o.lambda_gp * d_loss_gp
        self.optims["D"].zero_grad(set_to_none=True)
        self.optims["G"].zero_grad(set_to_none=True)
        d_loss.backward()
        self.optims["D"].step()
        logs.update({
            "D/loss_real": d_loss_real.item(), "D/loss_fake": d_loss_fake.item(),
            "D/loss_cls": d_loss_cls.item(), "D/loss_gp": d_loss_gp.item(),
            "D/acc_real": group_accuracy(out_cls.detach(), lab_org_d, self.sizes),
        })

        # Generator: fool the critic, be classified as the target, reconstruct the input.
        if (step + 1) % o.n_critic == 0:
            if self.lean:
                set_requires_grad(self.D, False)
            with self.autocast():
                x_fake = self.G(x_real, c_trg)
                out_src, out_cls_f = self.D(x_fake)
                x_rec = self.G(x_fake, c_org)
            g_loss_fake = -out_src.float().mean()
            g_loss_cls = classification_loss(out_cls_f, lab_trg_d, self.sizes)
            g_loss_rec = (x_real - x_rec.float()).abs().mean()
            g_loss = g_loss_fake + o.lambda_rec * g_loss_rec + o.lambda_cls * g_loss_cls
            self.optims["D"].zero_grad(set_to_none=True)
            self.optims["G"].zero_grad(set_to_none=True)
            g_loss.backward()
            self.optims["G"].step()
            if self.lean:
                set_requires_grad(self.D, True)
            logs.update({
                "G/loss_fake": g_loss_fake.item(), "G/loss_rec": g_loss_rec.item(),
                "G/loss_cls": g_loss_cls.item(),
                "G/acc_target": group_accuracy(out_cls_f.detach(), lab_trg_d, self.sizes),
            })
        return logs

    # --- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def own_labels(self, x: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """The input's labels: known ones kept, unknown ones read by D's classifier."""
        with self.autocast():
            pred = predict_labels(self.D.classify(x).float(), self.sizes).cpu()
        if known is None:
            return pred
        return torch.where(known >= 0, known, pred)

    @torch.no_grad()
    def sample_grid(self, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        """Inputs, then one column per (group, value): that group set to that value."""
        was_training = self.G.training
        self.train(False)
        x = fixed["image"]
        org = self.own_labels(x, fixed.get("labels"))
        cols, captions = [x], ["input"]
        for j, (g, values) in enumerate(self.schema.groups.items()):
            for k, v in enumerate(values):
                trg = org.clone()
                trg[:, j] = k
                with self.autocast():
                    cols.append(self.G(x, one_hot(trg, self.sizes).to(self.device)).float())
                captions.append(f"{g}={v}")
        self.train(was_training)
        return torch.stack(cols, dim=1), captions


class StarGANInference:
    """StarGAN at inference: the full target label = the input's labels with the named groups set.

    The input's own labels come from D's classifier head; a caller that knows them (a catalog
    item) passes ``source_labels``, which take precedence.
    """

    full_resolution = False

    def __init__(self, ckpt: dict, cfg: Config, schema: Schema, device: torch.device) -> None:
        self.schema = schema
        self.device = device
        self.sizes = group_sizes(schema)
        self.G, self.D = build_stargan_nets(cfg, schema)
        for name, net in (("G", self.G), ("D", self.D)):
            net.load_state_dict(ckpt["nets"][name])
            net.to(device).eval().requires_grad_(False)

    def capabilities(self) -> dict:
        return {"groups": {g: list(v) for g, v in self.schema.groups.items()}, "multi_group": True,
                "unnamed_groups": "kept (read from the image by the classifier)"}

    def predict_labels(self, x: torch.Tensor) -> torch.Tensor:
        return predict_labels(self.D.classify(x).float(), self.sizes).cpu()

    def edit(self, x: torch.Tensor, changes: dict[str, str], source_labels: torch.Tensor | None = None,
             strength: float = 1.0) -> torch.Tensor:
        labels = self.predict_labels(x)
        if source_labels is not None:
            labels = torch.where(source_labels >= 0, source_labels, labels)
        for g, v in changes.items():
            labels[:, self.schema.names.index(g)] = self.schema.index(g, v)
        out = self.G(x, one_hot(labels, self.sizes).to(self.device)).float()
        return x + strength * (out - x) if strength != 1.0 else out
