"""The streaming loader over real shards written with ShardSetWriter: rank / worker splits, equal steps
per rank, reproducible shuffling, re-balanced class frequencies and image decoding."""
from __future__ import annotations

import io
import itertools
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from datagen import write_shards
from pipeline.data import loader
from pipeline.data.errors import DataError
from pipeline.data.loader import (EvalStream, TrainStream, decode_image, make_loader, rank_shards, read_shard,
                                  steps_per_epoch)
from pipeline.data.shards import encode_png
from pipeline.samplers import SAMPLERS

# torchvision 0.29 deprecates its image decoders (in favour of TorchCodec) with a warning on every call.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """5 shards of 20 samples, 3 classes in shuffled order."""
    labels = np.random.default_rng(1).permutation(np.arange(100) % 3)
    return write_shards(tmp_path_factory.mktemp("shards"), labels)


@pytest.fixture(scope="module")
def longtail(tmp_path_factory):
    """5 shards of 20 samples, class counts 60 / 30 / 10, shuffled (as the split stage writes them)."""
    labels = np.random.default_rng(2).permutation(np.repeat([0, 1, 2], [60, 30, 10]))
    return write_shards(tmp_path_factory.mktemp("longtail"), labels)


def train_stream(shards, seed=0, repeat_factors=None, shuffle_buffer=16):
    return TrainStream(shards, seed=seed, channels=1, image_size=None, repeat_factors=repeat_factors,
                       shuffle_buffer=shuffle_buffer)


def loader_keys(loader, batches):
    return [key for batch in itertools.islice(loader, batches) for key in batch["key"]]


# ----------------------------------------------------------------------------- ranks

def test_rank_shards_are_disjoint_and_cover_all(dataset):
    shards, _ = dataset
    shares = [rank_shards(shards, rank, 2) for rank in range(2)]
    assert [len(share) for share in shares] == [3, 2]
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(shards)
    # Each rank may list the directory in its own order: the split does not depend on it.
    assert rank_shards(shards[::-1], 1, 2) == shares[1]


def test_too_few_shards_names_the_params_key(dataset):
    shards, _ = dataset
    with pytest.raises(ValueError, match=r"at least 8 are needed.*split\.shard_max_samples"):
        rank_shards(shards, 0, 8)
    with pytest.raises(ValueError, match="rank"):
        rank_shards(shards, 2, 2)


def test_steps_per_epoch():
    assert steps_per_epoch(100, 8, 2) == 7
    assert steps_per_epoch(96, 8, 2) == 6
    assert steps_per_epoch(1, 64, 4) == 1
    with pytest.raises(ValueError):
        steps_per_epoch(0, 8, 2)


def test_ranks_take_the_same_steps_on_uneven_shards(dataset):
    """5 shards on 2 ranks (60 vs 40 samples): both take exactly steps_per_epoch batches, each from its own keys."""
    shards, samples = dataset
    steps = steps_per_epoch(len(samples), batch_size=8, world_size=2)
    for rank in range(2):
        share = rank_shards(shards, rank, 2)
        own = {key for key, (shard, _, _) in samples.items() if shard in share}
        stream = train_stream(share)
        loader = make_loader(stream, batch_size=8, num_workers=0)
        for epoch in range(2):
            stream.set_epoch(epoch)
            batches = list(itertools.islice(loader, steps))
            assert len(batches) == steps  # the 40-sample rank cycles on instead of running dry
            keys = [key for batch in batches for key in batch["key"]]
            assert set(keys) <= own
            assert all(batch["image"].shape == (8, 1, 8, 8) and batch["image"].dtype == torch.uint8
                       for batch in batches)
            assert all(batch["label"].dtype == torch.int64 for batch in batches)
            if len(own) >= steps * 8:  # the larger rank sees no sample twice within an epoch
                assert len(set(keys)) == len(keys)
            else:
                assert set(keys) == own


# ----------------------------------------------------------------------------- evaluation

@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 workers on 2 cores
@pytest.mark.parametrize("world_size,num_workers", [(1, 0), (2, 2), (5, 2), (2, 3)])
def test_eval_stream_yields_every_sample_once(dataset, world_size, num_workers):
    """(5, 2): one shard per rank, so the workers split samples; (2, 3): one rank splits shards, one samples."""
    shards, samples = dataset
    seen = Counter()
    for rank in range(world_size):
        stream = EvalStream(rank_shards(shards, rank, world_size), channels=1, image_size=None)
        for batch in make_loader(stream, batch_size=7, num_workers=num_workers):
            for key, label, image in zip(batch["key"], batch["label"].tolist(), batch["image"]):
                assert label == samples[key][1]
                assert np.array_equal(image[0].numpy(), samples[key][2])
                seen[key] += 1
    assert seen == Counter(list(samples))


