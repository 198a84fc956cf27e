"""Shared pieces of the Stable-Diffusion inpainters: model loading, dtypes, input checks, seeds.

Conventions at this module's boundary are those of `baselines.base`: images float32 (B, 3, H, W) RGB in
[0, 1], masks float32 (B, 1, H, W) in {0, 1} with 1 = hole. Prompt embeddings are float (1, L, D) tensors
(D = 768 for SD 1.5), broadcast over the batch.
The tiny random SD (`sd_model="tiny"`) is in `baselines.sd.tiny`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from diffusers import (
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
    )

log = logging.getLogger(__name__)

# SD 1.5 inpainting (9-channel UNet); the runwayml/ id was deleted from the hub.
DEFAULT_INPAINT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
# SD 1.5 text-to-image (4-channel UNet), used by RePaint.
DEFAULT_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
# diffusers' default for the SD pipelines; recorded in every config.
DEFAULT_GUIDANCE = 7.5
DEFAULT_STEPS = 50

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def resolve_dtype(device: torch.device, dtype: str | torch.dtype | None, gpu_default: str = "fp16") -> torch.dtype:
    """Weights dtype: `dtype` if given, else `gpu_default` on CUDA and float32 on CPU.

    Half precision on CPU is refused: many CPU kernels lack fp16 and the results would not be comparable.
    """
    if dtype is None:
        dtype = gpu_default if device.type == "cuda" else "fp32"
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
        dtype = DTYPES[dtype]
    if device.type == "cpu" and dtype != torch.float32:
        raise ValueError(f"dtype {dtype} is not supported on CPU; use fp32 there")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """Short name of a torch dtype for configs ("fp32", "fp16", "bf16")."""
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype))


def check_batch(name: str, images: torch.Tensor, masks: torch.Tensor, seeds: Sequence[int], multiple: int) -> None:
    """Validate inputs at the inpainter boundary (see the module docstring); raise ValueError naming the problem."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name}: images must be (B, 3, H, W), got {tuple(images.shape)}")
    if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] != images.shape[0] or masks.shape[2:] != images.shape[2:]:
        raise ValueError(f"{name}: masks must be (B, 1, H, W) matching images {tuple(images.shape)}, got {tuple(masks.shape)}")
    if len(seeds) != images.shape[0]:
        raise ValueError(f"{name}: {len(seeds)} seeds for a batch of {images.shape[0]}")
    height, width = images.shape[2:]
    if height % multiple or width % multiple:
        raise ValueError(f"{name}: H and W must be multiples of {multiple} (the harness pads), got {height}x{width}")


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU `torch.Generator` per sample, seeded with its seed.

    CPU generators make the noise the same on every device, and a list (one per sample) makes each sample's
    noise independent of the batch it is in (diffusers draws per-sample noise from a list of generators).
    """
    return [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]


def dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """The `from_pretrained` keyword for the weights dtype: `dtype` in recent diffusers (where `torch_dtype` is
    deprecated), `torch_dtype` in older ones (detected by the helper that resolves the two)."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


@contextlib.contextmanager
def hub_offline(enabled: bool = True) -> Iterator[None]:
    """huggingface_hub's offline switch (`constants.HF_HUB_OFFLINE`, what HF_HUB_OFFLINE=1 sets) on for the block.

    `local_files_only=True` alone is not enough: huggingface_hub 2.x builds its request headers even then, and
    building them fetches an agent registry from the Hub (`utils._detect_agent`), a connection to huggingface.co.
    transformers reads the same switch. Restored on exit; enabled=False changes nothing.
    """
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def load_pretrained(loader: Any, model: str, kind: str, allow_download: bool = False, **kwargs: Any) -> Any:
    """`loader.from_pretrained(model, **kwargs)` with an error that says what was searched and how to fix it.

    model: a local diffusers folder or a Hugging Face model id. Without allow_download (or offline: MISATO_OFFLINE,
    HF_HUB_OFFLINE) the load is
    `local_files_only=True` (diffusers passes it to transformers and huggingface_hub): a local folder or the
    Hugging Face cache only, never a connection; with it, a model missing from the cache is downloaded.
    """
    from misato.download import offline

    allow_download = allow_download and not offline()  # MISATO_OFFLINE=1 / HF_HUB_OFFLINE=1 win over the option
    local = Path(model).expanduser()
    if local.is_dir() and not (local / "model_index.json").is_file():
        raise FileNotFoundError(f"cannot load the {kind} from local folder {model!r}: it has no model_index.json "
                                "(not a diffusers pipeline folder). Fix: pass model=<local diffusers folder> or a "
                                "Hugging Face model id")
    try:
        with hub_offline(not allow_download):
            return loader.from_pretrained(model, local_files_only=not allow_download, **kwargs)
    except (OSError, ValueError) as error:
        if local.exists():
            raise FileNotFoundError(f"cannot load the {kind} from local folder {model!r}: {error}\n"
                                    "Fix: pass model=<local diffusers folder> (as written by save_pretrained)") from error
        fix = ("run `huggingface-cli download {model}` on a machine with internet (and accept the model licence) so "
               "that the Hugging Face cache has it").format(model=model)
        if not allow_download:
            raise FileNotFoundError(
                f"cannot load the {kind} {model!r}: not in the Hugging Face cache and downloads are off "
                f"(no connection was made). Fix: pass model=<local diffusers folder>, allow downloads "
                f"(without --offline, MISATO_OFFLINE, HF_HUB_OFFLINE; option allow_download=true), or {fix}") from error
        raise FileNotFoundError(f"cannot load the {kind} from Hugging Face model id {model!r}: {error}\n"
                                f"Fix: pass model=<local diffusers folder>, or {fix}") from error


