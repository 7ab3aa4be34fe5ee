"""CLIP: the tiny config, zero-shot logits, and the offline EfficientNet-Lite + MiniLM model."""
import pytest
import torch
import torch.nn.functional as F

from pipeline.models.clip import (CLIP_MODELS, ClipSpec, build_clip, class_text_embeddings,
                                  zero_shot_logits)

CLASSES = ["cat", "dog", "car"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_clip(ClipSpec(kind="tiny"))


def test_registry_names():
    assert set(CLIP_MODELS.names()) == {
        "open_clip", "efficientnet_lite0_minilm", "efficientnet_lite2_minilm", "tiny"}


def test_tiny_zero_shot_logits(tiny):
    text = class_text_embeddings(tiny.model, tiny.tokenizer, CLASSES,
                                 templates=["a photo of a {class}.", "a picture of a {}."])
    assert text.shape == (3, 32)
    assert torch.allclose(text.norm(dim=1), torch.ones(3), atol=1e-5)
    images = torch.randn(4, 3, 32, 32)
    logits = zero_shot_logits(tiny.model, images, text)
    assert logits.shape == (4, 3)
    image = F.normalize(tiny.model.encode_image(images), dim=-1)
    assert torch.allclose(logits, tiny.model.logit_scale.exp() * image @ text.t(), atol=1e-5)


def test_class_text_embedding_matches_manual_prompt(tiny):
    text = class_text_embeddings(tiny.model, tiny.tokenizer, ["cat"])
    with torch.no_grad():
        manual = tiny.model.encode_text(tiny.tokenizer(["a photo of a cat."]), normalize=True)
    assert torch.allclose(text, manual, atol=1e-5)


def test_tiny_preprocess_gives_model_input(tiny):
    from PIL import Image

    x = tiny.preprocess_val(Image.new("RGB", (50, 40), (200, 10, 10)))
    assert x.shape == (3, 32, 32)


def test_spec_rejects_fields_a_kind_does_not_use():
    with pytest.raises(ValueError, match="arch"):
        build_clip(ClipSpec(kind="tiny", arch="ViT-B-32"))
    with pytest.raises(ValueError, match="needs arch"):
        build_clip(ClipSpec(kind="open_clip"))
    with pytest.raises(KeyError, match="tiny"):
        build_clip(ClipSpec(kind="nope"))


def test_open_clip_local_checkpoint(tiny, tmp_path):
    """The `open_clip` kind with a local checkpoint path (the offline face of the pretrained tag)."""
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    again = build_clip(ClipSpec(kind="open_clip", arch="ltp-tiny", pretrained=str(path)))
    for (name, a), b in zip(tiny.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_offline_efficientnet_lite0_minilm(monkeypatch):
    import socket

    from pipeline.models.backbones import efficientnet_lite

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    bundle = build_clip(ClipSpec(kind="efficientnet_lite0_minilm", embed_dim=64))
    monkeypatch.undo()
    model = bundle.model.eval()
    with torch.no_grad():
        image = model.encode_image(torch.randn(1, 3, 224, 224))
        text = model.encode_text(bundle.tokenizer(["a photo of a cat."]))
        # The image trunk carries the packaged ImageNet weights.
        reference = efficientnet_lite("lite0", num_classes=0).eval()
        x = torch.randn(1, 3, 64, 64)
        assert torch.allclose(model.visual.trunk(x), reference(x), atol=1e-5)
    assert image.shape == (1, 64) and text.shape == (1, 64)
    assert torch.isfinite(image).all() and torch.isfinite(text).all()
    # MiniLM's word embeddings are the packaged ones, not a random init.
    from safetensors.torch import load_file

    from pipeline.models.clip import minilm_dir

    packaged = load_file(str(minilm_dir() / "model.safetensors"))["embeddings.word_embeddings.weight"]
    assert torch.equal(model.text.transformer.embeddings.word_embeddings.weight, packaged)


def test_open_clip_local_dir(tiny, tmp_path):
    """`local-dir:` (open_clip 3.x): a config JSON plus weights in one directory."""
    import json

    from safetensors.torch import save_file

    from pipeline.models.clip import TINY_CONFIG

    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG}))
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()},
              str(tmp_path / "open_clip_model.safetensors"))
    again = build_clip(ClipSpec(kind="open_clip", arch=f"local-dir:{tmp_path}"))
    text = class_text_embeddings(again.model, again.tokenizer, CLASSES)
    assert torch.allclose(text, class_text_embeddings(tiny.model, tiny.tokenizer, CLASSES), atol=1e-6)
