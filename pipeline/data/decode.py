"""Encoded image bytes -> the uint8 tensor training sees: the one decode of the pipeline.

The prepare stage decodes every image with this function (and throws the pixels away), and the
loader decodes with it while training, so an image that passes prepare decodes in training too:
nothing undecodable reaches a shard.

JPEG goes through torchvision (libjpeg-turbo, which reports a damaged file as an error); every other
format through PIL. torchvision's PNG decoder is not used: libpng aborts the whole process on some
damaged pixel data (`libpng error: IDAT: invalid block type`), where PIL raises; PIL costs about
0.1 ms more per small PNG (CPU time, 28x28 grey). Channels are converted explicitly, so a palette
GIF or an RGBA PNG gives the requested 1 or 3 channels.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode
from torchvision.io import decode_jpeg as _torchvision_jpeg
from torchvision.transforms.v2 import functional as TF

READ_MODES = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}
_PIL_MODES = {1: "L", 3: "RGB"}
_JPEG_MAGIC = b"\xff\xd8\xff"


def decode_image(data: bytes, channels: int, size: int | None = None) -> torch.Tensor:
    """Encoded image bytes -> uint8 tensor (channels, H, W), resized (antialiased) to size x size if given.

    Animated images keep their first frame; 16-bit images are scaled to 8 bits. Undecodable bytes
    (damaged, truncated, not an image) raise ValueError.
    """
    if channels not in READ_MODES:
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1 or None, got {size}")
    if not data:
        raise ValueError("empty image bytes")
    if data.startswith(_JPEG_MAGIC):
        try:
            image = _torchvision_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=READ_MODES[channels])
        except RuntimeError as exc:
            # torchvision's message starts with its C++ source location; keep the reason
            raise ValueError(f"cannot decode {len(data)} JPEG bytes: {str(exc).rsplit(', ', 1)[-1]}") from exc
    else:
        image = _decode_with_pil(data, channels)
    if image.shape[0] != channels:  # a decoder that ignored the mode
        raise ValueError(f"decoded {image.shape[0]} channels where {channels} were asked for")
    if size is not None and tuple(image.shape[-2:]) != (size, size):
        image = TF.resize(image, [size, size], antialias=True)
    return image


def _decode_with_pil(data: bytes, channels: int) -> torch.Tensor:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            if image.mode.startswith("I;16"):  # 16-bit: keep the high byte, as a uint8 rescale does
                image = Image.fromarray((np.array(image, dtype=np.uint16) >> 8).astype(np.uint8))
            if image.mode != _PIL_MODES[channels]:
                image = image.convert(_PIL_MODES[channels])
            array = np.array(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"cannot decode {len(data)} image bytes: {exc}") from exc
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()
