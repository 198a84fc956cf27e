"""Stable Diffusion 1.5 inpainting with three kinds of prompt (the paper's Table 1 SD rows).

- `sd`: prompt "" (unconditional generation);
- `sd-text`: prompt "background" (no captions exist for inpainting);
- `sd-prompt`: learned prompt embeddings read from a file (the paper trains them like ASUKA's alignment).

All three run diffusers' `StableDiffusionInpaintPipeline` with `prompt_embeds` (and `negative_prompt_embeds`
when classifier-free guidance is on). Inputs and outputs follow `baselines.base`: images float32
(B, 3, H, W) RGB in [0, 1], masks float32 (B, 1, H, W) with 1 = hole (the pipeline's own convention, white =
repaint, so nothing is converted); the output is the raw decoded image in [0, 1] (no paste-back).

Seeds: one CPU `torch.Generator` per sample, so a sample's output does not depend on its batch-mates.
Guidance: `guidance` is recorded as given. With identical positive and negative embeddings (prompt "")
classifier-free guidance is the identity, eps_u + g (eps_c - eps_u) = eps_c, so the pipeline is run with
guidance 1.0 (half the UNet work, same result); `effective_guidance` in the config records that.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, ClassVar

import torch

from baselines.base import Inpainter, ResolutionPolicy
from baselines.sd.components import (
    DEFAULT_GUIDANCE,
    DEFAULT_INPAINT_MODEL,
    DEFAULT_STEPS,
    as_prompt_batch,
    check_batch,
    dtype_name,
    encode_text,
    generators,
    load_inpaint_pipeline,
    load_tensor_file,
    resolve_dtype,
)

log = logging.getLogger(__name__)

# Schedulers a run may ask for by name (all deterministic given the initial noise); None keeps the model's own
# (PNDM for SD 1.5 inpainting).
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "dpm-solver++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
}


def set_scheduler(pipe: Any, name: str | None) -> None:
    """Replace `pipe.scheduler` by the named scheduler built from the same config (None: keep it)."""
    if name is None:
        return
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
    import diffusers

    pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(pipe.scheduler.config)


class SDInpainter(Inpainter):
    """SD 1.5 inpainting prompted by `prompt` (class attribute; "" here: unconditional generation).

    Options: model (hub id or local diffusers folder, default stable-diffusion-v1-5/stable-diffusion-inpainting),
    steps (default 50), guidance (default 7.5, diffusers' default), dtype ("fp16" default on GPU, "bf16",
    "fp32"; always fp32 on CPU), scheduler (None = the model's own; see `SCHEDULERS`).
    """

    name: ClassVar[str] = "sd"
    version: ClassVar[str] = "1"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy(pad_multiple=8)  # the SD VAE downsamples by 8
    prompt: ClassVar[str] = ""
    default_guidance: ClassVar[float] = DEFAULT_GUIDANCE

    def __init__(
        self,
        device: str | torch.device = "cpu",
        model: str = DEFAULT_INPAINT_MODEL,
        steps: int = DEFAULT_STEPS,
        guidance: float | None = None,
        dtype: str | None = None,
        scheduler: str | None = None,
        **options: Any,
    ) -> None:
        guidance = self.default_guidance if guidance is None else float(guidance)
        super().__init__(device, model=model, steps=int(steps), guidance=guidance, scheduler=scheduler, **options)
        torch_dtype = resolve_dtype(self.device, dtype)
        self.options["dtype"] = dtype_name(torch_dtype)
        model = self._sd_model(model)
        pipe = load_inpaint_pipeline(model, self.device, torch_dtype, text_encoder=self._needs_text_encoder(),
                                     allow_download=bool(self.options.get("allow_download")))
        set_scheduler(pipe, scheduler)
        self._setup(pipe, *self._embeddings(pipe))

    @classmethod
    def from_components(
        cls,
        pipeline: Any,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        device: str | torch.device = "cpu",
        steps: int = 2,
        guidance: float | None = None,
        **options: Any,
    ) -> "SDInpainter":
        """Wrap an already built `StableDiffusionInpaintPipeline` (tests pass tiny random modules).

        prompt_embeds (1, L, D): used instead of the class's prompt; None encodes the prompt with the
        pipeline's text encoder (or, for `sd-prompt`, reads the option `prompt_file`).
        """
        self = cls.__new__(cls)
        guidance = cls.default_guidance if guidance is None else float(guidance)
        Inpainter.__init__(self, device, model="<components>", steps=int(steps), guidance=guidance, **options)
        pipeline = pipeline.to(self.device)
        pipeline.set_progress_bar_config(disable=True)
        self.options["dtype"] = dtype_name(pipeline.unet.dtype)
        if prompt_embeds is None:
            prompt_embeds, negative_prompt_embeds = self._embeddings(pipeline)
        self._setup(pipeline, prompt_embeds, negative_prompt_embeds)
        return self

    # -- model and prompt embeddings ---------------------------------------------------------------------

    def _sd_model(self, model: str) -> str:
        """The SD inpainting model to load for option `model` (a hub id or a diffusers folder here)."""
        return model

    def _needs_text_encoder(self) -> bool:
        return True

    def _embeddings(self, pipe: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(positive, negative) prompt embeddings, each (1, L, D); negative None when guidance is off."""
        positive = encode_text(pipe, self.prompt, self.device)
        if self.options["guidance"] <= 1.0:
            return positive, None
        negative = positive if self.prompt == "" else encode_text(pipe, "", self.device)
        return positive, negative

    def _setup(self, pipe: Any, positive: torch.Tensor, negative: torch.Tensor | None) -> None:
        """Store the pipeline and the embeddings; decide whether classifier-free guidance really runs."""
        self.pipe = pipe
        dtype = pipe.unet.dtype
        self.prompt_embeds = as_prompt_batch(positive, f"{self.name} prompt").to(self.device, dtype)
        guidance = float(self.options["guidance"])
        if guidance > 1.0:
            if negative is None:
                raise ValueError(f"{self.name}: guidance {guidance} > 1 needs negative prompt embeddings")
            negative = as_prompt_batch(negative, f"{self.name} negative prompt").to(self.device, dtype)
            if negative.shape != self.prompt_embeds.shape:
                raise ValueError(
                    f"{self.name}: positive {tuple(self.prompt_embeds.shape)} and negative "
                    f"{tuple(negative.shape)} prompt embeddings must have the same shape for guidance"
                )
            if torch.equal(negative, self.prompt_embeds):
                guidance, negative = 1.0, None  # CFG with equal embeddings is the identity
        else:
            negative = None
        self.negative_prompt_embeds = negative
        self.effective_guidance = guidance

    # -- contract ------------------------------------------------------------------------------------------

    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """images float32 (B, 3, H, W) in [0, 1], masks (B, 1, H, W) 1 = hole -> float32 (B, 3, H, W) in [0, 1]."""
        check_batch(self.name, images, masks, seeds, self.policy.pad_multiple)
        batch, _, height, width = images.shape
        extra: dict[str, Any] = {}
        if self.negative_prompt_embeds is not None:
            extra["negative_prompt_embeds"] = self.negative_prompt_embeds.expand(batch, -1, -1)
        output = self.pipe(
            prompt_embeds=self.prompt_embeds.expand(batch, -1, -1),
            image=images.to(self.device, torch.float32),
            mask_image=masks.to(self.device, torch.float32),
            height=height,
            width=width,
            num_inference_steps=int(self.options["steps"]),
            guidance_scale=self.effective_guidance,
            generator=generators(seeds),
            output_type="pt",
            **extra,
        ).images
        return output.to(torch.float32)

    def config(self) -> dict[str, Any]:
        config = super().config()
        config.update(
            prompt=self.prompt,
            effective_guidance=self.effective_guidance,
            scheduler_class=type(self.pipe.scheduler).__name__,
            prompt_tokens=int(self.prompt_embeds.shape[1]),
        )
        return config


class SDTextInpainter(SDInpainter):
    """SD 1.5 inpainting prompted by "background" (negative prompt "" when guidance > 1)."""

    name: ClassVar[str] = "sd-text"
    prompt: ClassVar[str] = "background"


class SDPromptInpainter(SDInpainter):
    """SD 1.5 inpainting with learned prompt embeddings from a file.

    Option `model`: as `sd`, or a `misato train prompt` run folder (`baselines.asuka.trained.PromptFolder`): the SD
    model it trained against (its own `sd/` folder for tiny runs) and its `prompt.safetensors` are used.
    Option `prompt_file` (required unless model is a run folder, where it overrides the run's file): a
    `.safetensors` or torch file (read with weights_only=True) holding `prompt_embeds` of shape (L, D) or
    (1, L, D) (a torch file may also be that one tensor) and optionally `negative_prompt_embeds` of the same shape. Default guidance 1.0: the learned prompt is trained like
    ASUKA's alignment, which the paper runs without classifier-free guidance. With guidance > 1 and no
    negative embeddings in the file, the negative is the text encoder's "" embedding.
    """

    name: ClassVar[str] = "sd-prompt"
    prompt: ClassVar[str] = "<learned>"
    extra_options: ClassVar[tuple[str, ...]] = ("prompt_file",)
    default_guidance: ClassVar[float] = 1.0

    def _sd_model(self, model: str) -> str:
        """A folder that is not a diffusers folder (no model_index.json) is read as a prompt training run: its SD
        model, and its prompt file unless `prompt_file` is given; an error names what the folder lacks."""
        folder = Path(model).expanduser()
        if folder.is_dir() and not (folder / "model_index.json").is_file():
            from baselines.asuka.trained import PromptFolder

            run = PromptFolder.read(folder)
            if not self.options.get("prompt_file"):
                self.options["prompt_file"] = str(run.prompt_file)
            self.options.update(trained_folder=str(run.folder), sd_model=run.sd_model)
            model = run.sd_model
        self._file_embeddings  # the prompt file is read (once, cached) and checked before the model is loaded
        return model

    @functools.cached_property
    def _file_embeddings(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(positive, negative or None) from the option `prompt_file`, read once (the model choice, the text
        encoder decision and the embeddings all need it)."""
        path = self.options.get("prompt_file")
        if not path:
            raise ValueError("sd-prompt needs the option prompt_file=<.safetensors or .pt with prompt_embeds>, or "
                             "model=<a `misato train prompt` run folder>")
        tensors = load_tensor_file(path, keys=("prompt_embeds",))
        if "prompt_embeds" not in tensors:
            raise ValueError(f"{path}: no 'prompt_embeds' tensor (found {sorted(tensors)})")
        positive = as_prompt_batch(tensors["prompt_embeds"], str(path))
        negative = tensors.get("negative_prompt_embeds")
        self.options["prompt_file"] = str(Path(path))
        return positive, None if negative is None else as_prompt_batch(negative, str(path))

    def _needs_text_encoder(self) -> bool:
        if self.options["guidance"] <= 1.0:
            return False
        return self._file_embeddings[1] is None

    def _embeddings(self, pipe: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        positive, negative = self._file_embeddings
        if self.options["guidance"] > 1.0 and negative is None:
            negative = encode_text(pipe, "", self.device)
            if negative.shape[1] != positive.shape[1]:
                raise ValueError(
                    f"sd-prompt: learned prompt has {positive.shape[1]} tokens but the '' embedding has "
                    f"{negative.shape[1]}; store negative_prompt_embeds in the file or use guidance 1.0"
                )
        return positive, negative

    def config(self) -> dict[str, Any]:
        config = super().config()
        path = Path(self.options["prompt_file"])
        if path.is_file():
            from misato.io import sha256_file

            config["prompt_file_sha256"] = sha256_file(path)
        return config
