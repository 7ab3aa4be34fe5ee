"""The training checkpoint: no code runs from a tampered state.pt, and a stage killed after an epoch
and resumed on two DDP ranks (gloo, in-process loop, no Ray) ends exactly as the uninterrupted run."""
import os
import pathlib
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from datagen import make_digits_split
from tools import spawn_ranks
from pipeline.data.contracts import read_split
from pipeline.training import checkpoint
from pipeline.training.checkpoint import BEST_FILE, STATE_FILE, CheckpointError
from pipeline.training.config import ModelConfig, RayConfig, Stage1Config
from pipeline.training.job import TrainJob, task_of, train_job
from pipeline.training.loop import fit

GREY = ModelConfig(backbone="resnet_small", channels=1, image_size=8, mean=(0.5,), std=(0.5,))  # digits: 8x8
WORLD = 2
EPOCHS = 3
TIMEOUT_S = 300


class Payload:
    """Unpickling this creates `marker`: the stand-in for any code an attacker plants."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_a_planted_pickle_payload_in_state_pt_does_not_run(tmp_path):
    run = tmp_path / "checkpoint"
    run.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"format": checkpoint.FORMAT, "epoch": 0, "method": Payload(marker)}, run / STATE_FILE)
    torch.save({}, run / BEST_FILE)
    with pytest.raises(CheckpointError, match=f"{STATE_FILE}: not a safe checkpoint"):
        checkpoint.load(run, torch.device("cpu"))
    torch.save({"format": checkpoint.FORMAT, "epoch": 0}, run / STATE_FILE)
    torch.save({"weight": Payload(marker)}, run / BEST_FILE)  # the best weights are read the same way
    with pytest.raises(CheckpointError, match=f"{BEST_FILE}: not a safe checkpoint"):
        checkpoint.load(run, torch.device("cpu"))
    assert not marker.exists()


# ----------------------------------------------------------------------------- kill and resume, 2 ranks

class Killed(Exception):
    pass


def _job(split: Path) -> TrainJob:
    split_data = read_split(split)
    task = task_of(split_data.stats, GREY)
    # A sampler, augmentation and two ranks: every random stream the loop has is in play.
    config = Stage1Config(method="ce", epochs=EPOCHS, batch_size=32, lr=0.05, sampler="square_root",
                          warmup_epochs=1)
    return train_job("stage1", config, task, split_data, RayConfig())


def _rank(rank: int, port: int, split: str, out: str, kill_after: int, resume_from: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    reports = []

    def report(metrics: dict, directory: Path | None) -> None:
        reports.append(metrics)
        if directory is not None:  # rank 0 holds the checkpoint, as with Ray
            shutil.copytree(directory, Path(out) / f"epoch{metrics['epoch']}")
        if metrics["epoch"] == kill_after:
            raise Killed

    try:
        resume = checkpoint.load(Path(resume_from), torch.device("cpu")) if resume_from else None
        try:
            fit(_job(Path(split)), rank=rank, world=WORLD, device=torch.device("cpu"), resume=resume,
                report=report)
        except Killed:
            pass
        torch.save(reports, Path(out) / f"reports{rank}.pt")
    finally:
        dist.destroy_process_group()


def _two_ranks(split: Path, out: Path, kill_after: int = 0, resume_from: str = "") -> list[list[dict]]:
    out.mkdir()
    spawn_ranks(_rank, (str(split), str(out), kill_after, resume_from), WORLD, TIMEOUT_S)
    return [torch.load(out / f"reports{rank}.pt", weights_only=True) for rank in range(WORLD)]


def test_two_rank_stage1_killed_and_resumed_ends_identical_to_an_uninterrupted_run(tmp_path):
    split = make_digits_split(tmp_path / "digits")
    straight = _two_ranks(split, tmp_path / "straight")
    first = _two_ranks(split, tmp_path / "killed", kill_after=1)
    resumed = _two_ranks(split, tmp_path / "resumed", resume_from=str(tmp_path / "killed" / "epoch1"))
    assert [[r["epoch"] for r in rank] for rank in first] == [[1], [1]]
    assert [[r["epoch"] for r in rank] for rank in resumed] == [[2, 3], [2, 3]]
    for rank in range(WORLD):
        timing_free = [{k: v for k, v in r.items() if k != "images_per_s"} for r in first[rank] + resumed[rank]]
        assert timing_free == [{k: v for k, v in r.items() if k != "images_per_s"} for r in straight[rank]]
    final = torch.load(tmp_path / "resumed" / f"epoch{EPOCHS}" / BEST_FILE, weights_only=True)
    expected = torch.load(tmp_path / "straight" / f"epoch{EPOCHS}" / BEST_FILE, weights_only=True)
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[k], expected[k]) for k in final)
