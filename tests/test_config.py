"""`--set key=value` parsing by declared field types, its error messages, and the JSON round trip
of config dataclasses."""

from __future__ import annotations

import dataclasses
import json

import pytest

from genlab.config import parse_config, parse_overrides, to_json_dict
from genlab.models.autoencoder import AutoencoderConfig
from genlab.models.ddpm import DDPMConfig
from genlab.models.gan import GANConfig
from genlab.models.vae import VAEConfig
from genlab.train import TrainConfig

CLASSES = [TrainConfig, VAEConfig]


def parse(*pairs: str) -> tuple[dict, dict]:
    train, vae = parse_overrides(list(pairs), CLASSES)
    return train, vae


def test_values_are_parsed_by_field_type_and_routed_to_their_class():
    train, vae = parse("steps=200", "lr=3e-4", "binarize=true", "data=folder:/tmp/a=b",
                       "hidden_dims=512,256", "latent_dim=8", "beta=0.5", "architecture=conv")
    assert train == {"steps": 200, "lr": 0.0003, "binarize": True, "data": "folder:/tmp/a=b"}
    assert vae == {"hidden_dims": (512, 256), "latent_dim": 8, "beta": 0.5, "architecture": "conv"}
    assert type(train["steps"]) is int and type(train["lr"]) is float and type(vae["beta"]) is float
    # the parsed values build real configs
    assert TrainConfig(**train).lr == 3e-4
    assert VAEConfig(data_shape=(1, 28, 28), **vae).hidden_dims == (512, 256)


@pytest.mark.parametrize("text,value", [("true", True), ("False", False), ("1", True), ("0", False),
                                        ("yes", True), ("off", False)])
def test_bools(text, value):
    assert parse(f"binarize={text}")[0] == {"binarize": value}


@pytest.mark.parametrize("text,value", [("512,256", (512, 256)), ("(64, 32)", (64, 32)), ("[8]", (8,)),
                                        ("16", (16,)), ("4,", (4,))])
def test_tuples(text, value):
    assert parse(f"hidden_dims={text}")[1] == {"hidden_dims": value}


def test_optional_ints():
    assert parse("image_size=none")[0] == {"image_size": None}
    assert parse("image_size=None")[0] == {"image_size": None}
    assert parse("image_size=64")[0] == {"image_size": 64}
    with pytest.raises(ValueError, match="image_size='big' is not an integer"):
        parse("image_size=big")


def test_literal_fields():
    assert parse("likelihood=gaussian")[1] == {"likelihood": "gaussian"}
    with pytest.raises(ValueError, match="likelihood='poisson' is not one of auto, bernoulli, gaussian"):
        parse("likelihood=poisson")


def test_spaces_around_key_and_value_are_ignored():
    assert parse(" lr = 0.01 ")[0] == {"lr": 0.01}


def test_unknown_key_lists_the_valid_settings():
    with pytest.raises(ValueError, match="unknown setting 'learning_rate'") as info:
        parse("learning_rate=0.1")
    message = str(info.value)
    for field in [*dataclasses.fields(TrainConfig), *dataclasses.fields(VAEConfig)]:
        assert field.name in message


@pytest.mark.parametrize("pair,match", [
    ("latent_dim=abc", "latent_dim='abc' is not an integer"),
    ("steps=1.5", "steps='1.5' is not an integer"),
    ("lr=fast", "lr='fast' is not a number"),
    ("binarize=maybe", "binarize='maybe' is not a boolean"),
    ("hidden_dims=512,abc", "hidden_dims='abc' is not an integer"),
])
def test_mistyped_values_name_the_key(pair, match):
    with pytest.raises(ValueError, match=match):
        parse(pair)


@pytest.mark.parametrize("pair", ["lr", "=3", ""])
def test_missing_equals_or_key(pair):
    with pytest.raises(ValueError, match="is not key=value"):
        parse(pair)


@pytest.mark.parametrize("config", [
    TrainConfig(data="ring", steps=10, lr=3e-4, binarize=True, image_size=32),
    VAEConfig(data_shape=(1, 8, 8), latent_dim=3, hidden_dims=(32, 16), beta=2.0),
    AutoencoderConfig(data_shape=(2,), code_activation="tanh", noise_std=0.1),
])
def test_json_round_trip(config):
    values = to_json_dict(config)
    assert all(not isinstance(v, tuple) for v in values.values())  # tuples become lists
    restored = parse_config(type(config), json.loads(json.dumps(values)), "config")
    assert restored == config
    assert isinstance(getattr(restored, "data_shape", ()), tuple)