def load_inpaint_pipeline(
    model: str, device: torch.device, dtype: torch.dtype, text_encoder: bool = True, allow_download: bool = False
) -> "StableDiffusionInpaintPipeline":
    """`StableDiffusionInpaintPipeline` from a hub id or a local folder, without the safety checker; model "tiny"
    (`baselines.sd.tiny.TINY`) is the tiny random SD of the CPU presets (seed 0).

    text_encoder=False skips the CLIP text encoder and tokenizer (callers pass `prompt_embeds`).
    allow_download: False reads a local folder or the Hugging Face cache only (`load_pretrained`).
    """
    from diffusers import StableDiffusionInpaintPipeline

    from baselines.sd.tiny import TINY, tiny_inpaint_pipeline

    if model == TINY:
        return tiny_inpaint_pipeline(text_encoder=text_encoder).to(device)

    extra: dict[str, Any] = {} if text_encoder else {"text_encoder": None, "tokenizer": None}
    pipe = load_pretrained(
        StableDiffusionInpaintPipeline, model, "SD inpainting pipeline", allow_download=allow_download,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False, **dtype_kwargs(dtype), **extra,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_base_pipeline(model: str, device: torch.device, dtype: torch.dtype,
                       allow_download: bool = False) -> "StableDiffusionPipeline":
    """`StableDiffusionPipeline` (4-channel UNet, VAE, text encoder, scheduler config) for RePaint;
    allow_download as `load_pretrained`."""
    from diffusers import StableDiffusionPipeline

    pipe = load_pretrained(
        StableDiffusionPipeline, model, "SD text-to-image pipeline", allow_download=allow_download,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False, **dtype_kwargs(dtype),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def encode_text(pipe: Any, prompt: str, device: torch.device) -> torch.Tensor:
    """CLIP embeddings (1, 77, D) of `prompt` with the pipeline's own `encode_prompt` (no CFG duplication)."""
    if getattr(pipe, "text_encoder", None) is None or getattr(pipe, "tokenizer", None) is None:
        raise ValueError(
            f"prompt {prompt!r} needs the pipeline's text encoder and tokenizer, but it has none; "
            "load it with its text encoder or pass prompt_embeds"
        )
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(prompt, device, 1, False)
    return embeds


def load_tensor_file(path: str | Path, keys: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Tensors from a `.safetensors` file or a torch file (loaded with weights_only=True).

    A torch file may hold one tensor (returned under the first of `keys`, or "tensor") or a dict of tensors.
    """
    from misato.checkpoints import load_checkpoint  # the one reader: a damaged file is a one-line error naming it

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    loaded = load_checkpoint(path)
    if isinstance(loaded, torch.Tensor):
        return {keys[0] if keys else "tensor": loaded}
    if isinstance(loaded, dict) and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return dict(loaded)
    raise ValueError(f"{path}: expected a tensor or a dict of tensors, got {type(loaded).__name__}")


def as_prompt_batch(embeds: torch.Tensor, source: str) -> torch.Tensor:
    """(L, D) or (1, L, D) prompt embeddings -> (1, L, D); anything else is an error naming `source`."""
    if embeds.ndim == 2:
        embeds = embeds[None]
    if embeds.ndim != 3 or embeds.shape[0] != 1:
        raise ValueError(f"{source}: prompt embeddings must be (L, D) or (1, L, D), got {tuple(embeds.shape)}")
    return embeds
