"""The typed hand-overs between stages: the split statistics, the shard lists per role, the task and
the training job, each with one writer and one reader."""
import ast
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datagen import make_digits_split
from pipeline.data.contracts import read_split, read_test_shards
from pipeline.data.errors import DataError
from pipeline.data.split_stats import parse_split_stats
from pipeline.training.config import ModelConfig, RayConfig, Stage1Config, Stage2Config
from pipeline.training.job import JOB_FILE, load_job, save_job, task_of, train_job

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    make_digits_split(root)
    return root


def test_the_split_hands_over_what_it_wrote(digits):
    split = read_split(digits / "split")
    # The metrics file and the split directory's copy are one writer's output, read back as written.
    assert (digits / "stats.json").read_bytes() == (digits / "split" / "stats.json").read_bytes()
    assert split.stats == parse_split_stats((digits / "stats.json").read_bytes(), "stats.json")
    raw = json.loads((digits / "stats.json").read_text())
    assert list(split.stats.class_counts.items()) == list(raw["class_counts"].items())  # label order kept
    assert split.stats.thresholds.many_above == 60 and split.stats.thresholds.few_below == 20
    manifest = pq.read_table(digits / "split" / "manifest.parquet").to_pylist()
    for role, shards in (("train", split.shards.train), ("val", split.shards.val)):
        expected = sorted({str(digits / "split" / r["shard"]) for r in manifest if r["role"] == role})
        assert list(shards) == expected and all(Path(s).is_absolute() for s in shards)
    assert split.stats.train_total == sum(r["role"] == "train" for r in manifest)


def test_test_shards_are_the_prepared_test_split(digits):
    manifest = pq.read_table(digits / "prepared" / "manifest.parquet").to_pylist()
    expected = sorted({str(digits / "prepared" / r["shard"]) for r in manifest if r["split"] == "test"})
    assert list(read_test_shards(digits / "prepared")) == expected


def test_malformed_split_stats_name_the_file(tmp_path):
    good = {"profile": "exp", "imbalance_ratio": 10.0}
    with pytest.raises(DataError, match=r"^metrics/split_stats.json: .*required key is missing.*rerun the split"):
        parse_split_stats(json.dumps(good), "metrics/split_stats.json")
    with pytest.raises(DataError, match=r"^s.json: .*rerun the split stage"):
        parse_split_stats(b"{not json", "s.json")


def test_the_task_and_job_come_from_the_split_and_round_trip_through_job_json(digits, tmp_path):
    split = read_split(digits / "split")
    model = ModelConfig(image_size=8)
    task = task_of(split.stats, model)
    assert task.class_names == tuple(split.stats.class_counts)
    assert task.class_counts == tuple(split.stats.class_counts.values())
    assert (task.many_threshold, task.few_threshold) == (60, 20)
    stage1 = Stage1Config(method="ce", epochs=1)
    stage2 = Stage2Config(method="crt", epochs=1)
    job = train_job("stage2", stage2, task, split, RayConfig(loader_workers=2), stage1=stage1, stage1_weights="/w.pt")
    assert (job.train_shards, job.val_shards, job.num_train) == (split.shards.train, split.shards.val,
                                                                 split.stats.train_total)
    assert job.loader_workers == 2 and job.stage1 == stage1 and job.stage1_weights == "/w.pt"
    save_job(tmp_path / JOB_FILE, job)
    record = load_job(tmp_path)
    assert (record.stage, record.config, record.task, record.stage1) == ("stage2", stage2, task, stage1)


def _calls(name: str) -> set[str]:
    """The files under pipeline/ and stages/ that call `name`."""
    return {str(p.relative_to(ROOT)) for folder in ("pipeline", "stages") for p in (ROOT / folder).rglob("*.py")
            for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name}


def test_each_hand_over_has_one_writer_and_one_reader():
    assert _calls("TrainJob") == {"pipeline/training/job.py"}
    assert _calls("write_split_stats") == {"pipeline/data/split.py"}
    assert _calls("parse_split_stats") == {"pipeline/data/contracts.py", "pipeline/reporting/records.py"}
    assert _calls("save_job") == {"pipeline/training/run.py"}


def test_the_manifest_file_is_named_once():
    spelled = {str(p.relative_to(ROOT)) for folder in ("pipeline", "stages") for p in (ROOT / folder).rglob("*.py")
               if '"manifest.parquet"' in p.read_text()}
    assert spelled == {"pipeline/data/manifest.py"}
