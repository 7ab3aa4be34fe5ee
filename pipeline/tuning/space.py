"""What a sweep can search, and how a sampled value reaches a stage's configuration.

The sweep parameters (docs/methods.md) are method-independent names (temperature,
margin, residual factor, augmentation magnitude; plus lr and weight decay). A
method declares which of its knobs each one sets, on its `Params` fields
(`sweep_knob`); the table of what can be searched is read from the method
registries. A name the chosen method does not use is a ConfigError naming it,
never a silently ignored dimension.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from pipeline.config import ConfigError, require, sweep_knobs
from pipeline.training.config import StageConfig
from pipeline.training.registry import METHODS, method_class

Scale = Literal["log", "linear", "int"]
STAGE_FIELDS = ("lr", "weight_decay")  # StageConfig fields every training method has


@dataclass(frozen=True)
class SweepParameter:
    """How a sweep parameter is sampled, and the closed interval its searched range must lie in."""

    scale: Scale
    domain: tuple[float, float]


SWEEP_PARAMETERS: dict[str, SweepParameter] = {
    "temperature": SweepParameter("log", (1e-4, 10.0)),
    "margin": SweepParameter("linear", (0.0, 2.0)),
    "residual_factor": SweepParameter("linear", (0.0, 1.0)),
    "magnitude": SweepParameter("int", (0, 30)),
    "lr": SweepParameter("log", (1e-8, 10.0)),
    "weight_decay": SweepParameter("log", (1e-8, 1.0)),
}


@dataclass(frozen=True)
class Knob:
    """A searchable parameter: its stage, its sampling scale, its legal domain and, for method knobs,
    the `stageN.params` key of each method that has it."""

    stage: str | None  # None: a StageConfig field of whichever stage is swept
    scale: Scale
    domain: tuple[float, float]  # closed interval the searched range must lie in
    targets: Mapping[str, str] = dataclasses.field(default_factory=dict)  # method -> params key


@functools.cache
def knobs() -> dict[str, Knob]:
    """Every searchable parameter, from the knobs the registered methods that train declare
    (a method with nothing to learn has nothing to sweep)."""
    method_parameters = [name for name in SWEEP_PARAMETERS if name not in STAGE_FIELDS]
    declared: dict[str, dict[str, dict[str, str]]] = {}  # parameter -> stage -> method -> params key
    for stage, registry in METHODS.items():
        for method, cls in registry.items():
            if not cls.trains:
                continue
            for parameter, key in sweep_knobs(cls.Params).items():
                if parameter not in method_parameters:
                    raise TypeError(f"{cls.__name__}.Params.{key}: {parameter!r} is not a method sweep parameter; "
                                    f"known: {', '.join(method_parameters)}")
                declared.setdefault(parameter, {}).setdefault(stage, {})[method] = key
    table = {}
    for name, parameter in SWEEP_PARAMETERS.items():
        if name in STAGE_FIELDS:
            table[name] = Knob(None, parameter.scale, parameter.domain)
        elif name in declared:
            if len(declared[name]) > 1:  # resolve_space reads a method knob's stage off its name
                raise TypeError(f"sweep parameter {name!r} is declared by methods of both stages")
            (stage, targets), = declared[name].items()
            table[name] = Knob(stage, parameter.scale, parameter.domain, targets)
    return table


@dataclass(frozen=True)
class Dimension:
    """One searched dimension, resolved against the sweep's stages and methods."""

    name: str  # as written in tune.space (e.g. "temperature", "lr", "stage2.lr")
    stage: str  # "stage1" or "stage2"
    field: str  # StageConfig field ("lr", "weight_decay") or "params"
    key: str | None  # the method's params key when field == "params"
    scale: Scale
    low: float
    high: float


