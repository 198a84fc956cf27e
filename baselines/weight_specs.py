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
    WeightSpec(
        key="lama-big-authors",
        filename="big-lama-best.safetensors",
        url="https://huggingface.co/smartywu/big-lama/resolve/main/big-lama.zip",
        sha256="",
        description="LaMa big-lama (Suvorov et al., WACV 2022), the authors' Lightning checkpoint, for "
        "`lama` with checkpoint=authors (only the generator.* entries are used); Apache-2.0",
        manual="download the release archive big-lama.zip from the url, unzip it and convert its Lightning "
        "checkpoint once (its tensors only): `misato weights convert big-lama/models/best.ckpt "
        "big-lama-best.safetensors --state-key state_dict`",
    ),
]
