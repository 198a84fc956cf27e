"""Pretrained files of this method (collected by `misato.weights.all_specs`)."""

from misato.weights import WeightSpec

WEIGHTS: list[WeightSpec] = [
    WeightSpec(
        key="mae-far-places2",
        filename="mae_far_places2.safetensors",
        url="https://drive.google.com/file/d/1y48XPao7ImANGq1wu7C9ngquvGcXV284/view?usp=sharing",
        sha256="",
        description=(
            "MAE-FAR (Cao et al., ECCV 2022) Places2 model, re-trained by the authors' released code "
            "(github ewrfcas/MAE-FAR, README 'Testing'). Google Drive only: the url is the Drive page, not a "
            "direct download, and no checksum is published (sha256 recorded on first use, not checked). "
            "The file is a PyTorch-Lightning checkpoint whose 'state_dict' holds the MAE ('mae.*') and the "
            "FAR network ('acr.*'). Licence: CC BY-NC 4.0 (the repository's LICENSE)."
        ),
        manual="download the Places2 checkpoint from the Google Drive page in the url (a browser is needed), then "
        "convert it once: `misato weights convert FILE mae_far_places2.safetensors --state-key state_dict`",
    ),
]
