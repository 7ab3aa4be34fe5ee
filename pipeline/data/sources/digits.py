"""scikit-learn's 8x8 digits (1,797 images): a tiny real dataset for tests.

The source has no test split; every fourth image of each class (in the
original order) becomes test, so both splits stay class-balanced.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.shards import encode_png
from pipeline.data.sources import SOURCES, RawSample, Source

TEST_EVERY = 4


def digits_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    is_test = rank % TEST_EVERY == TEST_EVERY - 1
    return {"train": (images[~is_test], labels[~is_test]), "test": (images[is_test], labels[is_test])}


def open_digits(info: dict, raw_dir: Path) -> Source:
    splits = digits_splits()

    def read(split: str):
        images, labels = splits[split]
        for i, (image, label) in enumerate(zip(images, labels)):
            yield RawSample(int(label), encode_png(image), "png", f"digits-{split}:{i}")

    return Source([str(d) for d in range(10)], {s: len(v[1]) for s, v in splits.items()}, read)


SOURCES.register("digits")(open_digits)
