"""Pretrained files of this method (collected by `misato.weights.all_specs`)."""

from misato.weights import WeightSpec

WEIGHTS: list[WeightSpec] = [
    WeightSpec(
        key="mat-places512",
        filename="Places_512_FullData_G.pth",
        url="https://github.com/Sanster/models/releases/download/add_mat/Places_512_FullData_G.pth",
        sha256="",
        md5="8ca927835fa3f5e21d65ffcb165377ed",
        description=(
            "MAT (Li et al., CVPR 2022) generator trained on the full Places365 (8M images) at 512x512: the "
            "state dict of the authors' Places_512_FullData.pkl (OneDrive, linked from github.com/fenglinglwb/MAT), "
            "as re-released by IOPaint, which loads it strictly into its copy of the authors' Generator. It has no "
            "noise maps (noise_const, noise_strength: 465 tensors, not the 487 of the authors' Generator), so it "
            "runs with noise_mode='none', as in IOPaint. Only an md5 is published. Licence: CC BY-NC 4.0 "
            "(non-commercial)."
        ),
    ),
    WeightSpec(
        key="mat-celeba512",
        filename="MAT_CelebA-HQ_512_fp16.safetensors",
        url="https://huggingface.co/spacepxl/MAT-inpainting-fp16/resolve/main/MAT_CelebA-HQ_512_fp16.safetensors",
        sha256="72bff281486d34aa0c13d2191311255742c77d7b27dce90695d5714be4db711d",
        hf_repo="spacepxl/MAT-inpainting-fp16",
        description=(
            "MAT (Li et al., CVPR 2022) generator trained on CelebA-HQ at 512x512: a third-party float16 "
            "safetensors copy of the EMA generator of the authors' CelebA-HQ_512.pkl (OneDrive, linked from "
            "github.com/fenglinglwb/MAT), made for comfyui-inpaint-nodes. It carries no noise maps (noise_const, "
            "noise_strength), so it runs with noise_mode='none' only. The authors' .pkl itself is a network "
            "pickle of their classes, not a state dict. Licence: CC BY-NC 4.0 (non-commercial)."
        ),
    ),
]
