"""Training configuration as dataclasses, with defaults from the official implementations.

A run's full configuration is one :class:`Config`; it is saved into every checkpoint and
``RUN_DIR/config.json``. A ``--config FILE`` (JSON or YAML) overrides any field by section::

    {"train": {"steps": 4000, "batch_size": 16}, "stargan": {"conv_dim": 32}}

and command-line flags override the file. Unknown sections or fields are errors naming the
allowed ones, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODELS = ("maskedit", "stargan", "pix2pix", "cyclegan", "munit", "fader", "cutout")


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


@dataclass
class TrainOptions:
    """Shared by every model: how long, how big, how often to log and checkpoint."""

    model: str = "maskedit"
    image_size: int = 128
    batch_size: int = 16  # StarGAN official; pix2pix/CycleGAN official use 1 (see defaults_for)
    steps: int = 200_000  # StarGAN official num_iters
    decay_start: float = 0.5  # linear LR decay to 0 over the last half (official schedules)
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0: torch's default. 1 is fastest on an oversubscribed CPU
    flip: bool = True  # random horizontal flip (official augmentation)
    log_every: int = 10
    sample_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    n_samples: int = 8  # rows of the sample grid
    groups: list[str] | None = None  # StarGAN: schema groups to learn (None: all)
    # How the catalog is loaded (catalog.loading, the rule every command shares): this
    # schema.json, else a schema inferred from these columns, else the catalog's own, else the
    # thesis vocabulary if the catalog fits it, else one inferred from its attribute columns.
    schema: str | None = None
    infer_schema: list[str] | None = None
    min_count: int = 5
    max_skipped: float = 0.05
    unknown_values: str | None = None
    max_items: int | None = None  # use only the first N catalog items (smoke runs)
    # Share of catalog items held out of training by a hash of their id (the same split as
    # ``indexing train-encoder --holdout``), so an evaluation can use products never trained on.
    holdout: float = 0.0
    time_budget_min: float = 0.0  # stop after this many minutes of training (0: no limit)
    pairs: str | None = None  # pix2pix (and CycleGAN model domain): pairs file
    domain_a: str = "product:pattern=unicolors"  # CycleGAN and MUNIT domains, see datasets.parse_domain
    domain_b: str = "product:pattern=stripes"


@dataclass
class SpeedOptions:
    """The speed work, each switchable so the benchmark can compare on and off in one run."""

    channels_last: bool = True
    # StarGAN: one D pass for real+fake, G under no_grad in the D step, the gradient penalty
    # through the critic head only, no D weight gradients in the G step.
    lean_steps: bool = True
    amp: str = "auto"  # "auto": bf16 autocast on CUDA with bf16 support, off on CPU; "bf16", "off"
    cache: bool = True  # pre-decode the catalog to a uint8 tensor when it fits cache_max_mb
    cache_max_mb: int = 2048
    num_workers: int = -1  # DataLoader workers when not cached; -1: min(4, cpu count)
    pin_memory: bool = True
    cudnn_benchmark: bool = True

    @classmethod
    def off(cls) -> SpeedOptions:
        """The official code's behaviour: for the benchmark's baseline."""
        return cls(channels_last=False, lean_steps=False, amp="off", cache=False, num_workers=0,
                   pin_memory=False, cudnn_benchmark=False)


@dataclass
class StarGANOptions:
    g_conv_dim: int = 64
    d_conv_dim: int = 64
    g_repeat_num: int = 6
    d_repeat_num: int | None = None  # None: log2(image_size) - 1 (6 at 128 px, as official)
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_gp: float = 10.0
    n_critic: int = 5
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # Target labels: each group changes with this probability to a uniformly drawn value
    # (uniform so rare values are learned too); unchanged groups keep the input's label.
    change_prob: float = 0.5


@dataclass
class MaskEditOptions:
    """The masked-residual editor (:mod:`generators.models.maskedit`)."""

    pred_size: int = 32  # the U-Net's working size; its maps are applied at the photo's own size
    conv_dim: int = 16  # channels of the U-Net's first level, doubled per level up to max_dim
    max_dim: int = 128
    levels: int = 2  # halvings: 32 px -> 8 px at the bottom
    res_blocks: int = 1
    upsample: str = "guided"  # guided (edges from the full-resolution photo) or bilinear
    mask_prior: float = 3.0  # the mask's logit starts at +-this on the garment / the background
    flow: bool = True  # the U-Net predicts a displacement field (used only by edits of flow_groups)
    # only edits naming one of these groups warp the photo. Empty by default: the silhouette step
    # makes the shape edits, and on the demo the learned warp saturated (tanh) into a global zoom
    # after ~800 CPU steps that no loss undid (L1 to the truth 0.14-0.16 against 0.02-0.03 for the
    # silhouette step alone, docs/generators_eval.md)
    flow_groups: list[str] = field(default_factory=list)
    templates: bool = True  # a learned map per target value added to the U-Net's maps (shape edits)
    # colour edits first move the garment's dominant colour to the value's (generators/models/palette.py);
    # "" switches it off. The U-Net learns its masked change on top of that.
    palette_group: str = "color"
    palette_sigma: float = 30.0  # LAB distance that still moves with the dominant colour
    # pick each value's colour among its photos' colour clusters by what the judges' features retrieve
    # (generators/models/palette.py: tune_palette); off: the median dominant colour
    palette_tune: bool = True
    # edits to this group's plainest value (the one whose training photos have the least print) first
    # paint the print over in the garment's dominant colour (generators/models/palette.py); "" switches it off
    plain_group: str = "pattern"
    # shape edits of these groups first move the garment's outline to the target value's mean
    # silhouette (generators/models/silhouette.py); groups the catalog lacks are skipped, [] switches it off
    silhouette_groups: list[str] = field(default_factory=lambda: ["length", "sleeve_length", "fit"])
    # of those, the groups whose edits stretch or squeeze the garment below its waist to move the hem
    # (generators/models/silhouette.py hem_stretch) instead of painting the template difference
    stretch_groups: list[str] = field(default_factory=lambda: ["length"])
    # garment masks kept per (anchor, value) of those groups: a sleeve grows in the shape of the nearest
    # ones and a cut one goes whole (generators/models/silhouette.py); 0: the mean templates alone
    silhouette_exemplars: int = 24
    # the groups edited with those exemplars (fit is not: its exemplars drew detached wings and
    # jagged cuts); the others paint the template difference
    silhouette_exemplar_groups: list[str] = field(default_factory=lambda: ["sleeve_length"])
    # edits of this group get the target value's print from a catalog exemplar (and an edit to the plain
    # value paints the print over), scaled by the strength (generators/models/prints.py); it replaces
    # the plain_group step where both are on; "" switches it off
    print_group: str = "pattern"
    # draw the exemplar print in its own colours over the fabric (False: the older offsets added to
    # every garment pixel, with which the committed maskedit demo was trained)
    print_paint: bool = False
    # edits of this group first move the neckline opening to where the k training photos of the
    # target value with the nearest outlines have theirs (generators/models/neckline.py); "" switches it off
    neckline_group: str = "neckline"
    neckline_exemplars: int = 24  # training photos kept per (anchor value, neckline value)
    neckline_k: int = 5
    neckline_clutter: float = 0.06  # share of dark print in the garment above which the step abstains
    d_width: int = 64  # channels of each projected-discriminator head
    anchor_group: str = "category"  # not edited by default; targets are values seen with it
    judge_groups: list[str] | None = None  # groups the frozen heads read (None: the whole schema)
    judge_steps: int = 300  # AdamW steps fitting the frozen heads before GAN training
    translate: bool = True  # DiffAugment translation before the judges
    max_edit_groups: int = 2  # a training edit names 1 group, or this many with multi_edit_prob
    multi_edit_prob: float = 0.25
    warmup: float = 0.1  # share of the steps over which every loss but the judges' ramps up from 0
    cycle_share: float = 0.5  # share of each batch edited back (cycle loss); 0 switches it off
    identity_share: float = 0.25  # share asked for the values it has (identity loss)
    lambda_feat: float = 10.0  # MSE to the feature-interpolation target (prototype difference)
    proto_min: int = 5  # photos a per-anchor prototype needs; else the global one is used
    # the feature target leads; the judges' CE, the critic and the cycle only steer (higher values of
    # these four collapsed the mask or slowed colour learning in the demo runs, docs/generators.md)
    lambda_adv: float = 0.25
    lambda_cls: float = 0.2
    lambda_keep: float = 0.5
    lambda_cyc: float = 1.0
    lambda_id: float = 2.0
    # L1 from the edit to the fixed steps' result, on photos a fixed step changed: the U-Net should
    # only refine a palette, print or silhouette edit. Measured (docs/generators_eval.md): it did not
    # change the myntra result (0.276 against 0.277 without) nor stop the demo U-Net diverging
    lambda_fixed: float = 10.0
    lambda_mask: float = 0.05  # L1 on the mask outside the garment
    lambda_tv: float = 0.1
    g_lr: float = 1e-3
    d_lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.99


@dataclass
class Pix2PixOptions:
    # product->model (the thesis) or model->product (a photo of a person wearing a garment ->
    # the product shot on white); the pairs file is read the other way round for the latter.
    direction: str = "product->model"
    ngf: int = 64
    ndf: int = 64
    n_layers_d: int = 3  # 70x70 PatchGAN
    norm: str = "batch"
    use_dropout: bool = True
    num_downs: int | None = None  # None: log2(image_size) (unet_256 has 8)
    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0
    lr: float = 2e-4
    beta1: float = 0.5
    init_gain: float = 0.02
    # "patch": the official 70x70 PatchGAN on (input, output). "projected": small critics on
    # frozen ImageNet Lite0 feature maps of the output (generators.models.features), hinge
    # loss, DiffAugment shifts: useful gradients from the first step on a CPU budget.
    d_kind: str = "patch"
    d_width: int = 64  # channels of each projected critic head
    # MSE between frozen Lite0 pooled features (+ colour histogram) of the output and of the
    # true photo: pulls the translation to where the true photo sits in an ImageNet feature
    # space, which is what a search with it needs (0: off).
    lambda_feat: float = 0.0


PIX2PIX_DIRECTIONS = ("product->model", "model->product")
PIX2PIX_D_KINDS = ("patch", "projected")


@dataclass
class CycleGANOptions:
    ngf: int = 64
    ndf: int = 64
    n_blocks: int | None = None  # None: 9 at >= 256 px, else 6 (official resnet_9blocks / 6blocks)
    n_layers_d: int = 3
    norm: str = "instance"
    use_dropout: bool = False
    gan_mode: str = "lsgan"
    lambda_cyc: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    lr: float = 2e-4
    beta1: float = 0.5
    init_gain: float = 0.02


@dataclass
class MunitOptions:
    """MUNIT (:mod:`generators.models.munit`): content and style codes, AdaIN decoder, per domain pair.

    Huang et al.'s losses and weights (image reconstruction 10, content and style
    reconstruction 1, optional cycle); the discriminator is the projected one on frozen
    Lite0 features, with a frozen domain head as a classification signal.
    """

    dim: int = 16  # channels of the first conv; doubled per downsampling
    n_down: int = 2  # content: image_size / 2**n_down (16 x 16 at 64 px)
    n_res: int = 2  # residual blocks of the content encoder and of the decoder (AdaIN)
    up_kernel: int = 5  # the decoder's upsampling convs (the paper's 5; 3 costs a third on a CPU)
    style_dim: int = 8  # the paper's style code size
    mlp_dim: int = 64  # the MLP from the style code to the AdaIN parameters
    masked: str = "auto"  # masked residual output: auto (when both domains are product photos), on, off
    mask_prior: float = 3.0  # the mask's logit starts at +-this on the garment / the background
    d_width: int = 32  # channels of each projected-discriminator head
    translate: bool = True  # DiffAugment translation before the judges
    lambda_x: float = 10.0  # within-domain image reconstruction
    lambda_c: float = 1.0  # cross-domain content reconstruction
    lambda_s: float = 1.0  # cross-domain style reconstruction
    lambda_cyc: float = 0.0  # explicit cycle (the paper's option; 0 as for most of its datasets)
    lambda_adv: float = 1.0
    lambda_cls: float = 1.0  # frozen domain head: a translation must read as the target domain
    lambda_mask: float = 0.05  # L1 on the mask outside the garment
    lambda_ds: float = 1.0  # StarGAN v2's diversity-sensitive loss, decayed linearly to 0 over the run
    judge_steps: int = 200  # AdamW steps fitting the frozen domain head before training
    style_bank: int = 256  # styles of the latest real training photos kept per domain; variants are drawn from them
    diverse_pool: int = 4  # without a bank (older checkpoints): the most spread of this many prior draws per variant
    lr: float = 1e-4  # the paper's Adam settings
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4


@dataclass
class FaderOptions:
    """Fader Networks (:mod:`generators.models.fader`): an attribute-invariant latent and a
    decoder conditioned on continuous attribute values, applied as a residual."""

    dim: int = 16  # channels of the first conv; doubled per downsampling up to max_dim
    max_dim: int = 128
    n_down: int = 3  # latent: image_size / 2**n_down (8 x 8 at 64 px)
    latent_dim: int = 64  # channels of the latent map
    mask_prior: float = 3.0  # the mask's logit starts at +-this on the garment / the background
    d_width: int = 32  # channels of each projected-discriminator head (0: no image discriminator)
    translate: bool = True
    lambda_rec: float = 1.0  # reconstruction (MSE), as in the paper
    lambda_lat: float = 0.05  # the encoder fooling the latent discriminator (ramped up over lat_warmup)
    lat_warmup: float = 0.3  # share of the steps over which lambda_lat ramps from 0
    lambda_cls: float = 0.5  # frozen attribute heads: the flipped decoding must read as the target values
    lambda_adv: float = 0.1  # projected discriminator on the flipped decoding
    lambda_mask: float = 0.05  # L1 on the mask outside the garment
    flip_share: float = 1.0  # share of each batch decoded with changed attributes (for cls/adv)
    slide_share: float = 0.5  # share of those decoded at a random strength in (0, 1), judged against the mix
    # shape groups moved by the masked editor's silhouette step, scaled by the strength (empty: the network alone)
    silhouette_groups: list[str] = field(default_factory=lambda: ["length", "sleeve_length", "fit"])
    # of those, the groups whose edits stretch or squeeze the garment below its waist to move the hem
    # (generators/models/silhouette.py hem_stretch) instead of painting the template difference
    stretch_groups: list[str] = field(default_factory=lambda: ["length"])
    # garment masks kept per (anchor, value) of those groups: a sleeve grows in the shape of the nearest
    # ones and a cut one goes whole (generators/models/silhouette.py); 0: the mean templates alone
    silhouette_exemplars: int = 24
    # the groups edited with those exemplars (fit is not: its exemplars drew detached wings and
    # jagged cuts); the others paint the template difference
    silhouette_exemplar_groups: list[str] = field(default_factory=lambda: ["sleeve_length"])
    # edits of this group first get the target value's print from a catalog exemplar, scaled by the
    # strength (generators/models/prints.py); "" switches it off
    print_group: str = "pattern"
    # each value's exemplar print is the one of this many candidates (nearest the median print
    # energy) that the frozen heads read as that value most at strength 1, less what that reading
    # falls by from strength 0.5 or 0.75 (prints.tune_prints); 1: the median one
    print_tune: int = 8
    # draw the exemplar print in its own colours over the fabric (prints.py; False: the older offsets
    # added to every garment pixel)
    print_paint: bool = True
    # edits of this group first move the garment's dominant colour to the value's (the median of its
    # training photos'), scaled by the strength (generators/models/palette.py); "" switches it off
    palette_group: str = "color"
    lambda_keep: float = 0.5  # frozen heads: the groups an edit does not name must read as before
    judge_steps: int = 300
    lr: float = 2e-4  # the paper's Adam settings
    beta1: float = 0.5
    beta2: float = 0.999
    dis_lr: float = 2e-4


@dataclass
class CutoutOptions:
    """The garment cut-out (:mod:`generators.models.cutout`): model photo -> product photo, and
    the dresser for product photo -> model photo."""

    border: int = 6  # columns at each side of the photo that sample the backdrop, per row
    background_delta: float = 10.0  # RGB difference from the row's backdrop (blurred) that is still backdrop
    skin_delta: float = 14.0  # LAB distance from the face's colour (or its shade) below which a pixel is skin
    skin_shade: float = 0.78  # the shaded skin's RGB over the lit skin's
    min_part: float = 0.05  # outfit parts smaller than this share of the largest are specks, dropped
    head_margin: float = 0.12  # the outfit starts this share of the torso above the shoulders
    waist_margin: float = 0.25  # "upper" ends, "lower" starts this share of the torso beyond the hips
    frame: float = 1.08  # a product shot's square side over the garment's longer side
    feature_size: int = 128  # cut-outs are judged by frozen Lite0 features at this size
    pose_models: str = "models/pose"  # the TFLite pose models (make pose-models)
    dress_k: int = 9  # product -> model: a product is placed like this many nearest training products (by outline)
    dress_zoom: float = 1.3  # product -> model: the output frames the garment, this times its box (0: full body)
    mannequin_size: int = 256  # product -> model: the mannequins' (and the output's) side
    lr: float = 0.05  # the region picker's Adam
    weight_decay: float = 1e-3


@dataclass
class Config:
    train: TrainOptions = field(default_factory=TrainOptions)
    speed: SpeedOptions = field(default_factory=SpeedOptions)
    maskedit: MaskEditOptions = field(default_factory=MaskEditOptions)
    stargan: StarGANOptions = field(default_factory=StarGANOptions)
    pix2pix: Pix2PixOptions = field(default_factory=Pix2PixOptions)
    cyclegan: CycleGANOptions = field(default_factory=CycleGANOptions)
    munit: MunitOptions = field(default_factory=MunitOptions)
    fader: FaderOptions = field(default_factory=FaderOptions)
    cutout: CutoutOptions = field(default_factory=CutoutOptions)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        cfg = defaults_for(data.get("train", {}).get("model", "stargan"))  # old checkpoints: StarGAN
        apply_overrides(cfg, data)
        return cfg

    def validate(self) -> None:
        t = self.train
        if t.model not in MODELS:
            raise ConfigError(f"train.model must be one of {', '.join(MODELS)}; got {t.model!r}")
        if t.model in ("maskedit", "munit", "fader"):  # the judges' trunk needs only a multiple of its total stride
            if t.image_size < 32 or t.image_size > 1024 or t.image_size % 32:
                raise ConfigError(f"train.image_size must be a multiple of 32 from 32 to 1024 (96/128/256 usual); "
                                  f"got {t.image_size}")
        elif t.image_size < 32 or t.image_size > 1024 or 2 ** round(math.log2(t.image_size)) != t.image_size:
            raise ConfigError(f"train.image_size must be a power of two from 32 to 1024 (64/128/256 usual); got {t.image_size}")
        for name in ("batch_size", "steps", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(t, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1; got {getattr(t, name)}")
        if not 0.0 <= t.decay_start <= 1.0:
            raise ConfigError(f"train.decay_start must be in [0, 1]; got {t.decay_start}")
        if self.speed.amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"speed.amp must be auto, bf16 or off; got {self.speed.amp!r}")
        if not 0.0 <= t.holdout < 1.0:
            raise ConfigError(f"train.holdout must be in [0, 1); got {t.holdout}")
        m = self.maskedit
        if t.model == "maskedit":
            if m.upsample not in ("guided", "bilinear"):
                raise ConfigError(f"maskedit.upsample must be guided or bilinear; got {m.upsample!r}")
            if m.pred_size > t.image_size or m.pred_size % 2 ** m.levels:
                raise ConfigError(f"maskedit.pred_size must be <= train.image_size ({t.image_size}) and divisible by "
                                  f"2**levels ({2 ** m.levels}); got {m.pred_size}")
            if m.max_edit_groups < 1:
                raise ConfigError(f"maskedit.max_edit_groups must be >= 1; got {m.max_edit_groups}")
        if t.model == "munit":
            mu = self.munit
            if mu.masked not in ("auto", "on", "off"):
                raise ConfigError(f"munit.masked must be auto, on or off; got {mu.masked!r}")
            if mu.style_dim < 1 or mu.dim < 1 or mu.n_down < 1 or mu.diverse_pool < 1:
                raise ConfigError("munit.style_dim, munit.dim, munit.n_down and munit.diverse_pool must be >= 1")
        if t.model == "fader":
            fa = self.fader
            if fa.n_down < 1 or t.image_size % 2 ** fa.n_down:
                raise ConfigError(f"fader.n_down must be >= 1 and 2**n_down must divide train.image_size "
                                  f"({t.image_size}); got {fa.n_down}")
            if not 0.0 <= fa.flip_share <= 1.0:
                raise ConfigError(f"fader.flip_share must be in [0, 1]; got {fa.flip_share}")
        if self.stargan.n_critic < 1:
            raise ConfigError(f"stargan.n_critic must be >= 1; got {self.stargan.n_critic}")
        if t.model == "pix2pix" and self.pix2pix.gan_mode not in ("vanilla", "lsgan"):
            raise ConfigError(f"pix2pix.gan_mode must be vanilla or lsgan; got {self.pix2pix.gan_mode!r}")
        if t.model == "pix2pix" and self.pix2pix.direction not in PIX2PIX_DIRECTIONS:
            raise ConfigError(f"pix2pix.direction must be one of {', '.join(PIX2PIX_DIRECTIONS)}; "
                              f"got {self.pix2pix.direction!r}")
        if t.model == "pix2pix" and self.pix2pix.d_kind not in PIX2PIX_D_KINDS:
            raise ConfigError(f"pix2pix.d_kind must be one of {', '.join(PIX2PIX_D_KINDS)}; got {self.pix2pix.d_kind!r}")
        if t.model == "cyclegan" and self.cyclegan.gan_mode not in ("vanilla", "lsgan"):
            raise ConfigError(f"cyclegan.gan_mode must be vanilla or lsgan; got {self.cyclegan.gan_mode!r}")


def defaults_for(model: str) -> Config:
    """Official defaults per model: pix2pix and CycleGAN train with batch 1, 2e-4, 256 px."""
    if model not in MODELS:
        raise ConfigError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    cfg = Config()
    cfg.train.model = model
    if model == "maskedit":
        cfg.train.steps = 4000
        cfg.train.sample_every = 500
        cfg.train.checkpoint_every = 500
    if model in ("munit", "fader"):
        cfg.train.image_size = 64
        cfg.train.batch_size = 8
        cfg.train.steps = 4000
        cfg.train.sample_every = 500
        cfg.train.checkpoint_every = 500
        if model == "munit":
            cfg.train.domain_b = "product:pattern=floral"
    if model == "cutout":  # the picker trains full-batch on cached features: a few hundred steps
        cfg.train.image_size = 256
        cfg.train.batch_size = 8
        cfg.train.steps = 300
        cfg.train.sample_every = 100
        cfg.train.checkpoint_every = 100
    if model in ("pix2pix", "cyclegan"):
        cfg.train.image_size = 256
        cfg.train.batch_size = 1
        cfg.train.steps = 200_000  # ~ 100 + 100 epochs of a 1k-image dataset at batch 1
    return cfg


def apply_overrides(cfg: Config, data: dict[str, Any], source: str = "config") -> Config:
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be an object of sections {sorted(sections)}")
    for sec, values in data.items():
        if sec not in sections:
            raise ConfigError(f"{source}: unknown section {sec!r}; sections are {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {sec!r} must be an object")
        obj = sections[sec]
        allowed = {f.name: f for f in dataclasses.fields(obj)}
        for key, value in values.items():
            if key not in allowed:
                raise ConfigError(f"{source}: unknown field {sec}.{key}; allowed: {', '.join(allowed)}")
            setattr(obj, key, _coerce(getattr(obj, key), value, f"{sec}.{key}", source))
    return cfg


def _coerce(current: Any, value: Any, name: str, source: str) -> Any:
    if value is None or current is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{source}: {name} must be true or false; got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {name} must be an integer; got {value!r}") from None
    if isinstance(current, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {name} must be a number; got {value!r}") from None
    if isinstance(current, list) and isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pragma: no cover - pyyaml ships with the venv via ray
            raise ConfigError(f"{path}: YAML needs pyyaml; use a .json config instead") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold an object of sections")
    return data


def parse_set(items: list[str]) -> dict[str, dict[str, str]]:
    """``--set section.field=value`` flags as an override dict."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        sec, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set {item!r}: expected section.field=value, e.g. stargan.g_conv_dim=32")
        out.setdefault(sec.strip(), {})[name.strip()] = value.strip()
    return out
