"""`misato train` configs are typed: every field is checked against its type, from presets, config files and --set,
and a wrong value is a one-line error naming the field and the expected type before any work (issue 21, case 6)."""

from __future__ import annotations

import json

import pytest

from baselines.asuka.training.config import CONFIGS, PRESETS, MAETrainConfig, build_config
from misato.cli import main


def config_file(tmp_path, fields: dict, name: str = "config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(fields) if name.endswith(".json") else fields)
    return path


@pytest.mark.parametrize(("text", "expected"), [("no", False), ("No", False), ("off", False), ("false", False),
                                                ("yes", True), ("on", True), ("true", True)])
def test_bool_fields_read_yes_no_words_explicitly(tmp_path, text, expected):
    from_file = build_config("mae", ["tiny"], config_file(tmp_path, {"hflip": text}))
    from_set = build_config("mae", ["tiny"], sets=[f"hflip={text}"])
    assert from_file.hflip is expected and from_set.hflip is expected


@pytest.mark.parametrize("value", ["maybe", 1, 0, "", None, [True]])
def test_bool_fields_refuse_anything_else(tmp_path, value):
    with pytest.raises(ValueError, match=r"config field hflip expects a boolean"):
        build_config("mae", ["tiny"], config_file(tmp_path, {"hflip": value}))


def test_int_fields_refuse_fractions_and_accept_whole_numbers(tmp_path):
    with pytest.raises(ValueError, match=r"config field steps expects an integer, got 10.7"):
        build_config("mae", ["tiny"], config_file(tmp_path, {"steps": 10.7}))
    with pytest.raises(ValueError, match=r"--set steps=10.7: mae config field steps expects an integer"):
        build_config("mae", ["tiny"], sets=["steps=10.7"])
    with pytest.raises(ValueError, match=r"config field steps expects an integer"):
        build_config("mae", ["tiny"], sets=["steps=ten"])
    config = build_config("mae", ["tiny"], config_file(tmp_path, {"steps": 1e4}), sets=["log_every=2.0"])
    assert config.steps == 10_000 and type(config.steps) is int and type(config.log_every) is int


def test_float_fields_refuse_words_and_non_finite_values(tmp_path):
    with pytest.raises(ValueError, match=r"config field lr expects a number, got 'fast'"):
        build_config("mae", ["tiny"], config_file(tmp_path, {"lr": "fast"}))
    for text in ("fast", "NaN", "Infinity", "true"):
        with pytest.raises(ValueError, match=rf"--set lr={text}: mae config field lr expects a number"):
            build_config("mae", ["tiny"], sets=[f"lr={text}"])
    # YAML 1.1 reads 1e-4 as a string: a string holding a number is that number
    yaml_config = build_config("mae", ["tiny"], config_file(tmp_path, "lr: 1e-4\n", "config.yaml"))
    assert yaml_config.lr == 1e-4 and type(yaml_config.lr) is float


def test_str_and_tuple_fields(tmp_path):
    with pytest.raises(ValueError, match=r"config field mixed_precision expects a string, got 16"):
        build_config("mae", ["tiny"], config_file(tmp_path, {"mixed_precision": 16}))
    with pytest.raises(ValueError, match=r"config field crop_scale expects a list of 2 values"):
        build_config("mae", ["tiny"], sets=["crop_scale=[1.0]"])
    with pytest.raises(ValueError, match=r"config field adam_betas expects a list of 2 values"):
        build_config("mae", ["tiny"], config_file(tmp_path, {"adam_betas": [0.9, "fast"]}))
    config = build_config("decoder", ["tiny"], sets=["crop_scale=[1, 1.5]", "latent_t_range=[600, 1000]"])
    assert config.crop_scale == (1.0, 1.5) and config.latent_t_range == (600, 1000)


def test_direct_construction_is_checked_too():
    with pytest.raises(ValueError, match=r"config field steps expects an integer"):
        MAETrainConfig(steps=10.7)
    assert MAETrainConfig(hflip="no").hflip is False


def test_every_preset_and_default_is_of_its_fields_type():
    import typing

    from baselines.asuka.training.config import field_types

    for stage, cls in CONFIGS.items():
        for name in PRESETS[stage]:
            config = build_config(stage, [name])
            for field, kind in field_types(cls).items():
                value = getattr(config, field)
                assert type(value) is (typing.get_origin(kind) or kind), (stage, name, field, value)


def test_cli_refuses_a_bad_value_in_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "mae", "--preset", "tiny", "--data", str(tmp_path / "absent"), "--out", str(out),
                 "--set", "lr=fast", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and not out.exists()
    assert err.count("\n") == 0 and "config field lr expects a number, got 'fast'" in err and "Traceback" not in err