# ----------------------------------------------------------------------------- training stream

@pytest.mark.parametrize("num_shards", [4, 1])
def test_train_workers_cover_a_pass_without_duplicates(dataset, num_shards):
    """4 shards: the 2 workers split shards; 1 shard: they split its samples. Both shares are equal here."""
    shards, _ = dataset
    share = sorted(shards)[:num_shards]
    expected = {key for shard in share for key in (sample["key"] for sample in read_shard(shard))}
    loader = make_loader(train_stream(share), batch_size=5, num_workers=2)
    keys = loader_keys(loader, len(expected) // 5)
    assert len(keys) == len(set(keys)) and set(keys) == expected


def test_train_order_is_seeded_by_seed_and_epoch(dataset):
    shards, _ = dataset
    share = sorted(shards)[:4]
    stream = train_stream(share)
    loader = make_loader(stream, batch_size=5, num_workers=2)
    assert loader.persistent_workers
    first = loader_keys(loader, 16)
    stream.set_epoch(1)  # reaches the persistent workers through shared memory
    second = loader_keys(loader, 16)

    again = make_loader(train_stream(share), batch_size=5, num_workers=2)
    assert loader_keys(again, 16) == first
    fresh = train_stream(share)
    fresh.set_epoch(1)
    assert loader_keys(make_loader(fresh, batch_size=5, num_workers=2), 16) == second
    assert second != first and sorted(second) == sorted(first)
    other_seed = loader_keys(make_loader(train_stream(share, seed=1), batch_size=5, num_workers=0), 16)
    assert other_seed != loader_keys(make_loader(train_stream(share), batch_size=5, num_workers=0), 16)


@pytest.mark.parametrize("sampler", ["instance_balanced", "class_balanced", "square_root"])
def test_rebalanced_class_frequencies(longtail, sampler):
    """Counts 60 / 30 / 10: over 20 passes the class frequencies match p_c = n_c^q / sum n_k^q within 0.03.

    The noisiest class (class 0 under class-balanced: 60 draws of Bernoulli(0.56) per pass) has a
    frequency standard deviation of about 0.009 over 2,000 samples, so 0.03 is over 3 sigma.
    """
    shards, samples = longtail
    counts = np.bincount([label for _, label, _ in samples.values()], minlength=3)
    chosen = SAMPLERS.get(sampler)()
    stream = train_stream(shards, repeat_factors=chosen.repeat_factors(counts), shuffle_buffer=50)
    labels = [sample["label"] for sample in itertools.islice(stream, 20 * len(samples))]
    frequencies = np.bincount(labels, minlength=3) / len(labels)
    np.testing.assert_allclose(frequencies, chosen.class_probabilities(counts), atol=0.03)
    if sampler == "instance_balanced":  # factors of 1: whole passes, so the frequencies are exact
        np.testing.assert_array_equal(frequencies, counts / counts.sum())


def test_train_stream_rejects_what_would_hang_or_mislabel(tmp_path, longtail):
    empty = tmp_path / "empty.tar"
    wds.TarWriter(str(empty)).close()
    with pytest.raises(DataError, match="no samples"):
        next(iter(train_stream([str(empty)])))
    with pytest.raises(DataError, match="repeat_factors covers 2 classes"):
        list(itertools.islice(train_stream(longtail[0], repeat_factors=np.array([1.0, 1.0])), 100))
    with pytest.raises(ValueError, match="repeat_factors"):
        train_stream(longtail[0], repeat_factors=np.zeros(3))


# ----------------------------------------------------------------------------- reading and decoding

def test_read_shard_in_file_order(dataset):
    shards, samples = dataset
    read = list(read_shard(shards[0]))
    expected = [key for key, (shard, _, _) in samples.items() if shard == shards[0]]
    assert [sample["key"] for sample in read] == expected
    assert all(sample["ext"] == "png" and sample["label"] == samples[sample["key"]][1] for sample in read)
    assert read[0]["data"] == encode_png(samples[read[0]["key"]][2])


def test_read_shard_rejects_broken_shards(tmp_path):
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar file" * 100)
    with pytest.raises(DataError, match="garbage.tar"):
        list(read_shard(str(garbage)))
    unlabelled = tmp_path / "unlabelled.tar"
    with tarfile.open(unlabelled, "w") as tar:
        info = tarfile.TarInfo("k0.png")
        data = encode_png(np.zeros((4, 4), np.uint8))
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="k0.*cls"):
        list(read_shard(str(unlabelled)))


def encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_decode_png_is_exact_grey_and_rgb():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    rgb = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)
    decoded = decode_image(encode_png(grey), channels=1, size=None)
    assert decoded.dtype == torch.uint8 and np.array_equal(decoded[0].numpy(), grey)
    decoded = decode_image(encode_png(rgb), channels=3, size=None)
    assert np.array_equal(decoded.permute(1, 2, 0).numpy(), rgb)
    assert decode_image(encode_png(rgb), channels=1, size=None).shape == (1, 8, 6)  # RGB read as grey
    assert np.array_equal(decode_image(encode_png(grey), channels=3, size=None)[1].numpy(), grey)


def test_decode_jpeg_and_resize():
    ramp = np.add.outer(np.arange(16), np.arange(16)).astype(np.uint8) * 8  # smooth: JPEG keeps it close
    rgb = np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=-1)
    decoded = decode_image(encoded(rgb, "JPEG", quality=95), channels=3, size=None)
    assert decoded.shape == (3, 16, 16)
    assert np.abs(decoded.permute(1, 2, 0).numpy().astype(int) - rgb).mean() < 4
    grey = decode_image(encoded(ramp, "JPEG", quality=95), channels=1, size=8)
    assert grey.shape == (1, 8, 8) and grey.dtype == torch.uint8
    expected = ramp.reshape(8, 2, 8, 2).mean(axis=(1, 3))  # 2x2 box average = antialiased halving
    assert np.abs(grey[0].numpy().astype(float) - expected).mean() < 4
    assert decode_image(encode_png(ramp), channels=1, size=16).shape == (1, 16, 16)


def test_decode_falls_back_to_pil_and_rejects_garbage():
    rgb = np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    decoded = decode_image(encoded(rgb, "BMP"), channels=3, size=None)  # torchvision has no BMP decoder
    assert np.array_equal(decoded.permute(1, 2, 0).numpy(), rgb)
    with pytest.raises(ValueError, match="cannot decode"):
        decode_image(b"definitely not an image", channels=3, size=None)
    with pytest.raises(ValueError, match="channels"):
        decode_image(encode_png(rgb), channels=2, size=None)


# ----------------------------------------------------------------------------- the DataLoader

def test_make_loader_options(dataset):
    shards, _ = dataset
    evaluation = EvalStream(shards, channels=3, image_size=4)
    assert not make_loader(evaluation, batch_size=4, num_workers=1).persistent_workers
    assert make_loader(train_stream(shards), batch_size=4, num_workers=1).prefetch_factor == 2
    with pytest.raises(ValueError, match="drop_last"):
        make_loader(evaluation, batch_size=4, num_workers=0, drop_last=True)
    batch = next(iter(make_loader(evaluation, batch_size=4, num_workers=0)))
    assert batch["image"].shape == (4, 3, 4, 4) and batch["image"].dtype == torch.uint8
    assert batch["label"].dtype == torch.int64 and len(batch["key"]) == 4


# ----------------------------------------------------------------------------- bytes per loader worker

@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 5 workers on 2 cores
@pytest.mark.parametrize("num_shards,num_workers", [(4, 2), (4, 4), (5, 8)])
def test_each_loader_worker_reads_only_its_share_of_the_bytes(dataset, tmp_path, monkeypatch, capsys,
                                                            num_shards, num_workers):
    """The workers' shard sets are disjoint, each about 1/W of the bytes; with more workers than shards
    one worker per shard starts (and one line says so) instead of every worker reading every shard."""
    shards, _ = dataset
    share = sorted(shards)[:num_shards]
    log = tmp_path / "opens.log"
    opened = loader.open_shard

    def counting_open(url):  # runs in the (forked) workers; one line per shard opened
        with open(log, "a") as handle:
            handle.write(f"{torch.utils.data.get_worker_info().id} {url}\n")
        return opened(url)

    monkeypatch.setattr(loader, "open_shard", counting_open)
    loader_keys(make_loader(train_stream(share), batch_size=5, num_workers=num_workers), 2 * 4 * num_shards)
    reads: dict[int, set[str]] = {}
    for line in log.read_text().splitlines():
        worker, url = line.split(" ", 1)
        reads.setdefault(int(worker), set()).add(url)
    started = min(num_workers, num_shards)
    assert sorted(reads) == list(range(started))
    assert sorted(url for urls in reads.values() for url in urls) == share  # disjoint, covering
    total = sum(Path(url).stat().st_size for url in share)
    for urls in reads.values():
        assert sum(Path(url).stat().st_size for url in urls) == pytest.approx(total / started, rel=0.1)
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("loader:")]
    assert len(notes) == (num_workers > num_shards)
