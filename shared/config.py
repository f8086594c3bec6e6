"""Dataclass configs that round-trip through JSON and fail loudly on typos.

`from_dict` rejects unknown keys and wrong types, naming the key; `apply_overrides` takes
`key=value` strings from a command line (values parsed as JSON, else kept as strings).
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    """Return `value` coerced to `annotation` where that is lossless, else raise ValueError."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ValueError(f"config key '{name}': {value!r} is not one of {list(choices)}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(name, value, arg)
            except ValueError:
                pass
        raise ValueError(f"config key '{name}': {value!r} does not fit {annotation}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key '{name}': expected a list, got {value!r}")
        return origin(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key '{name}': expected a mapping, got {value!r}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool):
        if type(value) is not annotation:
            raise ValueError(
                f"config key '{name}': expected {annotation.__name__}, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config key(s) {unknown}; "
                         f"known keys are {sorted(names)}")
    values = {k: _check_type(k, v, hints[k]) for k, v in data.items()}
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def apply_overrides(obj: T, overrides: list[str]) -> T:
    """Return a copy of dataclass `obj` with `key=value` overrides (values parsed as JSON)."""
    data = to_dict(obj)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key not in data:
            raise ValueError(f"{type(obj).__name__}: unknown config key '{key}'; "
                             f"known keys are {sorted(data)}")
        data[key] = value
    return from_dict(type(obj), data)
