"""Stage-1 methods: a method is model + loss behind one interface, registered by its params name.

The training loop only ever calls `forward` (one step's loss dict), `logits`
(inference) and `end_epoch`; a new method is a new registered class, never an
edit to the loop. Each class carries a `Params` dataclass: its knobs from
params.yaml `stage1.params`, with the published values as defaults where
there are any (docs/methods.md lists every knob), their ranges checked when
params are parsed, and the knobs sweeps search declared with `sweep_knob`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import require, sweep_knob
from pipeline.losses import (
    BCL, JRCL, LDAMDRW, BalancedSoftmax, ClipClassText, ClipInfoNCE, CrossEntropy, DecoupledRegularisation,
    LogitAdjustedCE, loss_inputs, normal_mask_from_classes, normal_mask_from_counts,
)
from pipeline.models.backbones import build_backbone
from pipeline.models.heads import ProjectionMLP, build_head
from pipeline.registry import Registry
from pipeline.training.augment import augment_views
from pipeline.training.config import ModelConfig


@dataclass(frozen=True)
class Task:
    """What a method is built for: the long-tailed training split and the input format."""

    class_counts: tuple[int, ...]
    class_names: tuple[str, ...]
    many_threshold: int
    few_threshold: int
    model: ModelConfig

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)


class Method(nn.Module):
    """Model + loss. forward(views, labels, keys, epoch) -> {"loss": ..., parts}; logits(images)."""

    view_presets: tuple[str, ...] = ("basic",)  # one augmentation preset per view fed to forward
    default_sampler = "instance_balanced"
    trains = True  # False: nothing to learn (zero-shot CLIP, tau-norm, stage-2 "none")
    classifier: str | None = None  # the HEADS name of the method's classifier head, if it has one
    loss_fn: nn.Module

    def augment(self, images: Tensor, keys: Sequence[str], batched: bool = False) -> list[Tensor]:
        """uint8 views of a uint8 batch, one per view preset (normalisation follows in the loop);
        `batched`: as tensor ops on the batch's device (pipeline.augment.batched)."""
        return augment_views(images, self.view_presets, images.shape[-1], batched)

    def features(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def logits(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        """Called once per epoch after the last step, on every rank (no-op unless overridden)."""


STAGE1: Registry[type[Method]] = Registry("stage1 method")  # looked up through pipeline.training.registry


def _backbone(task: Task) -> nn.Module:
    return build_backbone(task.model.backbone, in_chans=task.model.channels, pretrained=task.model.pretrained)


def _classifier(method: Method, task: Task, in_features: int, **options: Any) -> nn.Module:
    """The method's classifier head (`classifier`, a HEADS name) over `in_features`-wide features."""
    return build_head(method.classifier, in_features=in_features, num_classes=task.num_classes, **options)


class ClassifierMethod(Method):
    """Backbone + one classifier head (`classifier`) + a classification loss on view 0.

    The loss's forward arguments (loss_inputs) are picked from {logits, labels,
    features, weight, epoch}, so CE, LA, balanced softmax, LDAM-DRW and the
    decoupling-regularisation loss share this one class.
    """

    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, task: Task, loss_fn: nn.Module, inference_scale: float = 1.0, **head_options: Any) -> None:
        super().__init__()
        self.backbone = _backbone(task)
        self.head = _classifier(self, task, self.backbone.num_features, **head_options)
        self.loss_fn = loss_fn
        self.inference_scale = inference_scale
        self._inputs = loss_inputs(loss_fn)

    def features(self, images: Tensor) -> Tensor:
        return self.backbone(images)

    def logits(self, images: Tensor) -> Tensor:
        return self.inference_scale * self.head(self.backbone(images))

    def forward(self, views: Sequence[Tensor], labels: Tensor, keys: Sequence[str], epoch: int) -> dict:
        features = self.backbone(views[0])
        available = {"logits": self.head(features), "labels": labels, "features": features,
                     "weight": self.head.weight, "epoch": epoch}
        return self.loss_fn(**{name: available[name] for name in self._inputs})


@STAGE1.register("ce")
class CE(ClassifierMethod):
    """Plain cross-entropy with a linear classifier (the baseline)."""

    classifier = "linear"

    def __init__(self, params: ClassifierMethod.Params, task: Task) -> None:
        super().__init__(task, CrossEntropy())


@STAGE1.register("la")
class LA(ClassifierMethod):
    """Logit-adjusted cross-entropy, training form: CE(z + tau * log pi, y)."""

    classifier = "linear"

    @dataclass(frozen=True)
    class Params:
        tau: float = 1.0

    def __init__(self, params: Params, task: Task) -> None:
        super().__init__(task, LogitAdjustedCE(class_counts=task.class_counts, tau=params.tau))


@STAGE1.register("balanced_softmax")
class BalancedSoftmaxMethod(ClassifierMethod):
    """Balanced softmax: CE(z + log n_c, y)."""

    classifier = "linear"

    def __init__(self, params: ClassifierMethod.Params, task: Task) -> None:
        super().__init__(task, BalancedSoftmax(class_counts=task.class_counts))


@STAGE1.register("ldam_drw")
class LDAMDRWMethod(ClassifierMethod):
    """LDAM margins on a cosine classifier, deferred re-weighting from drw_start_epoch."""

    classifier = "cosine"

    @dataclass(frozen=True)
    class Params:
        max_margin: float = sweep_knob("margin", 0.5)
        s: float = 30.0
        beta: float = 0.9999
        drw_start_epoch: int = 160

    def __init__(self, params: Params, task: Task) -> None:
        # The loss takes unscaled cosines and applies s itself; inference applies the same s.
        super().__init__(task, LDAMDRW(class_counts=task.class_counts, max_margin=params.max_margin, s=params.s,
                                       beta=params.beta, drw_start_epoch=params.drw_start_epoch),
                         inference_scale=params.s, scale=1.0)


@STAGE1.register("decreg")
class DecRegMethod(ClassifierMethod):
    """Decoupling and regularisation (reconstructed): angular margin + uniformity + feature-norm hinge."""

    classifier = "cosine"

    @dataclass(frozen=True)
    class Params:
        m: float = sweep_knob("margin", 0.2)
        s: float = 30.0
        t: float = 2.0
        lambda_u: float = 0.1
        lambda_n: float = 0.01
        radius: float = 10.0

    def __init__(self, params: Params, task: Task) -> None:
        super().__init__(task, DecoupledRegularisation(m=params.m, s=params.s, t=params.t, lambda_u=params.lambda_u,
                                                       lambda_n=params.lambda_n, radius=params.radius),
                         scale=params.s)


class ContrastiveMethod(Method):
    """Backbone + classifier head on view 0 + a projection MLP embedding views 1 and 2 (BCL, JRCL)."""

    view_presets = ("basic", "strong", "strong")

    def __init__(self, task: Task, embedding_dim: int, **head_options: Any) -> None:
        super().__init__()
        self.backbone = _backbone(task)
        self.head = _classifier(self, task, self.backbone.num_features, **head_options)
        self.projector = ProjectionMLP(self.backbone.num_features, embedding_dim)

    def features(self, images: Tensor) -> Tensor:
        return self.backbone(images)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images))

    def encode(self, views: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """(features of view 0 (B, D), L2-normalised embeddings of views 1-2 (B, 2, d))."""
        batch = views[0].shape[0]
        features = self.backbone(torch.cat(list(views)))  # one pass: BN statistics over all views
        embeddings = self.projector(features[batch:]).view(2, batch, -1).transpose(0, 1)
        return features[:batch], embeddings


@STAGE1.register("bcl")
class BCLMethod(ContrastiveMethod):
    """Balanced contrastive learning: cosine classifier on view 0, BCL on views 1-2 with
    class prototypes from a second MLP over the classifier weights (official-code design)."""

    classifier = "cosine"

    @dataclass(frozen=True)
    class Params:
        alpha: float = 2.0
        beta: float = 0.6
        tau: float = sweep_knob("temperature", 0.1)
        s: float = 30.0
        embedding_dim: int = 128

    def __init__(self, params: Params, task: Task) -> None:
        super().__init__(task, params.embedding_dim, scale=params.s)
        self.prototype_projector = ProjectionMLP(self.backbone.num_features, params.embedding_dim)
        self.loss_fn = BCL(class_counts=task.class_counts, alpha=params.alpha, beta=params.beta, tau=params.tau)

    def forward(self, views: Sequence[Tensor], labels: Tensor, keys: Sequence[str], epoch: int) -> dict:
        features, embeddings = self.encode(views)
        return self.loss_fn(logits=self.head(features), labels=labels, view_embeddings=embeddings,
                            prototypes=self.prototype_projector(self.head.weight))


@STAGE1.register("jrcl")
class JRCLMethod(ContrastiveMethod):
    """JRCL (reconstructed): linear classifier + auxiliary binary head on view 0, one-to-all
    supervised contrastive loss on views 1-2. The binary partition is `normal_classes`
    (class indices) or, when empty, the many-shot group vs the rest."""

    classifier = "linear"

    @dataclass(frozen=True)
    class Params:
        tau: float = sweep_knob("temperature", 0.1)
        lambda_con: float = 0.5
        lambda_bdc: float = 0.5
        logit_adjust_tau: float = 1.0
        normal_classes: tuple[int, ...] = ()
        embedding_dim: int = 128

    def __init__(self, params: Params, task: Task) -> None:
        super().__init__(task, params.embedding_dim)
        self.binary_head = nn.Linear(self.backbone.num_features, 2)
        if params.normal_classes:
            mask = normal_mask_from_classes(task.num_classes, list(params.normal_classes))
        else:
            mask = normal_mask_from_counts(task.class_counts, task.many_threshold)
        self.loss_fn = JRCL(class_counts=task.class_counts, normal_mask=mask, tau=params.tau,
                            lambda_con=params.lambda_con, lambda_bdc=params.lambda_bdc,
                            logit_adjust_tau=params.logit_adjust_tau)

    def forward(self, views: Sequence[Tensor], labels: Tensor, keys: Sequence[str], epoch: int) -> dict:
        features, embeddings = self.encode(views)
        return self.loss_fn(logits=self.head(features), labels=labels, view_embeddings=embeddings,
                            binary_logits=self.binary_head(features))


@STAGE1.register("clip")
class CLIPFineTune(Method):
    """ECVL stage 1: fine-tune both CLIP towers; CE of logit_scale * cos(image, class text) over all
    C class prompts, or the symmetric in-batch InfoNCE (`loss: infonce`)."""

    view_presets = ("basic",)

    @dataclass(frozen=True)
    class Params:
        kind: str = "tiny"  # a pipeline.models.clip CLIP_MODELS name
        arch: str | None = None
        pretrained: str | None = None
        embed_dim: int = 256
        templates: tuple[str, ...] = ("a photo of a {class}.",)
        loss: Literal["class_text", "infonce"] = "class_text"
        temperature: float | None = sweep_knob("temperature", None)  # initial 1 / logit_scale; None: the model's

        def __post_init__(self) -> None:
            require(self.temperature is None or self.temperature > 0, "stage1.params.temperature",
                    f"must be > 0, got {self.temperature}")

    def __init__(self, params: Params, task: Task) -> None:
        super().__init__()
        from pipeline.models.clip import ClipSpec, build_clip  # open_clip loads only for CLIP methods

        spec_fields = {"kind": params.kind, "arch": params.arch, "pretrained": params.pretrained}
        if params.kind.endswith("_minilm"):
            spec_fields["embed_dim"] = params.embed_dim
        bundle = build_clip(ClipSpec(**spec_fields))
        self.clip = bundle.model
        if params.temperature is not None:
            with torch.no_grad():
                self.clip.logit_scale.fill_(-math.log(params.temperature))
        prompts = [t.replace("{class}", name) for name in task.class_names for t in params.templates]
        self.register_buffer("prompt_tokens", bundle.tokenizer(prompts), persistent=False)
        self.num_templates = len(params.templates)
        self.loss_fn = ClipClassText() if params.loss == "class_text" else ClipInfoNCE()

    def class_embeddings(self) -> Tensor:
        text = F.normalize(self.clip.encode_text(self.prompt_tokens), dim=-1)
        text = text.view(-1, self.num_templates, text.shape[-1]).mean(1)
        return F.normalize(text, dim=-1)

    def features(self, images: Tensor) -> Tensor:
        return F.normalize(self.clip.encode_image(images), dim=-1)

    def logits(self, images: Tensor) -> Tensor:
        return self.clip.logit_scale.exp() * self.features(images) @ self.class_embeddings().t()

    def forward(self, views: Sequence[Tensor], labels: Tensor, keys: Sequence[str], epoch: int) -> dict:
        images = self.features(views[0])
        classes = self.class_embeddings()
        scale = self.clip.logit_scale.exp()
        if isinstance(self.loss_fn, ClipInfoNCE):
            return self.loss_fn(image_embeddings=images, text_embeddings=classes[labels], logit_scale=scale)
        return self.loss_fn(image_embeddings=images, class_text_embeddings=classes, labels=labels,
                            logit_scale=scale)


@STAGE1.register("zeroshot_clip")
class ZeroShotCLIP(CLIPFineTune):
    """Zero-shot CLIP: class-prompt classification with no training (the report's baseline)."""

    trains = False
