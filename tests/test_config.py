"""`--set key=value` parsing by declared field types, its error messages, and the JSON round trip
of config dataclasses."""

from __future__ import annotations

import dataclasses
import json

import pytest

from genlab.config import from_json_dict, parse_overrides, to_json_dict
from genlab.models.autoencoder import AutoencoderConfig
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
    restored = from_json_dict(type(config), json.loads(json.dumps(values)))
    assert restored == config
    assert isinstance(getattr(restored, "data_shape", ()), tuple)


def test_from_json_dict_fills_new_fields_and_rejects_unknown_ones():
    values = to_json_dict(TrainConfig())
    del values["keep_checkpoints"]  # a field added after the run was written: its default is used
    assert from_json_dict(TrainConfig, values) == TrainConfig()
    with pytest.raises(ValueError, match="TrainConfig has no setting.* warmup"):
        from_json_dict(TrainConfig, {**values, "warmup": 10})


@pytest.mark.parametrize("settings,match", [
    ({"steps": 0}, "steps must be at least 1, got 0"),
    ({"batch_size": -1}, "batch_size must be at least 1"),
    ({"lr": 0.0}, "lr must be positive"),
])
def test_train_config_rejects_bad_values(settings, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**settings)
