"""Network shapes and sizes against the official architectures; the masked class loss."""

from __future__ import annotations

import torch

from generators.models.networks import (
    NLayerDiscriminator,
    ResnetGenerator,
    StarDiscriminator,
    StarGenerator,
    UnetGenerator,
    count_params,
    patch_receptive_field,
    star_d_repeat_num,
)
from generators.models.stargan import classification_loss, predict_labels


def test_stargan_generator_matches_official_size() -> None:
    # yunjey/stargan's G for CelebA (c_dim 5, conv_dim 64, 6 residual blocks) has 8,430,528 parameters.
    g = StarGenerator(c_dim=5, conv_dim=64, repeat_num=6)
    assert count_params(g) == 8_430_528
    x = torch.zeros(2, 3, 32, 32)
    assert g(x, torch.zeros(2, 5)).shape == (2, 3, 32, 32)


def test_stargan_discriminator_scales_with_image_size() -> None:
    assert star_d_repeat_num(128) == 6 and star_d_repeat_num(64) == 5 and star_d_repeat_num(256) == 7
    for size in (64, 128):
        d = StarDiscriminator(size, c_dim=38, conv_dim=8)
        src, cls = d(torch.zeros(2, 3, size, size))
        assert src.shape == (2, 1, 2, 2) and cls.shape == (2, 38)
        assert torch.equal(d.src(torch.ones(1, 3, size, size)), d(torch.ones(1, 3, size, size))[0])


def test_pix2pix_and_cyclegan_networks() -> None:
    assert patch_receptive_field(3) == 70  # the 70x70 PatchGAN
    for size, downs in ((64, 6), (128, 7)):
        u = UnetGenerator(3, 3, downs, ngf=8)
        assert u(torch.zeros(1, 3, size, size)).shape == (1, 3, size, size)
    # official unet_256 with ngf 64: 54.4M parameters
    assert count_params(UnetGenerator(3, 3, 8, 64)) == 54_413_955
    assert ResnetGenerator(3, 3, 8, n_blocks=2)(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    # official resnet_9blocks with ngf 64: 11.378M parameters; basic D (n_layers 3, instance norm): 2.765M
    assert count_params(ResnetGenerator(3, 3, 64, n_blocks=9)) == 11_378_179
    assert count_params(NLayerDiscriminator(3, 64, 3, "instance")) == 2_764_737
    assert NLayerDiscriminator(6, 8)(torch.zeros(1, 6, 64, 64)).shape == (1, 1, 6, 6)


def test_class_loss_masks_unknown_labels() -> None:
    sizes = [3, 2]
    logits = torch.randn(4, 5, requires_grad=True)
    labels = torch.tensor([[0, -1], [2, 1], [-1, 0], [1, -1]])
    loss = classification_loss(logits, labels, sizes)
    expected = (torch.nn.functional.cross_entropy(logits[[0, 1, 3], :3], torch.tensor([0, 2, 1]))
                + torch.nn.functional.cross_entropy(logits[[1, 2], 3:], torch.tensor([1, 0])))
    assert torch.allclose(loss, expected)
    loss.backward()
    assert torch.all(logits.grad[2, :3] == 0) and torch.all(logits.grad[0, 3:] == 0)
    assert torch.all(logits.grad[1] != 0)
    # a group unknown for the whole batch contributes nothing (no NaN)
    assert torch.isfinite(classification_loss(logits, torch.full((4, 2), -1), sizes))
    assert predict_labels(torch.tensor([[0.0, 5.0, 1.0, 2.0, -1.0]]), sizes).tolist() == [[1, 0]]
