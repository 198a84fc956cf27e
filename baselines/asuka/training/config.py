"""Training configurations of the ASUKA-SD stages: one dataclass per stage, named presets as data.

A run's configuration is built in this order, each step overriding the previous one:
  1. the dataclass defaults = the paper's values (Sec. 3.1-3.2 and 5) where the paper states them;
  2. the named presets, left to right (`--preset tiny,cross4`; a config file's "preset" key comes first);
  3. the fields of a config file (JSON or YAML, `--config`);
  4. `--set FIELD=VALUE` pairs (the text read as the field's type, see below).
Unknown presets and unknown fields are errors naming them. The resolved configuration is recorded in the run.

Every value is checked against its field's type when it is given (preset, file or --set) and again when a config
is built (`__post_init__`), one rule for all (`coerce_field`); a wrong one is a one-line ValueError naming the
field, the expected type and where the value came from, before any work:
  - bool: true/false, or (case-insensitive) the strings "true"/"false", "yes"/"no", "on"/"off" (YAML 1.1
    spellings). Anything else, numbers 0/1 included, is refused ("no" is never taken as true).
  - int: an integer, a float with no fractional part (1e4), or a string holding one; 10.7 is refused.
  - float: a finite number, or a string holding one (YAML 1.1 reads `1e-4` as a string); "fast", NaN refused.
  - str: a string. tuple[...]: a list of that many items (or its JSON text), each checked as above.

Values the paper does not state are marked "(ours)" below; they are choices made once, recorded in every run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULES = ("constant", "cosine")
MASK_SOURCES = ("sampler", "folder")


@dataclass(frozen=True)
class TrainConfig:
    """Fields every stage shares.

    batch_size: images per optimizer step over all processes; micro_batch_size: images per process per forward.
    Gradient accumulation = batch_size / (micro_batch_size * processes), which must be a whole number.
    resolution: training crop side (pixels); crop_scale: the shorter side is resized to resolution * U(crop_scale)
    before a random square crop (ours); hflip: random horizontal flip (ours).
    mask_source: "sampler" (the Sec. 3.1 mixture, `asuka_training_mask`) or "folder" (a mask folder or zip, e.g. the
    released ASUKA training masks, given with --masks). synthetic_objects: size of the synthetic object-shape bank
    used when no COCO annotations are given (0: no object basis).
    checkpoint_every: optimizer steps between `accelerator.save_state` checkpoints; keep_checkpoints: how many stay.
    """

    stage: ClassVar[str] = ""
    steps: int = 10_000
    batch_size: int = 64
    micro_batch_size: int = 8
    lr: float = 1e-4
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    mixed_precision: str = "no"
    seed: int = 0
    resolution: int = 512
    crop_scale: tuple[float, float] = (1.0, 1.25)
    hflip: bool = True
    mask_source: str = "sampler"
    synthetic_objects: int = 256
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 10
    num_workers: int = 4

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            object.__setattr__(self, spec.name, coerce_field(type(self), spec.name, getattr(self, spec.name)))

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        positive = ("steps", "batch_size", "micro_batch_size", "resolution", "checkpoint_every", "keep_checkpoints",
                    "log_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"config field {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"config field lr must be > 0, got {self.lr}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"config field mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"config field lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.mask_source not in MASK_SOURCES:
            raise ValueError(f"config field mask_source must be one of {MASK_SOURCES}, got {self.mask_source!r}")
        lo, hi = self.crop_scale
        if not 1.0 <= lo <= hi:
            raise ValueError(f"config field crop_scale must satisfy 1 <= lo <= hi, got {self.crop_scale}")
        if self.num_workers < 0 or self.synthetic_objects < 0 or self.lr_warmup_steps < 0:
            raise ValueError("config fields num_workers, synthetic_objects and lr_warmup_steps must be >= 0")

    def record(self) -> dict[str, Any]:
        """JSON-able dict of every field (tuples as lists), with the stage name."""
        return {"stage": self.stage, **json.loads(json.dumps(dataclasses.asdict(self)))}


@dataclass(frozen=True)
class MAETrainConfig(TrainConfig):
    """MAE fine-tuning (Sec. 3.1). mae_arch: `baselines.asuka.mae.MAE_PRESETS` name; mae_weights: "pretrained"
    (MAE-FAR file: the fine-tune parameters start fresh) or "finetuned" (continue e.g. the released mae_300.pth);
    init: "file" (needs --mae) or "random" (tiny tests). mask_token_ratio: share of tokens masked (Sec. 3.1: 75%).
    Paper: 256 x 256 inputs, batch 1024. Not stated (ours): lr = MAE's base-lr rule 1.5e-4 * 1024 / 256, AdamW
    betas (0.9, 0.95) and weight decay 0.05 as MAE, cosine decay, 20K steps."""

    stage: ClassVar[str] = "mae"
    steps: int = 20_000
    batch_size: int = 1024
    micro_batch_size: int = 64
    lr: float = 6e-4
    lr_schedule: str = "cosine"
    lr_warmup_steps: int = 500
    weight_decay: float = 0.05
    adam_betas: tuple[float, float] = (0.9, 0.95)
    resolution: int = 256
    mae_arch: str = "mae_vit_base_patch16"
    mae_weights: str = "pretrained"
    init: str = "file"
    mask_token_ratio: float = 0.75

    def validate(self) -> None:
        super().validate()
        _check_mae_fields(self)
        if not 0.0 < self.mask_token_ratio <= 1.0:
            raise ValueError(f"config field mask_token_ratio must be in (0, 1], got {self.mask_token_ratio}")
        from baselines.asuka.mae import MAE_PRESETS

        if self.resolution != MAE_PRESETS[self.mae_arch].img_size:
            raise ValueError(f"config field resolution ({self.resolution}) must equal the MAE input size "
                             f"{MAE_PRESETS[self.mae_arch].img_size} of mae_arch {self.mae_arch!r}")


@dataclass(frozen=True)
class SDTrainConfig(TrainConfig):
    """Fields of the stages that train a condition of the frozen SD 1.5 inpainting UNet (alignment, prompt).

    sd_model: hub id or diffusers folder of SD 1.5 inpainting, or "tiny" (random tiny UNet/VAE, CPU tests).
    gradient_checkpointing: recompute UNet activations in the backward pass (memory for time).
    Paper: AdamW lr 5e-2, 512 x 512. Not stated (ours): batch 64, 20K steps, no weight decay, constant lr."""

    steps: int = 20_000
    batch_size: int = 64
    micro_batch_size: int = 8
    lr: float = 5e-2
    weight_decay: float = 0.0
    resolution: int = 512
    sd_model: str = "stable-diffusion-v1-5/stable-diffusion-inpainting"
    gradient_checkpointing: bool = False

    def validate(self) -> None:
        super().validate()
        if self.resolution % 8:
            raise ValueError(f"config field resolution must be a multiple of 8 (the SD VAE), got {self.resolution}")


@dataclass(frozen=True)
class AlignmentTrainConfig(SDTrainConfig):
    """Alignment module (Sec. 3.2, 5). variant: `ALIGNMENT_PRESETS` name (Table 2b: linear, attn, cross4, self4);
    p: probability that the MAE sees the unmasked image (the reconstruction prior), p_start -> p_end linearly over
    the first p_decay_steps steps, then held (paper: 100% -> 10% over 2K steps). mae_arch / mae_weights / init as
    for the MAE stage: "finetuned" expects a fine-tuned MAE (run folder or file), "pretrained" the MAE-FAR file
    (Table 2a)."""

    stage: ClassVar[str] = "alignment"
    variant: str = "self4"
    p_start: float = 1.0
    p_end: float = 0.1
    p_decay_steps: int = 2000
    mae_arch: str = "mae_vit_base_patch16"
    mae_weights: str = "finetuned"
    init: str = "file"

    def validate(self) -> None:
        super().validate()
        _check_mae_fields(self)
        from baselines.asuka.alignment import ALIGNMENT_PRESETS

        if self.variant not in ALIGNMENT_PRESETS:
            raise ValueError(f"config field variant must be one of {sorted(ALIGNMENT_PRESETS)}, got {self.variant!r}")
        if not (0.0 <= self.p_end <= 1.0 and 0.0 <= self.p_start <= 1.0) or self.p_decay_steps < 1:
            raise ValueError("config fields p_start, p_end must be in [0, 1] and p_decay_steps >= 1")


@dataclass(frozen=True)
class PromptTrainConfig(SDTrainConfig):
    """Learned prompt (the SD-prompt baseline, "same training setting as ASUKA"): num_tokens embeddings of the
    UNet's cross-attention width. init: "empty" (the text encoder's "" embedding, ours) or "random" (N(0, 1))."""

    stage: ClassVar[str] = "prompt"
    num_tokens: int = 77
    init: str = "empty"

    def validate(self) -> None:
        super().validate()
        if self.num_tokens < 1:
            raise ValueError(f"config field num_tokens must be >= 1, got {self.num_tokens}")
        if self.init not in ("empty", "random"):
            raise ValueError(f"config field init must be 'empty' or 'random', got {self.init!r}")


@dataclass(frozen=True)
class DecoderTrainConfig(SDTrainConfig):
    """Inpainting-specialised decoder (Sec. 3.3, 5): initialised from the SD VAE decoder (or --decoder-init, an
    asymmetric-decoder file, the "+ cond." starting point), trained to decode a latent of the image into the clean
    image given [image * (1 - mask), mask].

    arch: "asuka" (masked image + mask condition) or "cond" (diffusers' asymmetric decoder, masked image only).
    color_jitter: ColorJitter(brightness, contrast, saturation, hue) = jitter on the input side only (the latent is
    encoded from the jittered image; target and condition stay clean). latent_aug_share: share of the images whose
    input latent is the offline one-step estimate of Eq. (1) (`misato train decoder-latents`), t ~ U[latent_t_range).
    Losses (the KL-VAE decoder recipe of LDM): l1_weight * L1 + lpips_weight * LPIPS(lpips_net), and after
    disc_start steps a PatchGAN discriminator (hinge loss, adaptive weight, disc_weight). Paper: 50K steps, batch 40,
    lr 8e-5 cosine, jitter (0.15, 0.2, 0.1, 0.03), latent augmentation on 50%, t in [500, 1000), 256 x 256.
    Not stated (ours, LDM's kl-f8 values): Adam betas (0.5, 0.9), LPIPS-VGG weight 1, disc_weight 0.5, disc_start
    50001 (LDM's: the discriminator never starts within 50K steps), 3 discriminator layers; micro-batch 4.
    """

    stage: ClassVar[str] = "decoder"
    steps: int = 50_000
    batch_size: int = 40
    micro_batch_size: int = 4
    lr: float = 8e-5
    lr_schedule: str = "cosine"
    adam_betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    resolution: int = 256
    arch: str = "asuka"
    init: str = "vae"
    color_jitter: bool = True
    jitter: tuple[float, float, float, float] = (0.15, 0.2, 0.1, 0.03)
    latent_aug_share: float = 0.5
    latent_t_range: tuple[int, int] = (500, 1000)
    l1_weight: float = 1.0
    lpips_weight: float = 1.0
    lpips_net: str = "vgg"
    disc_weight: float = 0.5
    disc_start: int = 50_001
    disc_layers: int = 3

    def validate(self) -> None:
        super().validate()
        if self.arch not in ("asuka", "cond"):
            raise ValueError(f"config field arch must be 'asuka' or 'cond', got {self.arch!r}")
        if self.init not in ("vae", "file"):
            raise ValueError(f"config field init must be 'vae' or 'file', got {self.init!r}")
        if not 0.0 <= self.latent_aug_share <= 1.0:
            raise ValueError(f"config field latent_aug_share must be in [0, 1], got {self.latent_aug_share}")
        lo, hi = self.latent_t_range
        if not 0 <= lo < hi:
            raise ValueError(f"config field latent_t_range must satisfy 0 <= lo < hi, got {self.latent_t_range}")
        if self.lpips_net not in ("vgg", "alex"):
            raise ValueError(f"config field lpips_net must be 'vgg' or 'alex', got {self.lpips_net!r}")
        if min(self.l1_weight, self.lpips_weight, self.disc_weight) < 0 or self.disc_layers < 1:
            raise ValueError("config fields l1_weight, lpips_weight, disc_weight must be >= 0, disc_layers >= 1")


def _check_mae_fields(config: Any) -> None:
    from baselines.asuka.mae import MAE_PRESETS

    if config.mae_arch not in MAE_PRESETS:
        raise ValueError(f"config field mae_arch must be one of {sorted(MAE_PRESETS)}, got {config.mae_arch!r}")
    if config.mae_weights not in ("pretrained", "finetuned"):
        raise ValueError(f"config field mae_weights must be 'pretrained' or 'finetuned', got {config.mae_weights!r}")
    if config.init not in ("file", "random"):
        raise ValueError(f"config field init must be 'file' or 'random', got {config.init!r}")


# Tiny sizes for CPU: seconds per stage, no weight file. Shared by the three stages.
_TINY: dict[str, Any] = {"steps": 30, "batch_size": 4, "micro_batch_size": 2, "lr_warmup_steps": 0,
                         "checkpoint_every": 10, "log_every": 1, "num_workers": 0, "synthetic_objects": 16}

CONFIGS: dict[str, type[TrainConfig]] = {
    c.stage: c for c in (MAETrainConfig, AlignmentTrainConfig, PromptTrainConfig, DecoderTrainConfig)}

# stage -> preset name -> field overrides. "paper" is the defaults.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "mae": {
        "paper": {},
        "tiny": {**_TINY, "resolution": 32, "mae_arch": "tiny", "init": "random", "lr": 1e-3},
    },
    "alignment": {
        "paper": {},
        **{variant: {"variant": variant} for variant in ("linear", "attn", "cross4", "self4")},
        "pretrained-mae": {"mae_weights": "pretrained"},  # Table 2(a): the MAE-FAR MAE, not fine-tuned
        "tiny": {**_TINY, "resolution": 32, "sd_model": "tiny", "mae_arch": "tiny", "init": "random", "lr": 1e-2},
    },
    "prompt": {
        "paper": {},
        "tiny": {**_TINY, "resolution": 32, "sd_model": "tiny", "init": "random", "num_tokens": 8, "lr": 1e-2},
    },
    "decoder": {
        "paper": {},
        # Table 2(d): "+ cond." (no augmentation), "+ color" (colour only), ours (colour + latent). "VAE" is the
        # SD decoder untrained: `--option decoder=vae` of asuka-sd, nothing to train.
        "cond": {"color_jitter": False, "latent_aug_share": 0.0},
        "color": {"color_jitter": True, "latent_aug_share": 0.0},
        "asuka": {"color_jitter": True, "latent_aug_share": 0.5},
        "tiny": {**_TINY, "resolution": 32, "sd_model": "tiny", "lpips_weight": 0.0, "disc_start": 2, "lr": 1e-3},
    },
}


_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


@functools.cache
def field_types(cls: type[TrainConfig]) -> dict[str, Any]:
    """{field name: its annotated type} of a config class (ClassVars excluded)."""
    hints = typing.get_type_hints(cls)
    return {spec.name: hints[spec.name] for spec in dataclasses.fields(cls)}


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return f"a list of {len(typing.get_args(kind))} values ({', '.join(_type_name(a) for a in typing.get_args(kind))})"
    return {bool: "a boolean (true/false, yes/no, on/off)", int: "an integer", float: "a number",
            str: "a string"}[kind]


def _coerce(value: Any, kind: Any) -> Any:
    """`value` as `kind` (bool, int, float, str or a fixed-length tuple of them); raises TypeError when it is not one."""
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise TypeError from None
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise TypeError
        return tuple(_coerce(item, arg) for item, arg in zip(value, args))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise TypeError
    if kind is str:
        if isinstance(value, str):
            return value
        raise TypeError
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise TypeError from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise TypeError
        return int(value)
    return float(value)


def coerce_field(cls: type[TrainConfig], name: str, value: Any, source: str = "") -> Any:
    """`value` checked and converted to the type of field `name` of `cls` (the rules in the module docstring).

    Raises ValueError "SOURCE: config field NAME expects TYPE, got VALUE" (one line) when it is not of that type.
    """
    kind = field_types(cls)[name]
    try:
        return _coerce(value, kind)
    except TypeError:
        where = f"{source}: " if source else ""
        raise ValueError(f"{where}{cls.stage} config field {name} expects {_type_name(kind)}, got {value!r}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON (.json) or YAML (.yaml/.yml) mapping of field -> value, optionally with "preset"."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}); YAML files need the .yaml suffix") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def build_config(stage: str, presets: list[str] | tuple[str, ...] = (), config_file: str | Path | None = None,
                 sets: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The resolved, validated configuration of `stage` (see the module docstring for the order)."""
    if stage not in CONFIGS:
        raise ValueError(f"unknown training stage {stage!r}; known: {sorted(CONFIGS)}")
    cls = CONFIGS[stage]
    names = {f.name for f in dataclasses.fields(cls)}
    file_fields = read_config_file(config_file) if config_file else {}
    file_presets = file_fields.pop("preset", [])
    file_presets = [file_presets] if isinstance(file_presets, str) else list(file_presets)
    values: dict[str, Any] = {}
    for name in [*file_presets, *presets]:
        for part in (p.strip() for p in name.split(",") if p.strip()):
            if part not in PRESETS[stage]:
                raise ValueError(f"unknown {stage} preset {part!r}; known: {sorted(PRESETS[stage])}")
            values.update({key: coerce_field(cls, key, value, f"preset {part}")
                           for key, value in PRESETS[stage][part].items()})
    source = f"config file {config_file}" if config_file else "config"
    for key, value in file_fields.items():
        if key not in names:
            raise ValueError(f"{source}: unknown {stage} config field {key!r}; known: {sorted(names)}")
        values[key] = coerce_field(cls, key, value, source)
    for pair in sets:
        key, sep, text = pair.partition("=")
        if not sep or key not in names:
            raise ValueError(f"--set {pair!r}: expected FIELD=VALUE with FIELD one of {sorted(names)}")
        values[key] = coerce_field(cls, key, _unquote(text), f"--set {pair}")
    config = cls(**values)
    config.validate()
    return config


def _unquote(text: str) -> str:
    """A --set value as text: a JSON string literal ('"no"') unquoted, anything else as typed."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def preset_names(stage: str) -> list[str]:
    return sorted(PRESETS[stage])


__all__ = ["TrainConfig", "MAETrainConfig", "AlignmentTrainConfig", "PromptTrainConfig", "DecoderTrainConfig",
           "PRESETS", "CONFIGS",
           "build_config", "read_config_file", "preset_names", "coerce_field", "field_types"]
