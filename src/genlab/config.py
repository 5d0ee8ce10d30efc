"""`--set key=value` overrides for the config dataclasses: parsed by each field's declared type,
with unknown keys and mistyped values rejected in one line that says what would work."""

from __future__ import annotations

import dataclasses
import math
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
    return split_settings(key_values(pairs), config_classes)


def key_values(pairs: list[str], example: str = "lr=3e-4") -> dict[str, str]:
    """`--set key=value` strings as {key: text}, each checked to be key=value."""
    settings = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {pair!r} is not key=value, e.g. --set {example}")
        settings[key.strip()] = text.strip()
    return settings


def split_settings(settings: dict[str, Any], config_classes: list[type]) -> list[dict[str, Any]]:
    """One dict per config class (the first class that has the key). Text is parsed by the field's declared
    type, as --set writes it; other values (a JSON request's numbers, lists, booleans) are kept as given, lists
    as tuples, for the config's own check_fields to judge."""
    hints = [typing.get_type_hints(cls) for cls in config_classes]
    names = [{field.name for field in dataclasses.fields(cls)} for cls in config_classes]
    result: list[dict[str, Any]] = [{} for _ in config_classes]
    for key, value in settings.items():
        for index, cls_names in enumerate(names):
            if key in cls_names:
                result[index][key] = (_parse(value, hints[index][key], key) if isinstance(value, str)
                                      else tuple(value) if isinstance(value, list) else value)
                break
        else:
            valid = sorted(set().union(*names))
            raise ValueError(f"unknown setting {key!r}: valid settings are {', '.join(valid)}")
    return result


def to_json_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON values (tuples become lists)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(config).items()}


def one_line(error: BaseException) -> str:
    """An error's message on one line of at most ~200 characters, for messages that quote it."""
    text = " ".join(str(error).split())
    return text[:200] + "..." if len(text) > 200 else text


def parse_config(cls: type, values: Any, what: str):
    """A config dataclass from its JSON object (`to_json_dict`'s output): fields added since it was written take
    their defaults, unknown ones fail; ValueError naming `what` (a file, a key) when it does not fit."""
    if not isinstance(values, dict):
        raise ValueError(f"{what} is not a JSON object")
    if unknown := set(values) - {field.name for field in dataclasses.fields(cls)}:
        raise ValueError(f"{what}: {cls.__name__} has no setting(s) {', '.join(sorted(map(str, unknown)))}: "
                         "was this written by a newer genlab?")
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:  # TypeError: a key the dataclass does not take positionally
        raise ValueError(f"{what}: {one_line(error)}") from None


def check_fields(config: Any, ranges: dict[str, tuple[float, float]]) -> None:
    """Refuse what no run can use, in one line naming the setting: a value of the wrong type (an edited
    config.json, a JSON request), a number that is not finite, a number outside its range.

    `ranges` maps every numeric field to inclusive (low, high); for a tuple field each item is checked. A
    numeric field without a range is a bug in the config class (every setting has an upper bound: a huge
    one is how a single request grows a process to tens of GB), so it raises TypeError.
    """
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        _check_type(value, hints[field.name], field.name)
        numbers = [item for item in (value if isinstance(value, (tuple, list)) else (value,))
                   if isinstance(item, (int, float)) and not isinstance(item, bool)]
        if not numbers:
            continue
        if field.name not in ranges:
            raise TypeError(f"{type(config).__name__}.{field.name} has no range in check_fields")
        low, high = ranges[field.name]
        for number in numbers:
            if not math.isfinite(number):
                raise ValueError(f"{field.name}={value} is not a finite number")
            if not low <= number <= high:
                raise ValueError(f"{field.name}={value} is out of range: use {_show(low)}..{_show(high)}")


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _check_type(value: Any, annotation: Any, key: str) -> None:
    """Whether `value` fits its annotation as JSON could carry it (lists stand for tuples; ints for floats)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, key)
            except ValueError as error:
                errors.append(error)
        raise errors[0]
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ValueError(f"{key}={value!r} is not one of {', '.join(map(str, choices))}")
        return
    if origin is tuple:
        items = typing.get_args(annotation)
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"{key}={value!r} is not a list of values, e.g. {key}=128,128")
        if len(items) == 2 and items[1] is Ellipsis:
            if len(value) > MAX_ITEMS:
                raise ValueError(f"{key} takes at most {MAX_ITEMS} values, got {len(value)}")
            items = (items[0],) * len(value)
        elif len(value) != len(items):
            raise ValueError(f"{key} needs exactly {len(items)} values, got {len(value)}")
        for item, item_type in zip(value, items, strict=True):
            _check_type(item, item_type, key)
        return
    expected = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(annotation)
    if expected is None:
        raise TypeError(f"check_fields cannot check {key}: {annotation}")
    if not isinstance(value, expected) or (annotation is not bool and isinstance(value, bool)):
        names = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
        raise ValueError(f"{key}={value!r} is not {names[annotation]}")


MAX_ITEMS = 16  # entries in a list setting (hidden_dims, conv_channels...): more layers than any CPU run wants
