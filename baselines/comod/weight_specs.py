"""Pretrained files of this method (collected by `misato.weights.all_specs`)."""

from misato.weights import WeightSpec

WEIGHTS: list[WeightSpec] = [
    WeightSpec(
        key="comod-places512",
        filename="co-mod-gan-places2-050000_net_G_ema.pth",
        url="https://maildluteducn-my.sharepoint.com/:u:/g/personal/zengyu_mail_dlut_edu_cn/"
        "EQG9jJzkFLJDsOWmVJJSoqQB2jRDkXlYt3wnt9Fb9dJDsQ?download=1",
        sha256="",
        description=(
            "Co-Mod-GAN (Zhao et al., ICLR 2021) Places2 512x512 generator (EMA): the authors' TensorFlow "
            "co-mod-gan-places2-050000.pkl (Google Drive, linked from github.com/zsyzzsoft/co-mod-gan) converted "
            "by hand to a PyTorch state dict by github.com/zengxianyu/co-mod-gan-pytorch, whose "
            "download/places512.sh fetches it from this OneDrive/SharePoint link (the same file is named "
            "co-mod-gan-places2-050000.pth on the port's master branch). A plain state dict (torch.load "
            "weights_only works). No hash is published. Licence: Co-Mod-GAN's own code is BSD-style, its "
            "StyleGAN2 parts are under the NVIDIA Source Code License-NC; the weights carry no separate "
            "licence: treat them as non-commercial."
        ),
    ),
]