def test_parse_config_fills_new_fields_and_rejects_unknown_ones():
    values = to_json_dict(TrainConfig())
    del values["keep_checkpoints"]  # a field added after the run was written: its default is used
    assert parse_config(TrainConfig, values, "train") == TrainConfig()
    with pytest.raises(ValueError, match="train: TrainConfig has no setting.* warmup"):
        parse_config(TrainConfig, {**values, "warmup": 10}, "train")


@pytest.mark.parametrize("settings,match", [
    ({"steps": 0}, "steps=0 is out of range: use 1..1000000000"),
    ({"batch_size": -1}, "batch_size=-1 is out of range"),
    ({"lr": 0.0}, "lr must be positive"),
])
def test_train_config_rejects_bad_values(settings, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**settings)


# --- check_fields: what a config.json edited by hand or a JSON request can hold ---------------------------

FAMILY_CONFIGS = [AutoencoderConfig, VAEConfig, GANConfig, DDPMConfig]


@pytest.mark.parametrize("config_class", [TrainConfig, *FAMILY_CONFIGS])
def test_every_config_builds_with_its_defaults_and_bounds_every_number(config_class):
    config = config_class()  # check_fields raises TypeError for a numeric field without a range
    assert dataclasses.asdict(config)


@pytest.mark.parametrize("config_class", FAMILY_CONFIGS)
@pytest.mark.parametrize("settings,match", [
    ({"latent_dim": 0}, "latent_dim=0 is out of range: use 1.."),
    ({"latent_dim": 10**9}, "latent_dim=1000000000 is out of range"),
    ({"latent_dim": "8"}, "latent_dim='8' is not an integer"),
    ({"latent_dim": True}, "latent_dim=True is not an integer"),
    ({"latent_dim": 8.0}, "latent_dim=8.0 is not an integer"),
    ({"hidden_dims": [-5]}, r"hidden_dims=\[-5\] is out of range"),
    ({"hidden_dims": [64] * 17}, "hidden_dims takes at most 16 values, got 17"),
    ({"conv_channels": [0]}, r"conv_channels=\[0\] is out of range"),
    ({"hidden_dims": 64}, "hidden_dims=64 is not a list of values"),
    ({"hidden_dims": ["a"]}, "hidden_dims='a' is not an integer"),
    ({"data_shape": [1, 0, 8]}, "data_shape=.* is out of range"),
    ({"architecture": "<script>"}, "architecture='<script>' is not one of"),
])
def test_family_configs_refuse_wrong_types_and_out_of_range_values(config_class, settings, match):
    if config_class is DDPMConfig:  # no latent, no conv: its T and U-Net widths stand in
        for ours, theirs in (("latent_dim", "num_timesteps"), ("conv_channels", "unet_channels")):
            if ours in settings:
                settings = {theirs: settings[ours]}
                match = match.replace(ours, theirs)
    with pytest.raises(ValueError, match=match):
        config_class(**settings)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("config_class,key", [(TrainConfig, "lr"), (VAEConfig, "beta"), (GANConfig, "gp_weight"),
                                              (GANConfig, "lr_d"), (AutoencoderConfig, "noise_std"),
                                              (DDPMConfig, "ema_decay")])
def test_non_finite_numbers_are_refused(config_class, key, value):
    with pytest.raises(ValueError, match=f"{key}=.* is not a finite number"):
        config_class(**{key: value})


@pytest.mark.parametrize("settings,match", [
    ({"seed": 2**70}, "seed=.* is out of range"), ({"seed": -1}, "seed=-1 is out of range"),
    ({"image_size": 20000}, "image_size=20000 is out of range: use 4..1024"),
    ({"batch_size": 10**8}, "batch_size=.* is out of range"), ({"channels": 4}, "channels=4 is out of range"),
    ({"steps": 2.5}, "steps=2.5 is not an integer"), ({"precision": "fp8"}, "precision='fp8' is not one of"),
])
def test_train_config_bounds(settings, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**settings)


def test_json_lists_stand_for_tuples_and_ints_for_floats():
    config = GANConfig(hidden_dims=[32, 32], betas=[0, 0.9], gp_weight=5)
    assert config.hidden_dims == (32, 32) and config.betas == (0, 0.9) and config.gp_weight == 5
    with pytest.raises(ValueError, match="betas must be two numbers in"):
        GANConfig(betas=[0.5, 1.0])
    with pytest.raises(ValueError, match="betas needs exactly 2 values, got 3"):
        GANConfig(betas=[0.5, 0.9, 0.9])
