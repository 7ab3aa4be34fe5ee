"""The methods of both training stages by params name: the one lookup of a stage's method.

A method is one registered class (pipeline.training.methods for stage 1, rebalance for stage 2)
with its `Params`; the check stage, the training stages, the sweep table and the report find it here.
"""
from __future__ import annotations

from typing import Any, Mapping

from pipeline.config import ConfigError, from_mapping
from pipeline.registry import Registry
from pipeline.training.methods import STAGE1, Method, Task
from pipeline.training.rebalance import STAGE2

METHODS: dict[str, Registry[type[Method]]] = {"stage1": STAGE1, "stage2": STAGE2}


def method_class(stage: str, name: str) -> type[Method]:
    """The registered class of `stage`'s method `name`; an unknown name is a ConfigError listing the valid ones."""
    registry = METHODS[stage]
    if name not in registry:
        raise ConfigError(f"{stage}.method: unknown method {name!r}; valid: {', '.join(registry.names())}")
    return registry.get(name)


def method_params(stage: str, name: str, params: Mapping[str, Any]) -> Any:
    """`stageN.params` parsed into the method's `Params` (unknown keys, types and ranges raise ConfigError)."""
    return from_mapping(method_class(stage, name).Params, params, f"{stage}.params")


def build_stage1(name: str, params: Mapping[str, Any], task: Task) -> Method:
    """Build a registered stage-1 method from its `stage1.params`."""
    return method_class("stage1", name)(method_params("stage1", name, params), task)


def build_stage2(name: str, params: Mapping[str, Any], stage1: Method, task: Task) -> Method:
    """Wrap a trained stage-1 method in a registered stage-2 method built from its `stage2.params`."""
    return method_class("stage2", name)(method_params("stage2", name, params), stage1, task)
