"""A method is one registered class with its Params: every registered method is reachable from params
(the check stage accepts it), from sweeps (its declared knobs, or `trains = False`: nothing to sweep)
and from the report (published figures name registered methods); every declared knob is a real field;
what other code reads off a method class (its classifier head) is what the method builds."""
import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, sweep_knobs
from pipeline.models.heads import HEADS
from pipeline.reporting.published import PUBLISHED, CIFAR100_LT, comparable
from pipeline.reporting.records import RunLabel
from pipeline.training.config import ModelConfig, Stage1Config, Stage2Config
from pipeline.training.methods import Task
from pipeline.training.registry import METHODS, build_stage1, build_stage2, method_class
from pipeline.tuning.space import STAGE_FIELDS, SWEEP_PARAMETERS, knobs, resolve_space
from stages.__main__ import main as ltp

ROOT = Path(__file__).resolve().parents[1]
REGISTERED = [(stage, name) for stage, registry in METHODS.items() for name in registry.names()]


@pytest.mark.parametrize("stage,name", REGISTERED)
def test_every_declared_knob_is_a_number_field_named_by_a_method_sweep_parameter(stage, name):
    params = method_class(stage, name).Params
    fields = {f.name: f for f in dataclasses.fields(params)}
    hints = typing.get_type_hints(params)
    for parameter, key in sweep_knobs(params).items():
        assert key in fields
        assert parameter in SWEEP_PARAMETERS and parameter not in STAGE_FIELDS, parameter
        assert float in typing.get_args(hints[key]) or hints[key] in (float, int), (key, hints[key])
        low, high = SWEEP_PARAMETERS[parameter].domain
        default = fields[key].default
        assert default is None or low <= default <= high, (key, default)


def test_the_sweep_table_is_the_methods_declarations_and_every_parameter_is_used():
    table = knobs()  # builds: each parameter declared by the methods of one stage only
    assert list(table) == list(SWEEP_PARAMETERS)  # no sweep parameter that no method declares
    for parameter, knob in table.items():
        for method, key in knob.targets.items():
            assert sweep_knobs(method_class(knob.stage, method).Params)[parameter] == key


@pytest.mark.parametrize("stage,name", REGISTERED)
def test_every_method_is_accepted_by_the_check_stage(tmp_path, stage, name):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[stage] = {"method": name}  # each method's own defaults, and the stage's
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert ltp(["check", "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "in")]) == 0


@pytest.mark.parametrize("stage,name", REGISTERED)
def test_every_method_that_trains_is_sweepable_and_only_those(stage, name):
    cls = method_class(stage, name)
    declared = sweep_knobs(cls.Params)
    if not cls.trains:  # explicitly not sweepable: the sweep table leaves its knobs out
        assert all(name not in knob.targets for knob in knobs().values())
        return
    space = {"lr": (0.01, 0.1), **{p: SWEEP_PARAMETERS[p].domain for p in declared}}
    dims = resolve_space(space, {stage: name})
    assert {d.key for d in dims if d.field == "params"} == set(declared.values())
    assert all(d.stage == stage for d in dims)


def test_every_published_figure_names_registered_methods():
    for figures in PUBLISHED.values():
        for figure in figures:
            if figure.ours is not None:
                stage1, stage2 = figure.ours
                method_class("stage1", stage1), method_class("stage2", stage2)  # ConfigError if not


@pytest.mark.parametrize("stage,name", REGISTERED)
def test_the_report_matches_a_run_of_every_method_by_its_registered_name(stage, name):
    pair = (name, "none") if stage == "stage1" else ("ce", name)
    label = RunLabel(dataset=CIFAR100_LT.dataset, profile=CIFAR100_LT.profile, rho=CIFAR100_LT.rho,
                     stage1=pair[0], stage2=pair[1], seed="0", backbone=CIFAR100_LT.backbone,
                     epochs=f"{CIFAR100_LT.stage1_epochs}+10", params="")
    protocol, figure, sentence = comparable(label)
    assert protocol is CIFAR100_LT
    published = {f.ours for f in PUBLISHED[CIFAR100_LT]}
    if pair in published:
        assert figure.ours == pair
    else:
        assert figure is None and f"no published figure for {pair[0]} + {pair[1]}" in sentence


@pytest.mark.parametrize("cls,values,message", [
    (Stage1Config, {"method": "focal"}, "stage1.method: unknown method 'focal'; valid: balanced_softmax, bcl"),
    (Stage2Config, {"method": "bcl"}, "stage2.method: unknown method 'bcl'; valid: balanced_adapter"),
    (Stage1Config, {"method": "ce", "epochs": 0}, "stage1.epochs: must be >= 1 for 'ce', which trains"),
    (Stage1Config, {"method": "la", "params": {"tau": "one"}}, "stage1.params.tau: expected a number"),
    (Stage2Config, {"method": "tau_norm", "params": {"t": -1.0}}, "stage2.params.t: must be in [0, 2]"),
])
def test_constructing_a_stage_config_validates_it_completely(cls, values, message):
    with pytest.raises(ConfigError) as error:
        cls(**values)
    assert str(error.value).startswith(message)


def test_a_changed_stage_config_is_validated_again():
    config = Stage2Config(method="tau_norm", epochs=0)  # tau-norm learns nothing: 0 epochs is fine
    with pytest.raises(ConfigError, match=r"^stage2\.params\.t: must be in \[0, 2\], got 2\.5"):
        dataclasses.replace(config, params={"t": 2.5})
    with pytest.raises(ConfigError, match=r"^stage2\.epochs: must be >= 1 for 'crt'"):
        dataclasses.replace(config, method="crt")


TASK = Task((50, 20, 5), ("a", "b", "c"), 30, 10, ModelConfig())


def test_each_stage1_method_builds_the_classifier_head_it_declares():
    for name in METHODS["stage1"].names():
        method = build_stage1(name, {}, TASK)
        declared = method_class("stage1", name).classifier
        if declared is None:
            assert not hasattr(method, "head"), name
        else:
            assert type(method.head) is HEADS.get(declared), name


@pytest.mark.parametrize("stage2,stage1,message", [
    ("lws", "bcl", "stage2.method: lws re-scales a linear classifier; use a stage-1 method with one "
                   "(ce, la, balanced_softmax, jrcl)"),
    ("tau_norm", "ldam_drw", "stage2.method: tau_norm re-scales a linear classifier; use a stage-1 method with one "
                             "(ce, la, balanced_softmax, jrcl)"),
    ("balanced_adapter", "ce", "stage2.method: balanced_adapter needs a CLIP stage 1 (clip or zeroshot_clip)"),
])
def test_a_stage2_method_names_the_stage1_methods_it_fits(stage2, stage1, message):
    with pytest.raises(ConfigError) as error:
        build_stage2(stage2, {}, build_stage1(stage1, {}, TASK), TASK)
    assert str(error.value) == message
