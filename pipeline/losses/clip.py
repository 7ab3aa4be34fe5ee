"""CLIP losses for stage 1 of ECVL: image-to-class-text cross-entropy and symmetric in-batch InfoNCE."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.distributed import gather_batch, replicated
from pipeline.precision import float32_compute


def _scale(logit_scale: Tensor | float, like: Tensor) -> Tensor:
    scale = torch.as_tensor(logit_scale, dtype=like.dtype, device=like.device)
    if scale.numel() != 1:
        raise ValueError(f"logit_scale: expected a scalar, got shape {tuple(scale.shape)}")
    return scale.reshape(())


class ClipClassText(nn.Module):
    """Image-to-class-text classification: CE over all C class prompts of logit_scale * cos(image, text_c).

    Source: ECVL stage 1 (docs/methods.md); the CLIP logit-scale convention of open_clip.
    forward(image_embeddings (B, d), class_text_embeddings (C, d) one embedding per class prompt,
    labels (B,), logit_scale: scalar, the multiplicative scale (exp of CLIP's learnt log-scale)).
    Embeddings are L2-normalised here, so raw tower outputs are fine. No coefficients.
    """

    cross_batch = False

    @float32_compute
    def forward(self, image_embeddings: Tensor, class_text_embeddings: Tensor, labels: Tensor,
                logit_scale: Tensor | float) -> dict[str, Tensor]:
        cos = F.normalize(image_embeddings, dim=1) @ F.normalize(class_text_embeddings, dim=1).T
        loss = F.cross_entropy(_scale(logit_scale, cos) * cos, labels)
        return {"loss": loss, "ce_loss": loss}


class ClipInfoNCE(nn.Module):
    """Symmetric in-batch InfoNCE of CLIP: mean of image->text and text->image CE over the global batch.

    Source: CLIP (Radford et al. 2021) contrastive objective, as in open_clip's ClipLoss; ECVL's
    stage-1 option (docs/methods.md).
    forward(image_embeddings (B, d), text_embeddings (B, d) row i is image i's caption,
    logit_scale: scalar multiplicative scale). Embeddings are L2-normalised here. Computed on the
    global batch across ranks. No coefficients.
    """

    cross_batch = True

    @float32_compute
    def forward(self, image_embeddings: Tensor, text_embeddings: Tensor,
                logit_scale: Tensor | float) -> dict[str, Tensor]:
        if image_embeddings.shape != text_embeddings.shape:
            raise ValueError(f"text_embeddings: shape {tuple(text_embeddings.shape)} differs from "
                             f"image_embeddings {tuple(image_embeddings.shape)}")
        images, texts = gather_batch(F.normalize(image_embeddings, dim=1), F.normalize(text_embeddings, dim=1))
        scale = _scale(logit_scale, images)
        logits = replicated(scale) * images @ texts.T
        targets = torch.arange(logits.shape[0], device=logits.device)
        image_loss = F.cross_entropy(logits, targets)
        text_loss = F.cross_entropy(logits.T, targets)
        loss = (image_loss + text_loss) / 2
        return {"loss": loss, "image_to_text_loss": image_loss, "text_to_image_loss": text_loss}
