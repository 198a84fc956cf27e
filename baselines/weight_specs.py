"""Pretrained files used by the baseline inpainters (collected by `misato.weights.all_specs`)."""

from misato.weights import WeightSpec

WEIGHTS: list[WeightSpec] = [
    WeightSpec(
        key="lama-big",
        filename="big-lama.pt",
        url="https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt",
        sha256="344c77bbcb158f17dd143070d1e789f38a66c04202311ae3a258ef66667a9ea9",
        description="LaMa big-lama (Suvorov et al., WACV 2022) as the TorchScript export published for IOPaint; "
        "Apache-2.0",
        md5="e3aa4aaa15225a33ec84f9f4bc47e500",
    ),
]
