"""Generator and discriminator networks of StarGAN, pix2pix and CycleGAN.

Architectures follow the official implementations (yunjey/stargan,
junyanz/pytorch-CycleGAN-and-pix2pix); sizes are parameters so that the same code runs a
tiny CPU smoke model and the full 256 px model.

One deliberate difference: StarGAN's InstanceNorm does not track running statistics. The
official code tracks them but never switches to eval mode; we serve in eval mode, where
running statistics would silently change the output.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

# --------------------------------------------------------------------------------------
# StarGAN
# --------------------------------------------------------------------------------------


class StarResidualBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(dim, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(dim, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


class StarGenerator(nn.Module):
    """conv7 -> 2 downsamplings -> residual blocks -> 2 upsamplings -> conv7 -> tanh.

    The target label vector (concatenated one-hot groups, zeros for "unspecified") is tiled
    over the image and fed as extra input channels.
    """

    def __init__(self, c_dim: int, conv_dim: int = 64, repeat_num: int = 6) -> None:
        super().__init__()
        self.c_dim = c_dim
        layers: list[nn.Module] = [
            nn.Conv2d(3 + c_dim, conv_dim, 7, 1, 3, bias=False),
            nn.InstanceNorm2d(conv_dim, affine=True),
            nn.ReLU(inplace=True),
        ]
        dim = conv_dim
        for _ in range(2):
            layers += [
                nn.Conv2d(dim, dim * 2, 4, 2, 1, bias=False),
                nn.InstanceNorm2d(dim * 2, affine=True),
                nn.ReLU(inplace=True),
            ]
            dim *= 2
        layers += [StarResidualBlock(dim) for _ in range(repeat_num)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(dim, dim // 2, 4, 2, 1, bias=False),
                nn.InstanceNorm2d(dim // 2, affine=True),
                nn.ReLU(inplace=True),
            ]
            dim //= 2
        layers += [nn.Conv2d(dim, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = c.to(x.dtype).view(c.size(0), c.size(1), 1, 1).expand(-1, -1, x.size(2), x.size(3))
        # Keep the caller's memory format (channels_last survives the concatenation).
        inp = torch.cat([x, c], dim=1)
        if x.is_contiguous(memory_format=torch.channels_last):
            inp = inp.contiguous(memory_format=torch.channels_last)
        return self.main(inp)


def star_d_repeat_num(image_size: int) -> int:
    """Strided convs of the discriminator: 6 at 128 px (official), one more per doubling."""
    return max(2, int(round(math.log2(image_size))) - 1)


class StarDiscriminator(nn.Module):
    """PatchGAN critic with an auxiliary classifier head (all groups' logits concatenated)."""

    def __init__(self, image_size: int, c_dim: int, conv_dim: int = 64, repeat_num: int | None = None) -> None:
        super().__init__()
        repeat_num = repeat_num or star_d_repeat_num(image_size)
        layers: list[nn.Module] = [nn.Conv2d(3, conv_dim, 4, 2, 1), nn.LeakyReLU(0.01)]
        dim = conv_dim
        for _ in range(1, repeat_num):
            layers += [nn.Conv2d(dim, dim * 2, 4, 2, 1), nn.LeakyReLU(0.01)]
            dim *= 2
        kernel = image_size // 2**repeat_num
        if kernel < 1:
            raise ValueError(f"image_size {image_size} too small for {repeat_num} strided convs")
        self.main = nn.Sequential(*layers)
        self.conv_src = nn.Conv2d(dim, 1, 3, 1, 1, bias=False)
        self.conv_cls = nn.Conv2d(dim, c_dim, kernel, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.main(x)
        return self.conv_src(h), self.conv_cls(h).flatten(1)

    def src(self, x: torch.Tensor) -> torch.Tensor:
        """Critic output only: the gradient penalty needs no class logits."""
        return self.conv_src(self.main(x))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_cls(self.main(x)).flatten(1)


# --------------------------------------------------------------------------------------
# pix2pix / CycleGAN building blocks
# --------------------------------------------------------------------------------------


def norm_layer(kind: str) -> type[nn.Module] | functools.partial:
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "none":
        return lambda _c: nn.Identity()
    raise ValueError(f"norm must be one of batch, instance, none; got {kind!r}")


def _uses_bias(kind: str) -> bool:
    # BatchNorm has its own shift; a conv bias before it is redundant (official behaviour).
    return kind != "batch"


class UnetGenerator(nn.Module):
    """U-Net with skip connections between mirrored layers (pix2pix ``unet_<size>``).

    ``num_downs`` halvings take the image to 1x1 (8 at 256 px). Channels grow ngf, 2ngf,
    4ngf, 8ngf and stay at 8ngf; dropout sits in the three innermost decoder blocks of
    8ngf, as in the official model.
    """

    def __init__(
        self, in_ch: int = 3, out_ch: int = 3, num_downs: int = 8, ngf: int = 64,
        norm: str = "batch", use_dropout: bool = True,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5, got {num_downs}")
        nl = norm_layer(norm)
        bias = _uses_bias(norm)
        chans = [min(ngf * 2**i, ngf * 8) for i in range(num_downs)]
        self.downs = nn.ModuleList()
        prev = in_ch
        for i, ch in enumerate(chans):
            block: list[nn.Module] = []
            if i > 0:
                block.append(nn.LeakyReLU(0.2, True))
            block.append(nn.Conv2d(prev, ch, 4, 2, 1, bias=bias))
            if 0 < i < num_downs - 1:  # no norm on the outermost and innermost down conv
                block.append(nl(ch))
            self.downs.append(nn.Sequential(*block))
            prev = ch
        self.ups = nn.ModuleList()
        n_dropout = 0
        for i in reversed(range(num_downs)):
            # decoder i maps from level i+1's resolution to level i's; innermost has no skip input
            inner = chans[i]
            in_ch_up = inner if i == num_downs - 1 else inner * 2
            target = out_ch if i == 0 else chans[i - 1]
            block = [nn.ReLU(True)]
            if i == 0:
                block += [nn.ConvTranspose2d(in_ch_up, target, 4, 2, 1), nn.Tanh()]
            else:
                block += [nn.ConvTranspose2d(in_ch_up, target, 4, 2, 1, bias=bias), nl(target)]
                # dropout on the 8ngf-wide blocks just below the innermost (official: 3 of them)
                if use_dropout and i < num_downs - 1 and target == ngf * 8 and n_dropout < 3:
                    block.append(nn.Dropout(0.5))
                    n_dropout += 1
            self.ups.append(nn.Sequential(*block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = self.ups[0](skips[-1])
        for j, up in enumerate(self.ups[1:], start=2):
            h = up(torch.cat([skips[-j], h], dim=1))
        return h


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, use_dropout: bool) -> None:
        super().__init__()
        nl = norm_layer(norm)
        bias = _uses_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), nl(dim), nn.ReLU(True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), nl(dim)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator: c7s1-ngf, 2 downsamplings, n residual blocks, 2 upsamplings."""

    def __init__(
        self, in_ch: int = 3, out_ch: int = 3, ngf: int = 64, norm: str = "instance",
        n_blocks: int = 9, use_dropout: bool = False,
    ) -> None:
        super().__init__()
        nl = norm_layer(norm)
        bias = _uses_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=bias), nl(ngf), nn.ReLU(True),
        ]
        dim = ngf
        for _ in range(2):
            layers += [nn.Conv2d(dim, dim * 2, 3, 2, 1, bias=bias), nl(dim * 2), nn.ReLU(True)]
            dim *= 2
        layers += [ResnetBlock(dim, norm, use_dropout) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(dim, dim // 2, 3, 2, 1, output_padding=1, bias=bias),
                nl(dim // 2), nn.ReLU(True),
            ]
            dim //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(dim, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN; with n_layers=3 each output sees a 70x70 input patch."""

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        nl = norm_layer(norm)
        bias = _uses_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=bias), nl(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=bias), nl(ndf * mult), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, 1, 1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def patch_receptive_field(n_layers: int) -> int:
    """Input patch seen by one PatchGAN output (70 for n_layers=3): a check on the design."""
    rf = 1
    for k, s in reversed([(4, 2)] * n_layers + [(4, 1), (4, 1)]):
        rf = (rf - 1) * s + k
    return rf


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """pix2pix/CycleGAN initialisation: N(0, 0.02) convs, N(1, 0.02) norm scales."""

    def init(m: nn.Module) -> None:
        name = m.__class__.__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name or "Linear" in name):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise ValueError(f"init_type must be normal, xavier, kaiming or orthogonal; got {init_type!r}")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    net.apply(init)
    return net


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
