"""Stage-2 methods: classifier re-balancing on the frozen stage-1 model (decoupling, Kang et al. 2020;
ECVL's balanced adapter). Each wraps a trained stage-1 Method and is itself a Method."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.augment.batched import BatchedRandAugment
from pipeline.augment.memorisation import MomentumLossTracker, PerSampleRandAugment
from pipeline.config import ConfigError, require, sweep_knob
from pipeline.losses import CrossEntropy
from pipeline.models.heads import BalancedAdapterHead, LinearHead, LWSHead, TauNormHead
from pipeline.registry import Registry
from pipeline.training.methods import STAGE1, CLIPFineTune, Method, Task

STAGE2: Registry[type[Method]] = Registry("stage2 method")  # looked up through pipeline.training.registry


class FrozenStage1(Method):
    """Base of stage-2 methods: the stage-1 model is frozen and kept in eval mode (BN statistics too)."""

    default_sampler = "class_balanced"

    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, stage1: Method) -> None:
        super().__init__()
        self.stage1 = stage1.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "FrozenStage1":
        super().train(mode)
        self.stage1.eval()
        return self

    def features(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            return self.stage1.features(images)



def _feature_dim(stage1: Method, task: Task) -> int:
    """Width of the stage-1 features, read off one forward pass (whatever the backbone)."""
    size = task.model.image_size
    with torch.no_grad():
        return stage1.eval().features(torch.zeros(1, task.model.channels, size, size)).shape[1]


def _stage1_linear_head(stage1: Method, method: str) -> nn.Linear:
    if stage1.classifier != "linear":
        with_one = [name for name, cls in STAGE1.items() if cls.classifier == "linear"]
        raise ConfigError(f"stage2.method: {method} re-scales a linear classifier; use a stage-1 method "
                          f"with one ({', '.join(with_one)})")
    return stage1.head


class _HeadOnFrozen(FrozenStage1):
    """A new or re-scaled head on frozen stage-1 features, trained with CE."""

    def __init__(self, stage1: Method, head: nn.Module) -> None:
        super().__init__(stage1)
        self.head = head
        self.loss_fn = CrossEntropy()

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))

    def forward(self, views: Sequence[Tensor], labels: Tensor, keys: Sequence[str], epoch: int) -> dict:
        return self.loss_fn(logits=self.head(self.features(views[0])), labels=labels)


@STAGE2.register("none")
class NoRebalancing(FrozenStage1):
    """Stage 2 skipped: the stage-1 model as it is."""

    trains = False

    def __init__(self, params: FrozenStage1.Params, stage1: Method, task: Task) -> None:
        super().__init__(stage1)

    def logits(self, images: Tensor) -> Tensor:
        return self.stage1.logits(images)


@STAGE2.register("crt")
class ClassifierRetraining(_HeadOnFrozen):
    """cRT: re-initialise and retrain a linear classifier with class-balanced sampling."""

    def __init__(self, params: FrozenStage1.Params, stage1: Method, task: Task) -> None:
        super().__init__(stage1, LinearHead(_feature_dim(stage1, task), task.num_classes))


@STAGE2.register("lws")
class LearnableWeightScaling(_HeadOnFrozen):
    """LWS: learn one scale per class on the frozen stage-1 linear classifier."""

    def __init__(self, params: FrozenStage1.Params, stage1: Method, task: Task) -> None:
        super().__init__(stage1, LWSHead.from_linear(_stage1_linear_head(stage1, "lws")))


@STAGE2.register("tau_norm")
class TauNormalisation(_HeadOnFrozen):
    """tau-norm: w_c <- w_c / ||w_c||^t on the stage-1 linear classifier, no bias, no training."""

    trains = False

    @dataclass(frozen=True)
    class Params:
        t: float = 1.0

        def __post_init__(self) -> None:
            require(0.0 <= self.t <= 2.0, "stage2.params.t", f"must be in [0, 2], got {self.t}")

    def __init__(self, params: Params, stage1: Method, task: Task) -> None:
        super().__init__(stage1, TauNormHead.from_linear(_stage1_linear_head(stage1, "tau_norm"), t=params.t))


@STAGE2.register("balanced_adapter")
class BalancedAdapter(FrozenStage1):
    """ECVL stage 2: balanced linear adapter with residual factor alpha on frozen CLIP towers,
    classifying against the frozen class-text embeddings, with memorisation-driven RandAugment:
    each sample's augmentation strength follows its momentum loss (docs/methods.md)."""

    view_presets = ("none",)  # augmentation is per sample, in augment()

    @dataclass(frozen=True)
    class Params:
        alpha: float = sweep_knob("residual_factor", 0.2)
        momentum: float = 0.97
        num_ops: int = 2  # k
        magnitude_min: float = 0.0  # M_min
        magnitude_max: float = sweep_knob("magnitude", 10.0)  # M_max, the "augmentation magnitude"

        def __post_init__(self) -> None:
            require(0.0 <= self.alpha <= 1.0, "stage2.params.alpha", f"must be in [0, 1], got {self.alpha}")

    def __init__(self, params: Params, stage1: Method, task: Task) -> None:
        if not isinstance(stage1, CLIPFineTune):
            clip = [name for name, cls in STAGE1.items() if issubclass(cls, CLIPFineTune)]
            raise ConfigError(f"stage2.method: balanced_adapter needs a CLIP stage 1 ({' or '.join(clip)})")
        super().__init__(stage1)
        with torch.no_grad():
            classes = stage1.class_embeddings()
        self.head = BalancedAdapterHead(classes.shape[1], task.num_classes, class_embeddings=classes,
                                        alpha=params.alpha, logit_scale=float(stage1.clip.logit_scale.exp()))
        self.randaugment = PerSampleRandAugment(params.num_ops, params.magnitude_max, params.magnitude_min)
        self.batched_randaugment = BatchedRandAugment(params.num_ops, params.magnitude_max, params.magnitude_min)
        self.tracker = MomentumLossTracker(params.momentum)
        self.loss_fn = CrossEntropy()
        self._epoch_keys: list[str] = []
        self._epoch_losses: list[Tensor] = []

    def augment(self, images: Tensor, keys: Sequence[str], batched: bool = False) -> list[Tensor]:
        weights = self.tracker.weights(keys)
        if batched:
            return [self.batched_randaugment(images, weights.to(images.device))]
        return [self.randaugment.augment_batch(images, weights)]

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))

    def forward(self, views: Sequence[Tensor], labels: Tensor, keys: Sequence[str], epoch: int) -> dict:
        per_sample = F.cross_entropy(self.head(self.features(views[0])), labels, reduction="none")
        self._epoch_keys.extend(keys)
        self._epoch_losses.append(per_sample.detach().float().cpu())
        return {"loss": per_sample.mean(), "ce_loss": per_sample.mean().detach()}

    def end_epoch(self, epoch: int) -> None:
        """One momentum update per epoch (a sample seen twice contributes its mean loss), then the
        trackers of all ranks are merged so every rank normalises weights over all samples."""
        if self._epoch_keys:
            self.tracker.update(self._epoch_keys, torch.cat(self._epoch_losses))
        self._epoch_keys, self._epoch_losses = [], []
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            states = [None] * dist.get_world_size()
            dist.all_gather_object(states, self.tracker.state_dict())
            merged = MomentumLossTracker(self.tracker.momentum)
            for state in states:  # ranks read disjoint shards; the union is every tracked sample
                part = MomentumLossTracker()
                part.load_state_dict(state)
                merged._values.update(part._values)
            self.tracker = merged

    def get_extra_state(self) -> dict:
        return self.tracker.state_dict()

    def set_extra_state(self, state: dict) -> None:
        self.tracker.load_state_dict(state)
