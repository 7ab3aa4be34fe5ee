"""Mixed precision: every loss and head computes in float32 whatever its inputs' dtype, and every
registered stage-1 and stage-2 method trains under bf16 autocast with channels-last input.

Parametrised over every exported loss and the registries (HEADS, STAGE1, STAGE2), so a new entry is
covered without editing this file; a loss or head with an argument these pools do not know fails with a KeyError
naming it.

Tolerances (bf16 keeps 8 significant bits, a relative rounding error of at most 2**-9 = 0.2%):
- bf16 tensors fed directly to a loss / head: the result equals, bit for bit, the float32
  computation on the same (bf16-rounded) values, and is within BF16_LOSS (1% relative + 0.01
  absolute) of the float32-input loss: the only error left is the rounding of the inputs (measured:
  at most 0.05 on LDAM's 146, s = 30 times the rounding of the cosines; 0.009 elsewhere). Head
  logits (each a sum over 16 rounded features, up to about 30 in size): BF16_LOGITS, 2% + 0.05.
- A whole method under autocast against the same method in float32 on the same batch and
  weights: within METHOD_TOL (2% relative + 0.02 absolute); the backbone itself runs in bf16
  (measured on CPU: at most 0.011 on BCL's 11.0).
"""
import inspect

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import ConfigError
from pipeline.losses import loss_inputs
from pipeline.models.heads import HEADS, build_head
from pipeline.training.config import ModelConfig
from pipeline.training.methods import STAGE1, Task
from pipeline.training.rebalance import STAGE2
from pipeline.training.registry import build_stage1, build_stage2
from tools import loss_classes

B, C, D, E = 8, 5, 16, 8  # batch, classes, feature width, embedding width
COUNTS = (40, 20, 10, 5, 2)
BF16_LOSS = {"rtol": 1e-2, "atol": 1e-2}
BF16_LOGITS = {"rtol": 2e-2, "atol": 5e-2}
METHOD_TOL = {"rtol": 2e-2, "atol": 2e-2}

# Constructor arguments a loss may require (the reconstructed losses have no defaults).
LOSS_KNOBS = {
    "class_counts": COUNTS, "normal_mask": torch.tensor([True, False, False, False, False]),
    "tau": 0.1, "lambda_con": 0.5, "lambda_bdc": 0.5, "m": 0.3, "lambda_u": 0.1, "lambda_n": 0.01,
    "radius": 10.0,
}


def loss_arguments(generator: torch.Generator) -> dict:
    """One value per forward-argument name any loss uses (float32; epoch past LDAM's DRW start)."""
    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    return {
        "logits": 3 * randn(B, C), "labels": torch.arange(B) % C, "features": 3 * randn(B, D),
        "weight": randn(C, D), "view_embeddings": F.normalize(randn(B, 2, E), dim=-1),
        "prototypes": F.normalize(randn(C, E), dim=-1), "binary_logits": randn(B, 2),
        "image_embeddings": randn(B, E), "class_text_embeddings": randn(C, E), "text_embeddings": randn(B, E),
        "logit_scale": torch.tensor(30.0), "epoch": 200,
    }


def build_loss(cls: type[torch.nn.Module]) -> torch.nn.Module:
    wanted = [p.name for p in inspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.kind is p.KEYWORD_ONLY and (p.default is p.empty or p.name == "class_counts")]
    return cls(**{key: LOSS_KNOBS[key] for key in wanted})


def half(value):
    return value.bfloat16() if torch.is_tensor(value) and value.is_floating_point() else value


def upcast(value):
    return value.float() if torch.is_tensor(value) and value.is_floating_point() else value


@pytest.mark.parametrize("cls", loss_classes(), ids=lambda cls: cls.__name__)
def test_loss_of_bf16_inputs_is_float32(cls):
    loss_fn = build_loss(cls)
    full = {k: v for k, v in loss_arguments(torch.Generator().manual_seed(0)).items() if k in loss_inputs(loss_fn)}
    bf16 = {k: half(v).requires_grad_() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in full.items()}
    out = loss_fn(**bf16)
    assert {k: v.dtype for k, v in out.items()} == {k: torch.float32 for k in out}
    # Exactly the float32 computation on the bf16-rounded values: nothing is computed in bf16.
    same_values = loss_fn(**{k: upcast(v.detach()) if torch.is_tensor(v) else v for k, v in bf16.items()})
    assert {k: v.item() for k, v in out.items()} == {k: v.item() for k, v in same_values.items()}
    reference = loss_fn(**full)
    for part, value in out.items():
        assert value.item() == pytest.approx(reference[part].item(), rel=BF16_LOSS["rtol"], abs=BF16_LOSS["atol"]), part
    out["loss"].backward()
    grads = {k: v.grad for k, v in bf16.items() if torch.is_tensor(v) and v.requires_grad}
    assert grads and all(g is not None and g.dtype == torch.bfloat16 and torch.isfinite(g).all() for g in grads.values())


