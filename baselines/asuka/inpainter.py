"""`asuka-sd`: ASUKA on Stable Diffusion 1.5 inpainting, behind the inpainter contract.

In: images float32 (B, 3, H, W) RGB in [0, 1], masks float32 (B, 1, H, W) in {0, 1}, 1 = hole, seeds (one per
sample). Out: float32 (B, 3, H, W) in [0, 1], raw (the harness composites). H, W multiples of 8.
See `baselines.asuka.pipeline` for the data flow.

Weights. The SD-1.5 version of ASUKA was never released (asuka-misato issue #5): only the MAE (`asuka-mae`,
shared with ASUKA-FLUX) is public. The SD alignment module (512 -> 768) and the SD conditioned decoder (4 latent
channels, trained from the SD VAE decoder) must be trained and passed as files:
  - `asuka-sd-alignment`: a state dict of `AsukaAlignment` (keys `proj_in.*`, ...) or in the release's
    `nn.Sequential` layout (keys `0.*` .. `5.*`), .pt (weights_only) or .safetensors;
  - `asuka-sd-decoder`: a state dict of `AsukaMaskConditionDecoder` (diffusers keys) or an LDM-style / Lightning
    one (keys `decoder.*`), .pt or .safetensors. Not needed with `decoder="vae"` (plain SD VAE decoding).
Paths come from `weight_paths={key: path}` (CLI `--weight KEY=PATH`), `$MISATO_WEIGHT_<KEY>`, or
`$MISATO_WEIGHTS_DIR/<file name>`; a missing file raises `WeightsNotFoundError` naming the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import torch

from baselines.asuka.trained import AsukaSDFolder
from baselines.base import Inpainter, ResolutionPolicy
from baselines.sd.components import (
    DEFAULT_INPAINT_MODEL,
    DEFAULT_STEPS,
    check_batch,
    dtype_name,
    encode_text,
    generators,
    load_inpaint_pipeline,
    load_tensor_file,
    resolve_dtype,
)

log = logging.getLogger(__name__)

def load_alignment_file(path: str | Path, dim: int, variant: str = "self4", in_dim: int = 512) -> torch.nn.Module:
    """An `AsukaAlignment` (prior in_dim -> dim) from our key layout or the release's `nn.Sequential` layout
    (`asuka_alignment_{clip,t5}.pt`), loaded strictly."""
    from baselines.asuka.alignment import ALIGNMENT_PRESETS, AsukaAlignment
    from baselines.asuka.convert import convert_released_alignment
    from misato.checkpoints import load_checkpoint

    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict")
    if not any(key.startswith("proj_in.") for key in state):
        state = convert_released_alignment(state, depth=ALIGNMENT_PRESETS[variant].depth)
    model = AsukaAlignment(dim=dim, variant=variant, in_dim=in_dim)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


def load_decoder_file(path: str | Path, vae: Any) -> torch.nn.Module:
    """The SD conditioned decoder: `ConditionedLatentDecoder` with the SD VAE's sizes, scaling and
    post_quant_conv, weights from `path` (our diffusers keys, or LDM/Lightning keys `decoder.*`)."""
    from baselines.asuka.convert import ldm_decoder_to_ours
    from misato.checkpoints import load_checkpoint
    from baselines.asuka.decoder import ConditionedLatentDecoder

    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a decoder state dict")
    if any(key.startswith("decoder.") for key in state):
        state = ldm_decoder_to_ours(state)
    first = state.get("condition_encoder.layers.0.weight")
    if first is None:
        raise ValueError(f"{path}: no condition encoder (condition_encoder.layers.0.weight): not a conditioned decoder")
    # the condition encoder reads [masked image, mask] (ASUKA, 4 channels) or the masked image (asymmetric, 3)
    arch = {4: "asuka", 3: "cond"}.get(int(first.shape[1]))
    if arch is None:
        raise ValueError(f"{path}: condition encoder with {first.shape[1]} input channels (expected 3 or 4)")
    decoder = ConditionedLatentDecoder.from_vae(vae, arch, init_from_vae=False)
    decoder.decoder.load_state_dict(state, strict=True)
    return decoder.eval().requires_grad_(False)


class AsukaInpainterBase(Inpainter):
    """What asuka-sd and asuka-flux share: `self.pipeline` does the work; configs record the MAE load report
    and the scheduler. Subclasses build `self.pipeline` and name the wrapped diffusers pipeline."""

    def _wrap(self, pipeline: Any, device: str | torch.device, steps: int, guidance: float,
              condition_weight: float, options: dict[str, Any]) -> None:
        """`from_components` body: record the options and move a ready pipeline to the device."""
        Inpainter.__init__(self, device, model="<components>", steps=int(steps), guidance=float(guidance),
                           condition_weight=float(condition_weight), **options)
        self.pipeline = pipeline.to(self.device)
        self.options["dtype"] = dtype_name(pipeline.dtype)

    def diffusers_pipeline(self) -> Any:
        raise NotImplementedError

    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """images float32 (B, 3, H, W) in [0, 1], masks (B, 1, H, W) 1 = hole -> float32 (B, 3, H, W) in [0, 1]."""
        check_batch(self.name, images, masks, seeds, self.policy.pad_multiple)
        return self.pipeline(
            images, masks, generators(seeds), num_inference_steps=self.options["steps"],
            guidance_scale=self.options["guidance"], condition_weight=self.options["condition_weight"],
        )

    def config(self) -> dict[str, Any]:
        config = super().config()
        report = self.__dict__.get("mae_report")
        if report is not None:
            config["mae_load"] = report.record()
        config["scheduler_class"] = type(self.diffusers_pipeline().scheduler).__name__
        return config


class AsukaSDInpainter(AsukaInpainterBase):
    """ASUKA with SD 1.5 inpainting (`AsukaInpaintPipeline`).

    Options: model (SD inpainting id or folder, or a `misato train alignment` run folder: its SD model, MAE,
    alignment file and variant are used as they are), steps (50), guidance (1.0: no CFG, as the paper),
    condition_weight (1.0; the FLUX release uses 0.5), alignment_variant ("self4"), decoder ("asuka" default;
    "vae": the SD VAE decoder; a Table 2(d) name of the trained folder's decoders: "cond", "color", "asuka"; or a
    `misato train decoder` folder / decoder file),
    null_file (empty-prompt embedding (1, N or 1, 768) for condition_weight != 1 or guidance > 1; default: the
    CLIP "" embedding stretched to 256 tokens), mae_config (MAE preset, default "mae_vit_base_patch16", the
    released size), dtype, weight_paths, allow_download. The alignment width is the UNet's
    cross_attention_dim (768 for SD 1.5) and its input width the MAE decoder's (512).
    """

    name: ClassVar[str] = "asuka-sd"
    version: ClassVar[str] = "1"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy(pad_multiple=8)
    weights: ClassVar[tuple[str, ...]] = ("asuka-mae", "asuka-sd-alignment", "asuka-sd-decoder")

    def __init__(
        self,
        device: str | torch.device = "cpu",
        model: str = DEFAULT_INPAINT_MODEL,
        steps: int = DEFAULT_STEPS,
        guidance: float = 1.0,
        condition_weight: float = 1.0,
        alignment_variant: str = "self4",
        decoder: str = "asuka",
        null_file: str | None = None,
        mae_config: str = "mae_vit_base_patch16",
        dtype: str | None = None,
        **options: Any,
    ) -> None:
        from baselines.asuka.mae import AsukaMAE
        from baselines.asuka.pipeline import AsukaInpaintPipeline, null_from_text_embedding

        super().__init__(device, model=model, steps=int(steps), guidance=float(guidance),
                         condition_weight=float(condition_weight), alignment_variant=alignment_variant,
                         decoder=decoder, null_file=null_file, mae_config=mae_config, **options)
        torch_dtype = resolve_dtype(self.device, dtype)
        self.options["dtype"] = dtype_name(torch_dtype)
        # resolve every file first, so that a missing one fails before anything is loaded
        if AsukaSDFolder.is_one(model):  # a `misato train alignment` folder: its files, as they are
            model, mae_path, alignment_path, alignment_variant, mae_config, decoder_path = self._trained_folder(
                model, decoder)
        else:
            mae_path = self.resolve_weight("asuka-mae").path
            alignment_path = self.resolve_weight("asuka-sd-alignment").path
            decoder_path = self._decoder_path(decoder, {})
        mae, self.mae_report = AsukaMAE.from_released(mae_path, mae_config)
        needs_null = float(condition_weight) != 1.0 or float(guidance) > 1.0
        sd = load_inpaint_pipeline(model, self.device, torch_dtype, text_encoder=needs_null and null_file is None,
                                   allow_download=bool(self.options.get("allow_download")))
        alignment = load_alignment_file(alignment_path, sd.unet.config.cross_attention_dim, alignment_variant,
                                        in_dim=mae.config.decoder_embed_dim)
        conditioned = None if decoder_path is None else load_decoder_file(decoder_path, sd.vae)
        null = None
        if needs_null:
            if null_file is not None:
                tensors = load_tensor_file(null_file, keys=("null_embeds",))
                null = next(iter(tensors.values())) if len(tensors) == 1 else tensors["null_embeds"]
                null = null if null.ndim == 3 else null[None]
            else:
                null = null_from_text_embedding(encode_text(sd, "", self.device), mae.config.num_patches)
        self.pipeline = AsukaInpaintPipeline(sd, mae, alignment, conditioned, null).to(self.device, torch_dtype)

    def _trained_folder(self, folder: str, decoder: str) -> tuple[str, Path, Path, str, Any, Path | None]:
        """Files of a trained ASUKA-SD folder (`baselines.asuka.trained`): (SD model, MAE, alignment, variant,
        MAEConfig, decoder or None). `--weight asuka-mae=` / `asuka-sd-alignment=` / `asuka-sd-decoder=` override
        the folder's files; the folder's MAE must still have the sha256 it was trained with."""
        from baselines.asuka.mae import MAEConfig
        from misato.weights import file_sha256

        trained = AsukaSDFolder.read(folder)
        explicit = self.options.get("weight_paths") or {}
        records = self.__dict__.setdefault("folder_weights", {})

        def record(key: str, path: Path, source: str) -> Path:
            if not path.is_file():
                raise FileNotFoundError(f"asuka-sd {folder}: {key} file {path} is missing")
            records[key] = {"key": key, "path": str(path), "sha256": file_sha256(path), "source": source}
            return path

        def pick(key: str, default: Path) -> Path:
            if key in explicit:
                return record(key, Path(explicit[key]).expanduser(), "explicit")
            return record(key, default, f"trained folder {trained.folder}")

        mae_path = pick("asuka-mae", trained.mae)
        if "asuka-mae" not in explicit and records["asuka-mae"]["sha256"] != trained.mae_sha256:
            raise ValueError(f"asuka-sd {folder}: the MAE {mae_path} changed since the alignment was trained on it "
                             f"(sha256 {records['asuka-mae']['sha256'][:12]}, trained with {trained.mae_sha256[:12]}); "
                             "pass --weight asuka-mae=PATH to use another file knowingly")
        alignment_path = pick("asuka-sd-alignment", trained.alignment)
        decoder_path = self._decoder_path(decoder, trained.decoders, folder)
        if decoder_path is not None:
            record("asuka-sd-decoder", decoder_path, f"decoder={decoder}")
        self.options.update(trained_folder=str(trained.folder), alignment_variant=trained.alignment_variant,
                            mae_config="trained-folder", sd_model=trained.sd_model)
        return (trained.sd_model, mae_path, alignment_path, trained.alignment_variant,
                MAEConfig(**trained.mae_config), decoder_path)

    def _decoder_path(self, decoder: str, named: dict[str, Path], folder: str | None = None) -> Path | None:
        """The decoder file for option `decoder`: "vae" -> None (the SD VAE decoder); a name of the trained
        folder's decoders (Table 2(d): "asuka", "cond", "color", ...); "asuka" without one -> the
        `asuka-sd-decoder` weights; else a decoder run folder or file."""
        from baselines.asuka.trained import find_decoder

        if decoder == "vae":
            return None
        explicit = (self.options.get("weight_paths") or {}).get("asuka-sd-decoder")
        if decoder in named:
            return find_decoder(named[decoder])
        if decoder == "asuka" and (explicit or folder is None):
            return self.resolve_weight("asuka-sd-decoder").path
        if Path(decoder).expanduser().exists():
            return find_decoder(decoder)
        where = f" in {folder} (its decoders: {sorted(named) or 'none'})" if folder else ""
        raise ValueError(f"asuka-sd: decoder {decoder!r} not found{where}; use 'vae' (the SD VAE decoder), a "
                         "trained decoder's name, a `misato train decoder` folder or a decoder file")

    @classmethod
    def from_components(
        cls,
        pipeline: Any,
        device: str | torch.device = "cpu",
        steps: int = 2,
        guidance: float = 1.0,
        condition_weight: float = 1.0,
        **options: Any,
    ) -> "AsukaSDInpainter":
        """Wrap an `AsukaInpaintPipeline` (tests pass one of tiny random modules)."""
        self = cls.__new__(cls)
        self._wrap(pipeline, device, steps, guidance, condition_weight, options)
        self.options.setdefault("decoder", "vae" if pipeline.decoder is None else "asuka")
        return self

    def diffusers_pipeline(self) -> Any:
        return self.pipeline.sd_pipeline

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["weights"] = config["weights"] + list(self.__dict__.get("folder_weights", {}).values())
        return config
