"""Defaults written once (issue 24): weight keys follow the protocol's network names; shared counts and sizes come
from `misato.defaults` wherever a command, config or function states them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from evaluators.bootstrap import BootstrapConfig
from evaluators.networks import ClipHoleEmbeddings, ClipImageEmbeddings, LpipsPairs
from evaluators.protocols import get_protocol
from evaluators.scoring import ScoreConfig
from misato import defaults
from misato.cli import build_parser
from misato.io import MASK_THRESHOLD


def test_lpips_weight_keys_follow_the_protocol_net():
    protocol = get_protocol(defaults.PROTOCOL)
    assert LpipsPairs.weight_keys(replace(protocol, lpips_net="alex")) == ("alexnet-torchvision", "lpips-alex-lin")
    assert LpipsPairs.weight_keys(replace(protocol, lpips_net="vgg")) == ("vgg16-torchvision", "lpips-vgg-lin")
    with pytest.raises(ValueError, match="lpips_net 'squeeze'"):
        LpipsPairs.weight_keys(replace(protocol, lpips_net="squeeze"))


def test_clip_weight_keys_follow_the_protocol_models():
    protocol = get_protocol(defaults.PROTOCOL)
    assert ClipHoleEmbeddings.weight_keys(protocol) == ("clip-vit-l-14-openai",)
    assert ClipImageEmbeddings.weight_keys(protocol) == ("clip-vit-l-14-336-openai",)
    assert ClipHoleEmbeddings.weight_keys(replace(protocol, clip_model="ViT-L-14-336")) == ("clip-vit-l-14-336-openai",)
    with pytest.raises(ValueError, match="cmmd_clip_model 'RN50'"):
        ClipImageEmbeddings.weight_keys(replace(protocol, cmmd_clip_model="RN50"))


def _defaults_of(command: list[str]) -> dict:
    parser = build_parser()
    args = parser.parse_args(command)
    return vars(args)


def test_bootstrap_counts_agree_everywhere():
    counts = (defaults.BOOTSTRAP_RESAMPLES, defaults.SET_BOOTSTRAP_RESAMPLES, defaults.KID_BOOTSTRAP_RESAMPLES)
    config = BootstrapConfig()
    assert (config.resamples, config.set_resamples, config.kid_resamples) == counts
    score = ScoreConfig()
    assert (score.bootstrap, score.set_bootstrap, score.kid_bootstrap) == counts
    args = _defaults_of(["score", "--dataset", "d", "--predictions", "p", "--method", "m", "--out", "o"])
    assert (args["bootstrap"], args["set_bootstrap"], args["kid_bootstrap"]) == counts
    assert _defaults_of(["study", "tally", "s", "--out", "o"])["bootstrap"] == counts[0]
    assert _defaults_of(["study", "agreement", "s", "r", "--out", "o"])["bootstrap"] == counts[0]


def test_embedded_size_and_mask_threshold():
    from misato.embedded import DEFAULT_SIZE
    from misato.jobs.pipeline import RunConfig

    assert DEFAULT_SIZE == RunConfig(methods=[], datasets=[], out_dir="o").embedded_size == defaults.EMBEDDED_SIZE
    assert _defaults_of(["demo", "--out", "o"])["embedded_size"] == defaults.EMBEDDED_SIZE
    assert MASK_THRESHOLD == 128 == round(get_protocol(defaults.PROTOCOL).mask_threshold * 255)
