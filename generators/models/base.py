"""What the three solvers share: optimiser/scheduler bookkeeping, AMP, GAN losses.

Each model's solver (stargan.py, pix2pix.py, cyclegan.py) owns its networks and its train
step; this base class turns their state into a checkpoint payload and back, so resume is
exact for every model the same way.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from catalog import Schema
from generators.options import Config


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast only where it pays: CUDA GPUs with bf16 support. CPU stays fp32."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def linear_decay(total_steps: int, decay_start: float):
    """LR factor: 1 until ``decay_start * total``, then linearly to 0 at the end (official)."""
    start = int(total_steps * decay_start)
    span = max(1, total_steps - start)

    def factor(step: int) -> float:
        return 1.0 if step < start else max(0.0, 1.0 - (step - start) / span)

    return factor


class GANLoss(nn.Module):
    """Vanilla (BCE on logits) or least-squares GAN loss against constant real/fake targets."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in ("vanilla", "lsgan"):
            raise ValueError(f"gan mode must be vanilla or lsgan; got {mode!r}")
        self.mode = mode

    def forward(self, pred: torch.Tensor, real: bool) -> torch.Tensor:
        pred = pred.float()
        target = torch.ones_like(pred) if real else torch.zeros_like(pred)
        if self.mode == "lsgan":
            return nn.functional.mse_loss(pred, target)
        return nn.functional.binary_cross_entropy_with_logits(pred, target)


def set_requires_grad(nets: list[nn.Module] | nn.Module, flag: bool) -> None:
    for net in nets if isinstance(nets, list) else [nets]:
        for p in net.parameters():
            p.requires_grad_(flag)


class Solver:
    """Base: subclasses fill ``nets``, ``optims`` and implement ``train_step`` / ``sample_grid``."""

    kind = "base"
    inference_nets: tuple[str, ...] = ()

    def __init__(self, cfg: Config, schema: Schema, device: torch.device, meta: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.schema = schema
        self.device = device
        self.meta = dict(meta or {})
        self.amp_dtype = resolve_amp(cfg.speed.amp, device)
        self.channels_last = cfg.speed.channels_last
        # Solver-owned RNG (targets, GP mixing, image pool): saved with the checkpoint.
        self.gen = torch.Generator().manual_seed(cfg.train.seed + 17)
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.scheds: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}

    # --- helpers for subclasses --------------------------------------------------------------
    def _place(self, net: nn.Module) -> nn.Module:
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    def _add_optim(self, name: str, params, lr: float, betas: tuple[float, float]) -> None:
        opt = torch.optim.Adam(params, lr=lr, betas=betas)
        self.optims[name] = opt
        factor = linear_decay(self.cfg.train.steps, self.cfg.train.decay_start)
        self.scheds[name] = torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen).to(self.device)

    def train(self, mode: bool = True) -> None:
        for net in self.nets.values():
            net.train(mode)

    def step_schedulers(self) -> None:
        import warnings

        with warnings.catch_warnings():
            # StarGAN's G is stepped every n_critic iterations only; the schedule is per iteration.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for s in self.scheds.values():
                s.step()

    def lrs(self) -> dict[str, float]:
        return {f"lr/{k}": o.param_groups[0]["lr"] for k, o in self.optims.items()}

    # --- the model-specific part -------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def sample_grid(self, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[str]]:
        """``[rows, cols, 3, H, W]`` in ``[-1, 1]`` and a caption per column."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # --- checkpoint payload --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {k: n.state_dict() for k, n in self.nets.items()},
            "optims": {k: o.state_dict() for k, o in self.optims.items()},
            "scheds": {k: s.state_dict() for k, s in self.scheds.items()},
            "solver_rng": self.gen.get_state(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, n in self.nets.items():
            n.load_state_dict(state["nets"][k])
        for k, o in self.optims.items():
            o.load_state_dict(state["optims"][k])
        for k, s in self.scheds.items():
            s.load_state_dict(state["scheds"][k])
        self.gen.set_state(state["solver_rng"])
        self.load_extra_state(state.get("extra", {}))