def resolve_space(space: Mapping[str, tuple[float, float]], methods: Mapping[str, str]) -> list[Dimension]:
    """Check `tune.space` against the swept stages (`methods`: stage -> method name) and resolve each
    entry to the configuration field it sets. Raises ConfigError naming the offending entry."""
    require(len(space) > 0, "tune.space", "name at least one parameter to search")
    dims = []
    for name, bounds in space.items():
        key = f"tune.space.{name}"
        stage_prefix, _, base = name.rpartition(".")
        table = knobs()
        require(base in table, key, f"unknown parameter {base!r}; searchable: {', '.join(table)}")
        knob = table[base]
        require(len(bounds) == 2 and bounds[0] < bounds[1], key, f"expected [low, high] with low < high, got {list(bounds)}")
        low, high = bounds
        require(knob.domain[0] <= low and high <= knob.domain[1], key,
                f"[{low}, {high}] leaves the domain [{knob.domain[0]}, {knob.domain[1]}]")
        if knob.scale == "int":
            require(float(low).is_integer() and float(high).is_integer(), key, "takes integer bounds")
        if knob.stage is None:
            stage = _stage_of_common_knob(name, stage_prefix, methods)
            if stage_prefix == "" or stage_prefix == stage:
                dims.append(Dimension(name, stage, base, None, knob.scale, low, high))
            continue
        require(stage_prefix in ("", knob.stage), key, f"{base} belongs to {knob.stage}")
        method = methods.get(knob.stage)
        if method is None:
            raise ConfigError(f"{key}: {base} is a {knob.stage} parameter, but the sweep searches "
                              f"{' and '.join(methods)} only (tune.stage)")
        if method not in knob.targets:
            raise ConfigError(f"{key}: {knob.stage} method {method!r} does not use {base}; it applies to "
                              f"{', '.join(knob.targets)}")
        dims.append(Dimension(name, knob.stage, "params", knob.targets[method], knob.scale, low, high))
    return dims


def _stage_of_common_knob(name: str, prefix: str, methods: Mapping[str, str]) -> str:
    key = f"tune.space.{name}"
    if prefix:
        require(prefix in methods, key, f"{prefix} is not searched by this sweep (tune.stage)")
        return prefix
    require(len(methods) == 1, key, f"ambiguous with both stages searched; write stage1.{name} or stage2.{name}")
    return next(iter(methods))


def apply_values(stage: str, config: StageConfig, dims: list[Dimension], values: Mapping[str, Any]) -> StageConfig:
    """`config` with the sampled `values` (by dimension name) of this stage's dimensions set."""
    params = dict(config.params)
    fields: dict[str, Any] = {}
    for dim in dims:
        if dim.stage != stage:
            continue
        value = int(values[dim.name]) if dim.scale == "int" else float(values[dim.name])
        if dim.field == "params":
            params[dim.key] = value
        else:
            fields[dim.field] = value
    return dataclasses.replace(config, params=params, **fields)


def overlay(dims: list[Dimension], values: Mapping[str, Any]) -> dict[str, dict]:
    """The params.yaml overlay that sets `values`: {stage: {field: v, "params": {key: v}}}."""
    out: dict[str, dict] = {}
    for dim in dims:
        value = int(values[dim.name]) if dim.scale == "int" else float(values[dim.name])
        section = out.setdefault(dim.stage, {})
        if dim.field == "params":
            section.setdefault("params", {})[dim.key] = value
        else:
            section[dim.field] = value
    return out


def default_values(dims: list[Dimension], configs: Mapping[str, StageConfig]) -> dict[str, Any] | None:
    """The values params.yaml already sets (a method default when `params` omits the key), as the
    first point to evaluate; None when one of them lies outside its searched range."""
    values = {}
    for dim in dims:
        config = configs[dim.stage]
        if dim.field == "params":
            defaults = {f.name: f.default for f in dataclasses.fields(method_class(dim.stage, config.method).Params)}
            value = config.params.get(dim.key, defaults.get(dim.key))
        else:
            value = getattr(config, dim.field)
        if value is None or not dim.low <= value <= dim.high:
            return None
        values[dim.name] = value
    return values

