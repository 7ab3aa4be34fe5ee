"""Strict parsing of params.yaml sections into frozen dataclasses.

Stages call `parse_section(ConfigClass, params, "section")` once, before any
work: an unknown key, a wrong type or an out-of-range value raises ConfigError
naming the full params key (e.g. ``split.imbalance_ratio``). Each config class
checks its ranges in `__post_init__`, so parsing a section validates it completely.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


class ConfigError(ValueError):
    """A params.yaml value is missing, unknown, mistyped or out of range."""


def require(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError for params key `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


SWEEP = "sweep"  # dataclass field metadata: the sweep parameter (tune.space name) that searches the field


def sweep_knob(parameter: str, default: Any) -> Any:
    """A config field with `default` that sweeps search under the name `parameter` (e.g. "temperature")."""
    return dataclasses.field(default=default, metadata={SWEEP: parameter})


def sweep_knobs(cls: type) -> dict[str, str]:
    """The fields of dataclass `cls` declared with `sweep_knob`: sweep parameter -> field name."""
    return {f.metadata[SWEEP]: f.name for f in dataclasses.fields(cls) if SWEEP in f.metadata}


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {annotation}")
    if origin is Literal:
        allowed = get_args(annotation)
        require(value in allowed, key, f"{value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (tuple, list):
        require(isinstance(value, (list, tuple)), key, f"expected a list, got {value!r}")
        (item,) = get_args(annotation)[:1]
        return tuple(_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        require(isinstance(value, Mapping), key, f"expected a mapping, got {value!r}")
        k_type, v_type = get_args(annotation)
        return {
            _check_type(k, k_type, key): _check_type(v, v_type, f"{key}.{k}") for k, v in value.items()
        }
    if dataclasses.is_dataclass(annotation):
        require(isinstance(value, Mapping), key, f"expected a mapping, got {value!r}")
        return from_mapping(annotation, value, key)
    if annotation is bool:
        require(isinstance(value, bool), key, f"expected true/false, got {value!r}")
        return value
    if annotation is int:
        require(isinstance(value, int) and not isinstance(value, bool), key, f"expected an integer, got {value!r}")
        return value
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        require(ok, key, f"expected a number, got {value!r}")
        # YAML's .inf / .nan parse as floats; no knob means them, and they fail only deep in training
        require(math.isfinite(value), key, f"expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        require(isinstance(value, str), key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")


def from_mapping(cls: type[T], data: Mapping[str, Any], section: str) -> T:
    """Build dataclass `cls` from `data`; keys are reported as `section.key`."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    require(not unknown, f"{section}.{unknown[0]}" if unknown else section,
            f"unknown key; valid keys: {', '.join(sorted(fields))}")
    values = {}
    for name, field in fields.items():
        key = f"{section}.{name}"
        if name in data:
            values[name] = _check_type(data[name], hints[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section}: {exc}") from exc


def parse_section(cls: type[T], params: Mapping[str, Any], section: str) -> T:
    """Parse `params[section]` (a missing section means all defaults)."""
    data = params.get(section) or {}
    require(isinstance(data, Mapping), section, "expected a mapping")
    return from_mapping(cls, data, section)
