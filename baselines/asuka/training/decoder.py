"""Stage `decoder`: train the inpainting-specialised decoder (paper Sec. 3.3, 5; Table 2(d) presets).

Per item, on the file's canonical crop x (one crop per file for the run, so the offline latents match it):
- input latent: for files selected for latent augmentation, the cached one-step estimate z0_hat (`latents`);
  for the others, z = s * (mu + sigma * e) of VAE(jitter(x)), the colour jitter on the input side only;
- condition: [x * (1 - M), M] with the clean x and the training mask M; target: the clean x in [-1, 1];
- loss: l1_weight * |D(z, x, M) - x| + lpips_weight * LPIPS(D(z, x, M), x), plus, from disc_start on, the
  generator's hinge term -D_patch(D(z, x, M)) with LDM's adaptive weight times disc_weight; the PatchGAN
  discriminator is trained beside it (hinge loss) as the loop's auxiliary module.
Colour jitter follows torchvision's ColorJitter (factors uniform in [1 - a, 1 + a], hue in [-h, h], a random
order of the four adjustments), drawn from the item's generator instead of torch's global one.
The trained weights are the decoder's (diffusers keys), saved as `decoder.safetensors` with `decoder.json`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.asuka.training.config import DecoderTrainConfig
from baselines.asuka.training.data import generators
from baselines.asuka.training.diffusion import FrozenSD, latent_shape, weight_dtype
from baselines.asuka.training.loop import StageParts, TrainInputs, file_record


def color_jitter(images: torch.Tensor, gens: list[torch.Generator], strength: tuple[float, float, float, float]
                 ) -> torch.Tensor:
    """images (B, 3, H, W) in [0, 1] -> jittered copies, one draw per item from its generator."""
    from torchvision.transforms import functional as TF

    brightness, contrast, saturation, hue = strength
    out = []
    for image, g in zip(images, gens):
        order = torch.randperm(4, generator=g).tolist()
        factors = [1 + (torch.rand((), generator=g).item() * 2 - 1) * a for a in (brightness, contrast, saturation)]
        shift = (torch.rand((), generator=g).item() * 2 - 1) * hue
        ops = [lambda x: TF.adjust_brightness(x, factors[0]), lambda x: TF.adjust_contrast(x, factors[1]),
               lambda x: TF.adjust_saturation(x, factors[2]), lambda x: TF.adjust_hue(x, shift)]
        for index in order:
            image = ops[index](image)
        out.append(image.clamp(0, 1))
    return torch.stack(out)


class PatchDiscriminator(nn.Module):
    """LDM's PatchGAN (pix2pix NLayerDiscriminator): 4x4 convs, LeakyReLU 0.2, BatchNorm; (B, 3, H, W) ->
    (B, 1, h, w) logits."""

    def __init__(self, layers: int = 3, width: int = 64) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        channels = width
        for n in range(1, layers + 1):
            out = width * min(2 ** n, 8)
            blocks += [nn.Conv2d(channels, out, 4, 2 if n < layers else 1, 1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2, True)]
            channels = out
        blocks.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.main = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def build_lpips_loss(config: DecoderTrainConfig, inputs: TrainInputs) -> tuple[nn.Module | None, dict[str, Any]]:
    """The LPIPS network of the loss (frozen), weights through the registry; None when lpips_weight is 0."""
    if config.lpips_weight == 0:
        return None, {}
    from misato.lpips_network import LPIPS_WEIGHTS, build_lpips
    from misato.weights import resolve

    backbone, lin = (resolve(k, path=inputs.weights.get(k), allow_download=inputs.allow_download)
                     for k in LPIPS_WEIGHTS[config.lpips_net])
    return build_lpips(backbone, lin, net=config.lpips_net), {"lpips": [backbone.record(), lin.record()]}


def load_decoder_init(path: str) -> dict[str, torch.Tensor]:
    """An asymmetric-decoder state dict (diffusers `MaskConditionDecoder` keys, optionally under 'decoder.' or in a
    'state_dict'), loaded weights-only."""
    from misato.checkpoints import load_checkpoint

    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"--decoder-init {path}: not a decoder state dict")
    if any(k.startswith("decoder.") for k in state):
        state = {k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")}
    return state


def build(config: DecoderTrainConfig, inputs: TrainInputs, accelerator: Any) -> StageParts:
    from baselines.asuka.decoder import ConditionedLatentDecoder, DecoderArch, build_decoder, init_from_vae_decoder
    from baselines.asuka.training.data import data_fingerprint, list_training_images
    from baselines.asuka.training.latents import LatentCache, cache_fingerprint, latent_selected

    if inputs.mae:
        raise ValueError("the decoder stage uses no MAE; drop --mae")
    cache = None
    records: dict[str, Any] = {}
    if config.latent_aug_share > 0:
        if not inputs.latents:
            raise ValueError("this decoder preset uses latent augmentation: pass --latents CACHE, built by `misato "
                             "train decoder-latents` with the same --preset/--config/--set and --data")
        root, files = list_training_images(inputs.data)
        cache = LatentCache(inputs.latents, cache_fingerprint(config, data_fingerprint(root, files)))
        records["latents"] = {"path": str(Path(inputs.latents).resolve()), "sha256": cache.sha256}
    if config.init == "file" and not inputs.decoder_init:
        raise ValueError("init 'file' needs --decoder-init FILE (an asymmetric-decoder state dict)")
    device, dtype = accelerator.device, weight_dtype(accelerator)
    sd = FrozenSD.load(config.sd_model, device, dtype, seed=config.seed, allow_download=inputs.allow_download)
    vae = sd.pipe.vae
    records.update(sd.record())
    lpips_net, lpips_records = build_lpips_loss(config, inputs)
    records.update(lpips_records)
    if lpips_net is not None:
        lpips_net = lpips_net.to(device)

    decoder = build_decoder(config.arch, DecoderArch.from_vae_config(vae.config))
    source = load_decoder_init(inputs.decoder_init) if config.init == "file" else vae.decoder.state_dict()
    init_report = init_from_vae_decoder(decoder, {k: v.float() for k, v in source.items()})
    records["decoder_init"] = {"source": file_record(inputs.decoder_init) if config.init == "file" else "SD VAE decoder",
                               "left_at_initialisation": len(init_report["missing"])}
    post_quant = copy.deepcopy(vae.post_quant_conv).float().requires_grad_(False) \
        if getattr(vae, "post_quant_conv", None) is not None else None
    shift = vae.config.get("shift_factor") or 0.0
    model = ConditionedLatentDecoder(decoder.float().train(), config.arch, vae.config.scaling_factor, shift, post_quant)
    discriminator = PatchDiscriminator(config.disc_layers) if config.disc_weight > 0 else None
    stash: dict[str, torch.Tensor] = {}

    def disc_active(step: int) -> bool:
        return discriminator is not None and step >= config.disc_start

    def loss(module: nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        images, masks = batch["image"].to(device), batch["mask"].to(device)
        gens = generators(batch["seed"])
        target = images * 2 - 1
        # draws in a fixed order for every item (jitter, then latent noise), whether or not its latent is cached
        inputs_side = color_jitter(batch["image"], gens, config.jitter).to(device) if config.color_jitter else images
        eps = torch.stack([torch.randn(latent_shape(vae, *images.shape[-2:]), generator=g) for g in gens])
        cached = [cache.get(name) if cache is not None and latent_selected(name, config.latent_aug_share, config.seed)
                  else None for name in batch["file"]]
        encode = [i for i, latent in enumerate(cached) if latent is None]  # the VAE runs only where needed
        latents = torch.empty(eps.shape, device=device)
        with torch.no_grad():
            if encode:
                dist = vae.encode((inputs_side[encode] * 2 - 1).to(vae.dtype)).latent_dist
                noise = eps[encode].to(device, dist.mean.dtype)
                latents[encode] = ((dist.mean + dist.std * noise) * vae.config.scaling_factor).float()
            for i, latent in enumerate(cached):
                if latent is not None:
                    latents[i] = latent.to(device)
        used = len(cached) - len(encode)
        pred = module(latents, target, masks)
        rec = config.l1_weight * (pred - target).abs().mean()
        if lpips_net is not None:
            rec = rec + config.lpips_weight * lpips_net(pred, target).mean()
        total, logs = rec, {"rec_loss": float(rec.detach()), "latent_aug": used}
        if disc_active(step):
            discriminator.requires_grad_(False)  # the generator term trains the decoder only
            g_loss = -discriminator(pred).mean()
            discriminator.requires_grad_(True)
            last = unwrap(module).decoder.conv_out.weight
            rec_grad = torch.autograd.grad(rec, last, retain_graph=True)[0]
            g_grad = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
            weight = (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()
            total = total + config.disc_weight * weight * g_loss
            logs["g_loss"] = float(g_loss.detach())
        stash.update(fake=pred.detach(), real=target.detach())
        return total, logs

    def unwrap(module: nn.Module) -> nn.Module:
        return accelerator.unwrap_model(module)

    def aux_loss(module: nn.Module, step: int) -> torch.Tensor | None:
        if not disc_active(step) or "fake" not in stash:
            return None
        real, fake = module(stash["real"]), module(stash["fake"])
        return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())

    def save(module: nn.Module, out: Path) -> dict[str, str]:
        from baselines.asuka.trained import save_decoder_run

        return save_decoder_run(module.decoder, config.arch, out)

    return StageParts(model, loss, save, records, frozen={"vae": vae}, canonical_crops=True,
                      aux=discriminator, aux_loss=aux_loss if discriminator is not None else None)
