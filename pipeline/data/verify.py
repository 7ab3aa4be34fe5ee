"""Checking shards against their manifest before the expensive work reads them.

Training and evaluation read shards inside Ray workers, where a truncated shard surfaces minutes
later as a worker crash (retried, then a traceback) and a changed image trains silently. One
sequential pass here, before Ray starts, reads every shard through the same storage layer the
workers use (local, NFS, s3://, gs://) and compares each sample with its manifest row: the image's
SHA-256 and size, the label, and that the shard holds exactly the manifest's samples. It costs one
read of the data, less than one epoch of training.
"""
from __future__ import annotations

import hashlib
import tarfile
from collections import defaultdict
from typing import Iterable, Mapping

from tqdm import tqdm

from pipeline.data.errors import DataError
from pipeline.storage import join, open_binary

_RERUN = "the shard changed after the stage that wrote it; rerun that stage (dvc repro)"


def _expected_by_shard(rows: Iterable[Mapping], base: str) -> dict[str, dict[str, tuple[str, int, int]]]:
    """{shard path: {key: (sha256, size, label)}} from manifest rows (shard paths relative to `base`)."""
    expected: dict[str, dict[str, tuple[str, int, int]]] = defaultdict(dict)
    for row in rows:
        expected[join(base, row["shard"])][row["key"]] = (row["sha256"], row["size"], row["label"])
    return expected


def _shard_samples(shard: str) -> dict[str, dict[str, bytes | tuple[str, int]]]:
    """{key: {"cls": label bytes, ext: (sha256, size) of the image}} of one shard, read as a stream;
    an unreadable tar raises DataError."""
    samples: dict[str, dict] = defaultdict(dict)
    try:
        with open_binary(shard) as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
            for member in tar:
                if member.isfile():
                    key, _, ext = member.name.partition(".")
                    data = tar.extractfile(member).read()
                    samples[key][ext] = data if ext == "cls" else (hashlib.sha256(data).hexdigest(), len(data))
    except FileNotFoundError as exc:
        raise DataError(f"{shard}: missing; rerun the stage that writes it (dvc repro)") from exc
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{shard}: not a readable shard ({exc}); truncated or corrupt? {_RERUN}") from exc
    return samples


def _check_shard(shard: str, expected: dict[str, tuple[str, int, int]]) -> None:
    samples = _shard_samples(shard)
    missing = sorted(set(expected) - set(samples))
    extra = sorted(set(samples) - set(expected))
    if missing or extra:
        what = f"lacks {len(missing)} sample(s) of the manifest, e.g. {missing[0]}" if missing else \
            f"holds {len(extra)} sample(s) not in the manifest, e.g. {extra[0]}"
        raise DataError(f"{shard}: {what}; {_RERUN}")
    for key, (sha256, size, label) in expected.items():
        members = samples[key]
        images = [ext for ext in members if ext != "cls"]
        if len(images) != 1 or "cls" not in members:
            raise DataError(f"{shard}: sample {key} needs one image and a .cls label, has {sorted(members)}")
        if members[images[0]] != (sha256, size):
            raise DataError(f"{shard}: {key}.{images[0]} does not match the manifest's sha256 / size "
                            f"({members[images[0]][1]} bytes, expected {size}); {_RERUN}")
        if members["cls"].strip() != str(label).encode():
            raise DataError(f"{shard}: {key} has label {members['cls'].decode(errors='replace').strip()!r}, "
                            f"the manifest says {label}; {_RERUN}")


def verify_shards(rows: Iterable[Mapping], base: str, what: str) -> int:
    """Check every shard of manifest `rows` (key, label, shard, size, sha256; shard relative to `base`)
    sample by sample; raise DataError naming the first bad shard. Returns the number of samples."""
    expected = _expected_by_shard(rows, base)
    for shard in tqdm(sorted(expected), desc=f"verify {what}", unit="shard", mininterval=1.0):
        _check_shard(shard, expected[shard])
    return sum(map(len, expected.values()))
