"""Weights of the released ASUKA-FLUX model (Hugging Face `yikaiwang/ASUKA-FLUX.1-Fill`), data only.

The publisher gives no checksums and the files could not be downloaded where this table was written, so
`sha256` is "" (unknown): `misato.weights.resolve` records the hash it finds instead of checking it.
"""

from __future__ import annotations

from misato.weights import WeightSpec

HF_REPO = "yikaiwang/ASUKA-FLUX.1-Fill"
# The hub revision the files are fetched at. "main": no commit hash could be looked up where this table was
# written (no network); pin it to a commit here once one has been checked.
HF_REVISION = "main"
_UNKNOWN_HASH = " sha256 not published here: recorded on first use, not checked."


def _spec(key: str, filename: str, description: str) -> WeightSpec:
    return WeightSpec(
        key=key,
        filename=filename,
        url=f"https://huggingface.co/{HF_REPO}/resolve/{HF_REVISION}/{filename}",
        sha256="",
        description=description + _UNKNOWN_HASH,
        hf_repo=HF_REPO,
        hf_revision=HF_REVISION,
    )


NEVER_RELEASED = " Never released (the SD-1.5 ASUKA weights, asuka-misato issue #5): train it with `misato train`."

WEIGHTS: list[WeightSpec] = [
    WeightSpec("asuka-sd-alignment", "asuka_sd_alignment.safetensors", url="", sha256="",
               description="ASUKA-SD alignment module 512 -> 768 (4 blocks)." + NEVER_RELEASED),
    WeightSpec("asuka-sd-decoder", "asuka_sd_decoder.safetensors", url="", sha256="",
               description="ASUKA-SD conditioned decoder (4 latent channels)." + NEVER_RELEASED),
    _spec("asuka-mae", "mae_300.pth",
          "ASUKA fine-tuned MAE ViT-B/16 (256x256, prior = decoder block 6), dict with key 'model'."),
    _spec("asuka-alignment-clip", "asuka_alignment_clip.pt",
          "ASUKA-FLUX alignment module, 512 -> 768, 4 blocks (pooled: replaces FLUX's CLIP vector)."),
    _spec("asuka-alignment-t5", "asuka_alignment_t5.pt",
          "ASUKA-FLUX alignment module, 512 -> 4096, 4 blocks (256 tokens: replace FLUX's T5 tokens)."),
    _spec("asuka-decoder-flux", "asuka_decoder.ckpt",
          "ASUKA-FLUX mask-conditioned decoder (16 latent channels), Lightning checkpoint ['state_dict']."),
    _spec("asuka-flux-null-vec", "vec.pt", "FLUX empty-prompt pooled CLIP embedding (1, 768), the null condition."),
    _spec("asuka-flux-null-txt", "txt_256.pt", "FLUX empty-prompt T5 embedding (1, 256, 4096), the null condition."),
]
