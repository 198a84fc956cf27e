"""Pretrained files used by the evaluators (data only; see misato.weights for resolution).

Full sha256 digests: upstream projects publish only the 8-hex prefix in torch-hub file names; the full
digests below are the ones pinned by several independent projects for the same URL, and each starts with
its file name's prefix. The OpenAI CLIP digest is the URL's own path segment.
"""

from misato.weights import WeightSpec

WEIGHTS = [
    WeightSpec(
        key="inception-tf",
        filename="weights-inception-2015-12-05-6726825d.pth",
        url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        description="TF Inception (2015-12-05) ported to PyTorch by torch-fidelity/pytorch-fid (byte-identical "
        "to pt_inception-2015-12-05-6726825d.pth); FID/IDS/KID features of the comod and clean protocols.",
    ),
    WeightSpec(
        key="inception-torchvision",
        filename="inception_v3_google-0cc3c7bd.pth",
        url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        sha256="0cc3c7bd75056d25e46cba549dc184522069b81e9787eff6df84f397bd52a5ef",
        description="torchvision inception_v3 IMAGENET1K_V1; FID/IDS features of the asuka protocol.",
    ),
    WeightSpec(
        key="alexnet-torchvision",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        description="torchvision AlexNet (IMAGENET1K_V1); the LPIPS-Alex backbone.",
    ),
    WeightSpec(
        key="vgg16-torchvision",
        filename="vgg16-397923af.pth",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256="",
        description="torchvision VGG16 (IMAGENET1K_V1); the LPIPS-VGG backbone of the decoder training loss. Only "
        "the 8-hex prefix 397923af is published: the full sha256 is recorded on first use, not checked.",
    ),
    WeightSpec(
        key="lpips-vgg-lin",
        filename="vgg.pth",
        url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
        sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
        description="LPIPS v0.1 linear heads for VGG16; shipped inside the lpips wheel.",
        package_file="lpips:weights/v0.1/vgg.pth",
    ),
    WeightSpec(
        key="lpips-alex-lin",
        filename="alex.pth",
        url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
        sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        description="LPIPS v0.1 linear heads for AlexNet; shipped inside the lpips wheel.",
        package_file="lpips:weights/v0.1/alex.pth",
    ),
    WeightSpec(
        key="clip-vit-l-14-openai",
        filename="ViT-L-14.pt",
        url="https://openaipublic.azureedge.net/clip/models/"
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
        sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
        description="OpenAI CLIP ViT-L/14 (open_clip 'ViT-L-14', pretrained='openai'); CLIP score and MISATO selection.",
    ),
    WeightSpec(
        key="maskrcnn-resnet50-fpn-coco",
        filename="maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        url="https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        sha256="",
        description="torchvision Mask R-CNN ResNet-50 FPN (COCO_V1); the detector of the hallucination metrics "
        "(protocol detector 'maskrcnn-coco'). Only the 8-hex prefix bf2d0c1e is published: the full sha256 is "
        "recorded on first use, not checked.",
    ),
    WeightSpec(
        key="clip-vit-l-14-336-openai",
        filename="ViT-L-14-336px.pt",
        url="https://openaipublic.azureedge.net/clip/models/"
        "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
        sha256="3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
        description="OpenAI CLIP ViT-L/14 at 336 px (open_clip 'ViT-L-14-336', pretrained='openai'), the "
        "embedding model of google-research/cmmd; the cmmd metric.",
    ),
    WeightSpec(
        key="dinov2-vit-l-14",
        filename="model.safetensors",
        url="https://huggingface.co/facebook/dinov2-large/resolve/main/model.safetensors",
        sha256="",
        hf_repo="facebook/dinov2-large",
        description="DINOv2 ViT-L/14 (facebook/dinov2-large, transformers Dinov2Model weights); the fd_dinov2 "
        "metric, with dinov2-vit-l-14-config. No digest is published beside the file: its sha256 is recorded, "
        "and a file that does not fit the config is refused (strict load).",
    ),
    WeightSpec(
        key="dinov2-vit-l-14-config",
        filename="config.json",
        url="https://huggingface.co/facebook/dinov2-large/resolve/main/config.json",
        sha256="",
        hf_repo="facebook/dinov2-large",
        description="The Dinov2Config of facebook/dinov2-large (model_type 'dinov2' checked when loaded); the "
        "fd_dinov2 metric, with dinov2-vit-l-14.",
    ),
    WeightSpec(
        key="dreamsim-ensemble",
        filename="dreamsim_ensemble_checkpoint.zip",
        url="https://github.com/ssundaram21/dreamsim/releases/download/v0.2.0-checkpoints/"
        "dreamsim_ensemble_checkpoint.zip",
        sha256="",
        description="DreamSim ensemble release archive (v0.2.0 checkpoints, as the dreamsim package downloads it): "
        "the CLIP and OpenCLIP ViT-B/16 backbones and the ensemble's LoRA adapter; the dreamsim metrics, with "
        "dino-vitb16. Only the URL is published: the sha256 is recorded on first use, not checked.",
    ),
    WeightSpec(
        key="dino-vitb16",
        filename="dino_vitbase16_pretrain.pth",
        url="https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
        sha256="",
        description="DINO ViT-B/16 backbone (the file torch.hub's facebookresearch/dino 'dino_vitb16' loads, which "
        "the dreamsim package fetches at run time); the dreamsim metrics, with dreamsim-ensemble. Only the URL is "
        "published: the sha256 is recorded on first use, not checked.",
    ),
]
