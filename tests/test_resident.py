"""The device-resident training set: its epochs follow the stream form's class frequencies and epoch
length for every sampler, and after the first epoch `fit` decodes no image (counted)."""
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from datagen import make_digits_split, write_shards
from pipeline.data import loader
from pipeline.data.contracts import read_split
from pipeline.data.loader import TrainStream, make_loader, steps_per_epoch
from pipeline.data.resident import ResidentSet
from pipeline.samplers import SAMPLERS, ProgressiveSampler
from pipeline.training.config import ModelConfig, RayConfig, Stage1Config
from pipeline.training.job import task_of, train_job
from pipeline.training.loop import fit

CPU = torch.device("cpu")
COUNTS = np.array([60, 30, 10])
BATCH = 8
EPOCHS = 25  # epochs of each form compared: 2,000 labels each


@pytest.fixture(scope="module")
def longtail(tmp_path_factory):
    """5 shards of 20 samples, class counts 60 / 30 / 10, shuffled (as the split stage writes them)."""
    labels = np.random.default_rng(2).permutation(np.repeat([0, 1, 2], COUNTS))
    return write_shards(tmp_path_factory.mktemp("longtail"), labels)[0]


def _sampler(name: str):
    return ProgressiveSampler(4) if name == "progressive" else SAMPLERS.get(name)()


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_resident_epochs_match_the_stream_form(longtail, name):
    """Per epoch both forms give steps x batch samples; over 25 epochs each form's class frequencies
    are within 0.03 of p_c and of each other (the noisiest class, 0 under class-balanced sampling, has
    a standard deviation of about 0.009 per form over 2,000 samples, so 0.03 is over 3 sigma)."""
    sampler = _sampler(name)
    epoch = 2  # progressive: halfway between instance- and class-balanced
    factors = sampler.repeat_factors(COUNTS, epoch)
    expected = sampler.class_probabilities(COUNTS, epoch)
    steps = steps_per_epoch(int(COUNTS.sum()), BATCH, 1)

    resident = ResidentSet.decode(longtail, channels=1, image_size=None, device=CPU)
    assert len(resident) == 100 and resident.images.dtype == torch.uint8
    resident_labels = []
    for e in range(EPOCHS):
        indices = resident.epoch_indices(factors, steps * BATCH, torch.Generator().manual_seed(e))
        batches = list(resident.batches(indices, BATCH))
        assert [len(b.key) for b in batches] == [BATCH] * steps
        resident_labels += [int(label) for b in batches for label in b.label]

    stream = TrainStream(longtail, seed=0, channels=1, image_size=None, repeat_factors=factors, shuffle_buffer=50)
    batches = make_loader(stream, BATCH, 0)
    stream_labels = []
    for e in range(EPOCHS):
        stream.set_epoch(e)
        epoch_batches = list(itertools.islice(batches, steps))
        assert [len(b["key"]) for b in epoch_batches] == [BATCH] * steps
        stream_labels += [int(label) for b in epoch_batches for label in b["label"]]

    resident_freq = np.bincount(resident_labels, minlength=3) / len(resident_labels)
    stream_freq = np.bincount(stream_labels, minlength=3) / len(stream_labels)
    np.testing.assert_allclose(resident_freq, expected, atol=0.03)
    np.testing.assert_allclose(resident_freq, stream_freq, atol=0.03)
    if name == "instance_balanced":  # whole permutations: each of the 100 samples once per 100 draws
        assert sorted(resident_labels[:100]) == sorted(np.repeat([0, 1, 2], COUNTS).tolist())


def test_resident_batches_hold_the_decoded_images(longtail):
    resident = ResidentSet.decode(longtail, channels=1, image_size=None, device=CPU, chunk=7)
    decoded = {key: image for b in loader.EvalStream(longtail, channels=1, image_size=None)
               for key, image in [(b["key"], b["image"])]}
    indices = resident.epoch_indices(None, 100, torch.Generator().manual_seed(0))
    assert sorted(indices.tolist()) == list(range(100))  # a permutation
    for batch in resident.batches(indices, 32):
        for key, image in zip(batch.key, batch.image):
            assert torch.equal(image, decoded[key])


GREY = ModelConfig(backbone="resnet_small", channels=1, image_size=8, mean=(0.5,), std=(0.5,))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits_split(tmp_path_factory.mktemp("digits"))


def _decodes_per_epoch(digits: Path, monkeypatch, budget) -> tuple[list[int], int, int]:
    split_data = read_split(digits)
    task = task_of(split_data.stats, GREY)
    config = Stage1Config(method="ce", epochs=3, batch_size=64, lr=0.05, resident_budget_mb=budget)
    job = train_job("stage1", config, task, split_data, RayConfig())
    calls = []
    decode = loader.decode_image
    monkeypatch.setattr(loader, "decode_image", lambda *a, **k: calls.append(1) or decode(*a, **k))
    counts = []
    fit(job, rank=0, world=1, device=CPU, resume=None, report=lambda metrics, _: counts.append(len(calls)))
    return counts, job.num_train, 100  # 10 validation images per class


def test_no_image_is_decoded_after_the_first_epoch(digits, monkeypatch, capsys):
    counts, num_train, num_val = _decodes_per_epoch(digits, monkeypatch, "auto")
    assert counts == [num_train + num_val] * 3
    assert "streaming" not in capsys.readouterr().out


def test_over_budget_streams_every_epoch_and_says_so_once(digits, monkeypatch, capsys):
    counts, num_train, num_val = _decodes_per_epoch(digits, monkeypatch, 0)
    steps = steps_per_epoch(num_train, 64, 1)
    per_epoch = steps * 64 + num_val  # the stream decodes what it emits (repeats included) + validation
    assert counts == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    lines = [line for line in capsys.readouterr().out.splitlines() if "streaming" in line]
    assert len(lines) == 1 and "resident_budget_mb: 0" in lines[0]
