"""Offline latent augmentation of the decoder stage (paper Sec. 3.3, Eq. (1)): `misato train decoder-latents`.

For the files selected for latent augmentation (a `latent_aug_share` of them, chosen by a hash of the file name
and the run seed), on the file's canonical crop x (the crop the decoder stage trains on):
  z0 = s * (mu + sigma * e) of VAE(x);  t ~ U{t_lo, ..., t_hi - 1};  eps ~ N(0, I)
  z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps
  z0_hat = (z_t - sqrt(1 - abar_t) * UNet([z_t; M = 0; z0], t, c_null)) / sqrt(abar_t)
with the frozen SD inpainting UNet, the unmasked latent as its masked-image input, an all-zero mask, and the
empty-prompt embedding c_null. z0_hat (scaled latents, (C, h, w) float32) is stored in safetensors shards of
`SHARD_SIZE` files; `index.json` holds the fingerprint of every input (data, SD model, seed, sizes, share, t range)
and, per file, its shard. A shard is written atomically and never recomputed; a cache whose fingerprint differs
from the run's is refused with the command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.asuka.training.config import DecoderTrainConfig
from baselines.asuka.training.data import TrainingImages, data_fingerprint, list_training_images
from misato.io import ImageFileError, atomic_write_json
from misato.devices import resolve_device
from misato.seeds import sample_seed

log = logging.getLogger(__name__)

INDEX = "index.json"
FORMAT = "misato-decoder-latents/1"
SHARD_SIZE = 256


def latent_selected(name: str, share: float, run_seed: int) -> bool:
    """Whether file `name` gets the offline latent (deterministic: a hash of the name and the run seed)."""
    return sample_seed(f"latent-select/{name}", run_seed) < share * 2**32


def cache_fingerprint(config: DecoderTrainConfig, data: dict[str, Any]) -> dict[str, Any]:
    """Everything the cached latents depend on."""
    from baselines.asuka.training.diffusion import sd_reference

    return {"format": FORMAT, "data_sha256": data["sha256"], "sd_model": sd_reference(config.sd_model), "seed": config.seed,
            "resolution": config.resolution, "crop_scale": list(config.crop_scale), "hflip": config.hflip,
            "share": config.latent_aug_share, "t_range": list(config.latent_t_range)}


@torch.no_grad()
def one_step_estimate(unet: Any, scheduler: Any, z0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                      null: torch.Tensor) -> torch.Tensor:
    """Eq. (1): z0 (B, C, h, w) scaled latents, noise like z0, timesteps (B,), null (B, L, D) -> z0_hat (B, C, h, w)."""
    abar = scheduler.alphas_cumprod.to(z0.device)[timesteps].view(-1, 1, 1, 1).to(z0.dtype)
    z_t = abar.sqrt() * z0 + (1 - abar).sqrt() * noise
    zeros = torch.zeros_like(z0[:, :1])
    dtype = next(unet.parameters()).dtype
    eps = unet(torch.cat([z_t, zeros, z0], 1).to(dtype), timesteps, encoder_hidden_states=null.to(dtype),
               return_dict=False)[0].to(z0.dtype)
    return (z_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def build_latent_cache(config: DecoderTrainConfig, data: str, out: str, progress: bool = True,
                       device: str | None = None, allow_download: bool = False) -> dict[str, Any]:
    """Compute (or complete) the cache in `out`; returns the index. Safe to interrupt and rerun.
    allow_download: a hub SD model missing from the Hugging Face cache may be downloaded (else an error)."""
    from tqdm.auto import tqdm

    from baselines.asuka.training.diffusion import FrozenSD
    from baselines.asuka.trained import save_safetensors
    from baselines.sd.components import encode_text

    config.validate()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("decoder-latents writes one cache folder: run it as a single process (plain `misato "
                         "train decoder-latents`, not under `accelerate launch`)")
    if config.latent_aug_share <= 0:
        raise ValueError("latent_aug_share is 0: this decoder preset uses no offline latents")
    root, files = list_training_images(data)
    fingerprint = cache_fingerprint(config, data_fingerprint(root, files))
    folder = Path(out)
    index_path = folder / INDEX
    index: dict[str, Any] = {"fingerprint": fingerprint, "shards": {}, "entries": {}, "bad": []}
    if index_path.is_file():
        previous = json.loads(index_path.read_text())
        if previous.get("fingerprint") != fingerprint:
            raise ValueError(f"{folder} holds latents of other inputs; use a new folder (or delete it)")
        index = previous
    selected = [name for name in files if latent_selected(name, config.latent_aug_share, config.seed)]
    shards = [selected[i:i + SHARD_SIZE] for i in range(0, len(selected), SHARD_SIZE)]
    todo = [k for k in range(len(shards)) if f"{k:05d}" not in index["shards"]]
    if not todo:
        return index
    device_ = resolve_device(device)
    frozen = FrozenSD.load(config.sd_model, device_, torch.float32, text_encoder=True, seed=config.seed,
                           allow_download=allow_download)
    sd, scheduler = frozen.pipe, frozen.scheduler
    null = encode_text(sd, "", device_)
    position = {name: i for i, name in enumerate(files)}
    images = TrainingImages(root, files, config.resolution, masks=None, scale=tuple(config.crop_scale),
                            hflip=config.hflip, canonical_seed=config.seed)
    folder.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(selected), initial=sum(len(shards[k]) for k in range(len(shards)) if k not in todo),
               desc="decoder latents", unit="img", disable=not progress)
    lo, hi = config.latent_t_range
    for k in todo:
        tensors: dict[str, torch.Tensor] = {}
        names = shards[k]
        for start in range(0, len(names), config.micro_batch_size):
            chunk, crops, gens = [], [], []
            for name in names[start:start + config.micro_batch_size]:
                try:
                    crops.append(images.read_crop(position[name]))
                except ImageFileError as error:
                    index["bad"].append(str(error))
                    continue
                chunk.append(name)
                gens.append(torch.Generator().manual_seed(sample_seed(f"latent/{name}", config.seed)))
            if not chunk:
                continue
            x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255).mul(2).sub(1).to(device_)
            dist = sd.vae.encode(x).latent_dist
            shape = dist.mean.shape[1:]
            e0 = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device_)
            timesteps = torch.stack([torch.randint(lo, min(hi, scheduler.config.num_train_timesteps), (), generator=g)
                                     for g in gens]).to(device_)
            noise = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device_)
            z0 = (dist.mean + dist.std * e0) * sd.vae.config.scaling_factor
            z0_hat = one_step_estimate(sd.unet, scheduler, z0, noise, timesteps, null.expand(len(chunk), -1, -1))
            for name, latent in zip(chunk, z0_hat):
                tensors[str(position[name])] = latent.float().cpu()
            bar.update(len(names[start:start + config.micro_batch_size]))
        shard = f"shard-{k:05d}.safetensors"
        save_safetensors(tensors, folder / shard)
        index["shards"][f"{k:05d}"] = shard
        index["entries"].update({files[int(key)]: [shard, key] for key in tensors})
        atomic_write_json(index_path, index)
    bar.close()
    return index


class LatentCache:
    """Read side: `get(name)` -> scaled latent (C, h, w) or None when the file is not in the cache."""

    def __init__(self, folder: str | Path, fingerprint: dict[str, Any]) -> None:
        self.folder = Path(folder)
        index_path = self.folder / INDEX
        if not index_path.is_file():
            raise FileNotFoundError(f"--latents {self.folder}: no {INDEX}; build it with `misato train "
                                    "decoder-latents` (same --preset/--config/--set and --data) first")
        index = json.loads(index_path.read_text())
        if index.get("fingerprint") != fingerprint:
            changed = sorted(k for k in fingerprint if index.get("fingerprint", {}).get(k) != fingerprint[k])
            raise ValueError(f"--latents {self.folder} was computed for other inputs ({', '.join(changed)} differ); "
                             "rebuild it with `misato train decoder-latents` into a new folder")
        self.entries: dict[str, list[str]] = index["entries"]
        self.sha256 = hashlib.sha256(index_path.read_bytes()).hexdigest()
        self._shard: tuple[str, dict[str, torch.Tensor]] | None = None

    def get(self, name: str) -> torch.Tensor | None:
        entry = self.entries.get(name)
        if entry is None:
            return None
        shard, key = entry
        if self._shard is None or self._shard[0] != shard:
            from safetensors.torch import load_file

            self._shard = (shard, load_file(str(self.folder / shard)))
        return self._shard[1][key]
