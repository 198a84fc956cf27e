"""Tiny random models used only by tests (diffusers' fast-test sizes): prompt embeddings for the tiny UNet and a
tiny FLUX Fill pipeline; and `refuse_network`, which proves a model load stays off the network. The tiny SD that
the CPU training preset also uses lives in `baselines.sd.tiny`."""

from __future__ import annotations

from typing import Any

import torch


def tiny_prompt_embeds(length: int = 8, dim: int = 32, seed: int = 0) -> torch.Tensor:
    """Random (1, length, dim) prompt embeddings for the tiny UNet's cross-attention."""
    return torch.randn((1, length, dim), generator=torch.Generator().manual_seed(seed))


def tiny_flux_fill_pipeline(seed: int = 0) -> Any:
    """A FluxFillPipeline of tiny random modules (no text encoders: pass prompt_embeds and pooled_prompt_embeds).

    VAE: 2 levels (scale factor 2), 4 latent channels, FLUX-style shift and scale, no quant convs. Transformer:
    1 double + 1 single block, joint_attention_dim 32 (the T5 slot), pooled_projection_dim 32 (the CLIP slot),
    in_channels 16 (packed latents) + 16 (packed masked-image latents) + 16 (packed 2x2 mask) = 48.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[16, 32], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=8, layers_per_block=1,
        use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035,
    ).eval()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=48, out_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,
    ).eval()
    pipe = FluxFillPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=None, tokenizer=None,
        text_encoder_2=None, tokenizer_2=None, transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def refuse_network(monkeypatch: Any) -> list[object]:
    """Hub access switched on as for a user (no MISATO_OFFLINE, HF_HUB_OFFLINE), but every name lookup and socket connection refused
    and recorded, so nothing leaves the machine: a load that would reach the network shows up in the returned list.
    """
    import socket

    import huggingface_hub.constants

    from misato.download import OFFLINE_VARIABLES

    for name in OFFLINE_VARIABLES:  # MISATO_OFFLINE, HF_HUB_OFFLINE
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    attempts: list[object] = []

    def refuse(address: object) -> None:
        attempts.append(address)
        raise OSError(f"test: network disabled ({address})")

    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: refuse(host))
    monkeypatch.setattr(socket.socket, "connect", lambda self, address, *args: refuse(address))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, address, *args: refuse(address))
    return attempts
