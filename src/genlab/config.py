"""`--set key=value` overrides for the config dataclasses: parsed by each field's declared type,
with unknown keys and mistyped values rejected in one line that says what would work."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal


def _parse(text: str, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if type(None) in options and text.lower() in ("none", "null", ""):
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _parse(text, option, key)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0])
    if origin is Literal:
        choices = typing.get_args(annotation)
        if text not in choices:
            raise ValueError(f"{key}={text!r} is not one of {', '.join(map(str, choices))}")
        return text
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        parts = [part for part in text.replace(" ", "").strip("()[]").split(",") if part]
        return tuple(_parse(part, item_type, key) for part in parts)
    if annotation is bool:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{key}={text!r} is not a boolean: use true or false")
    if annotation in (int, float):
        try:
            return annotation(text)
        except ValueError:
            raise ValueError(f"{key}={text!r} is not {'an integer' if annotation is int else 'a number'}") from None
    if annotation is str:
        return text
    raise ValueError(f"{key} cannot be set from the command line")


def parse_overrides(pairs: list[str], config_classes: list[type]) -> list[dict[str, Any]]:
    """Split `key=value` strings into one dict of typed values per config class (first class that has the key).

    >>> parse_overrides(["lr=3e-4", "hidden_dims=512,256"], [TrainConfig, VAEConfig])
    [{'lr': 0.0003}, {'hidden_dims': (512, 256)}]
    """
    hints = [typing.get_type_hints(cls) for cls in config_classes]
    names = [{field.name for field in dataclasses.fields(cls)} for cls in config_classes]
    result: list[dict[str, Any]] = [{} for _ in config_classes]
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {pair!r} is not key=value, e.g. --set lr=3e-4")
        for index, cls_names in enumerate(names):
            if key in cls_names:
                result[index][key] = _parse(text.strip(), hints[index][key], key)
                break
        else:
            valid = sorted(set().union(*names))
            raise ValueError(f"unknown setting {key!r}: valid settings are {', '.join(valid)}")
    return result


def to_json_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON values (tuples become lists)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(config).items()}


def from_json_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from `to_json_dict` output; fields added since default, unknown ones fail."""
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting(s) {', '.join(sorted(unknown))}: "
                         "was this written by a newer genlab?")
    return cls(**values)