HEAD_EXTRA = {"balanced_adapter": lambda: {"class_embeddings": torch.randn(C, D)}}


@pytest.mark.parametrize("name", HEADS.names())
def test_head_of_bf16_features_gives_float32_logits(name):
    torch.manual_seed(0)
    head = build_head(name, in_features=D, num_classes=C, **HEAD_EXTRA.get(name, dict)())
    features = 3 * torch.randn(B, D)
    rounded = features.bfloat16()
    logits = head(rounded)
    assert logits.dtype == torch.float32
    assert torch.equal(logits, head(rounded.float()))
    torch.testing.assert_close(logits, head(features), **BF16_LOGITS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head(features).dtype == torch.float32


# ---- whole methods under autocast -------------------------------------------------------------

GREY = ModelConfig(backbone="resnet_small", channels=1, image_size=16, mean=(0.5,), std=(0.5,))
RGB = ModelConfig(backbone="resnet_small", channels=3, image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
CLIP_METHODS = {"clip", "zeroshot_clip"}


def task_for(method: str) -> Task:
    model = RGB if method in CLIP_METHODS else GREY
    return Task(class_counts=COUNTS, class_names=tuple(f"class {c}" for c in range(C)),
                many_threshold=15, few_threshold=5, model=model)


def stage1_method(name: str):
    torch.manual_seed(0)
    return build_stage1(name, {"kind": "tiny"} if name in CLIP_METHODS else {}, task_for(name))


def stage2_method(name: str):
    """The stage-2 method on the first registered stage-1 method it accepts (ce for the classifier
    re-balancers, clip for the balanced adapter)."""
    for first in STAGE1.names():
        try:
            method = build_stage2(name, {}, stage1_method(first), task_for(first))
        except ConfigError:
            continue
        return method, task_for(first)
    raise AssertionError(f"no stage-1 method accepts stage-2 method {name!r}")


def batch_for(method, task: Task, device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor, list[str]]:
    generator = torch.Generator().manual_seed(1)
    size = task.model.image_size
    views = [torch.randn(B, task.model.channels, size, size, generator=generator)
             .to(device).contiguous(memory_format=torch.channels_last) for _ in method.view_presets]
    return views, (torch.arange(B) % C).to(device), [f"train_{i:08d}" for i in range(B)]


def check_under_autocast(method, task: Task, device: torch.device) -> None:
    """Forward + backward under bf16 autocast as the loop runs it; the loss is float32 and close to the
    float32 loss of the same weights on the same batch; logits are finite."""
    method = method.to(device).to(memory_format=torch.channels_last).train()
    views, labels, keys = batch_for(method, task, device)
    if method.trains:
        reference = method(views, labels, keys, 0)["loss"].item()
        method.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = method(views, labels, keys, 0)
        assert out["loss"].dtype == torch.float32
        assert out["loss"].item() == pytest.approx(reference, rel=METHOD_TOL["rtol"], abs=METHOD_TOL["atol"])
        out["loss"].backward()
        trainable = [p for p in method.parameters() if p.requires_grad]
        assert trainable and all(p.grad is None or torch.isfinite(p.grad).all() for p in trainable)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    method.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        logits = method.logits(views[0])
    assert logits.shape == (B, C) and torch.isfinite(logits).all()


CPU = torch.device("cpu")


@pytest.mark.parametrize("name", STAGE1.names())
def test_stage1_method_under_cpu_bf16_autocast(name):
    check_under_autocast(stage1_method(name), task_for(name), CPU)


@pytest.mark.parametrize("name", STAGE2.names())
def test_stage2_method_under_cpu_bf16_autocast(name):
    check_under_autocast(*stage2_method(name), CPU)


# CPU autocast is not a stand-in for CUDA's: the two keep different ops in float32 (decreg once
# crashed only under CUDA autocast). This runs every method the way `fit` does on a GPU.
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("stage, name", [("stage1", n) for n in STAGE1.names()] + [("stage2", n) for n in STAGE2.names()])
def test_method_under_cuda_bf16_autocast(stage, name):
    method, task = (stage1_method(name), task_for(name)) if stage == "stage1" else stage2_method(name)
    check_under_autocast(method, task, torch.device("cuda"))
