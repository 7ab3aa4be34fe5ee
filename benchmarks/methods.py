"""The method table: every trainable stage-1 method, plus cRT, LWS and tau-norm on the CE and LA
models, on the default split (params.yaml: Fashion-MNIST-LT, rho = 100) through the training loop
(pipeline.training.loop.fit, in-process, no Ray), 3 seeds each; test top-1, many / medium / few,
macro-F1 and ECE as mean +- sample std (ddof 1) over the seeds.

The data stages run into a temporary directory with params.yaml's data, prepare and split sections
(fetch finds the installed Fashion-MNIST: `make data`). Training takes params.yaml's stage sections
with the method swapped in and a budget: `--epochs` epochs of at most `--images` training images
each (an epoch stops after ceil(images / batch) steps of the seeded, shuffled stream). The epoch
with the best validation balanced accuracy is evaluated on the 10,000 test images.
The CLIP methods are not in the table: they need pretrained towers on RGB input (a download).

    python -m benchmarks.methods [--small] [--epochs E] [--images N] [--stage2-epochs E2] [--seeds S]
                                 [--methods ce,la,...] [--out FILE] [--under-load]

--small: synthetic Fashion-MNIST-format data (600 training images, 100 test) and one epoch of 32
images per run, for the test. --under-load marks the figures as measured on a shared, busy machine.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks.common import parser, report, write_idx_raw
from pipeline.config import parse_section
from pipeline.data.config import DataConfig, PrepareConfig, SplitConfig
from pipeline.data.contracts import SplitOutput, read_split
from pipeline.data.fetch import fetch
from pipeline.data.prepare import prepare
from pipeline.data.split import build_split
from pipeline.io import write_json
from pipeline.training.checkpoint import BEST_FILE
from pipeline.training.config import ModelConfig, RayConfig, Stage1Config, Stage2Config, StageConfig
from pipeline.training.job import TrainJob, assemble_method, task_of, train_job
from pipeline.training.loop import fit
from pipeline.training.methods import STAGE1, Task
from pipeline.training.predict import gathered_predictions, validation_metrics

ROOT = Path(__file__).resolve().parents[1]
CLIP_METHODS = ("clip", "zeroshot_clip")
STAGE2_ON = {"ce": ("crt", "lws", "tau_norm"), "la": ("crt", "lws", "tau_norm")}
METRICS = ("top1", "many_accuracy", "medium_accuracy", "few_accuracy", "macro_f1", "ece")
CPU = torch.device("cpu")


def make_split(work: Path, params: dict, small: bool) -> tuple[Path, tuple[str, ...]]:
    """fetch -> prepare -> split into `work`; returns the split directory and the test shards."""
    if small:
        raw = write_idx_raw(work / "raw", train=600, test=100)
        split = {**params["split"], "val_per_class": 3, "n_max": None, "imbalance_ratio": 10,
                 "many_threshold": 30, "few_threshold": 10}
    else:
        raw = work / "raw"
        fetch(parse_section(DataConfig, params, "data"), raw)
        split = params["split"]
    prepare(parse_section(PrepareConfig, params, "prepare"), raw, work / "prepared")
    build_split(SplitConfig(**split), work / "prepared", work / "split", work / "stats.json", work / "counts.csv")
    return work / "split", tuple(sorted(str(p) for p in (work / "prepared" / "test").glob("*.tar")))


def test_metrics(job: TrainJob, weights: Path, test_shards: tuple[str, ...]) -> dict[str, float]:
    """The long-tail metrics of the trained weights on the test shards (the loop's validation metrics)."""
    method = assemble_method(job.stage, job.config, job.task, job.stage1, job.stage1_weights)
    method.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    predictions = gathered_predictions(method, test_shards, job.task, CPU, 512, 0, 0, 1)
    return {k.removeprefix("val_"): v for k, v in validation_metrics(predictions, job.task).items()}


def train(stage: str, config: StageConfig, task: Task, split: SplitOutput, images: int, out: Path,
          stage1: StageConfig | None = None, stage1_weights: str | None = None) -> TrainJob:
    """fit() with a budget of `images` training images an epoch; the best epoch's weights land in out/BEST_FILE."""
    job = dataclasses.replace(train_job(stage, config, task, split, RayConfig(), stage1=stage1,
                                        stage1_weights=stage1_weights), num_train=images)

    def keep(metrics: dict, directory: Path | None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / BEST_FILE).write_bytes((directory / BEST_FILE).read_bytes())

    fit(job, rank=0, world=1, device=CPU, resume=None, report=keep)
    return job


def summarise(name: str, runs: list[dict]) -> dict:
    """Mean and sample std over the seeds; accuracies and macro-F1 in %, ECE as a fraction."""
    row: dict = {"method": name, "seeds": len(runs)}
    for metric in METRICS:
        values = [100 * r[metric] if metric != "ece" else r[metric] for r in runs]
        finite = [v for v in values if math.isfinite(v)]
        row[metric] = round(statistics.mean(finite), 4) if finite else math.nan
        row[f"{metric}_std"] = round(statistics.stdev(finite), 4) if len(finite) > 1 else 0.0
    return row


def markdown_table(rows: list[dict]) -> str:
    """The README table: mean +- std per column."""
    header = "| method | top-1 | many | medium | few | macro-F1 | ECE |\n|---|---|---|---|---|---|---|"
    lines = [header]
    for row in rows:
        cells = [f"{row[m]:.3f} ± {row[m + '_std']:.3f}" if m == "ece" else f"{row[m]:.1f} ± {row[m + '_std']:.1f}"
                 for m in METRICS]
        lines.append(f"| `{row['method']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli = parser(__doc__)
    cli.add_argument("--epochs", type=int, default=None, help="stage-1 epochs per run (default 4; small: 1)")
    cli.add_argument("--images", type=int, default=None, help="training images per epoch (default: all)")
    cli.add_argument("--stage2-epochs", type=int, default=None, help="stage-2 epochs (default: half of --epochs)")
    cli.add_argument("--seeds", type=int, default=3)
    cli.add_argument("--methods", default=None,
                     help="comma-separated stage-1 methods (default: every registered one but CLIP's)")
    cli.add_argument("--under-load", action="store_true", help="the machine was shared and busy")
    args = cli.parse_args(argv)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    epochs = args.epochs or (1 if args.small else 4)
    stage2_epochs = args.stage2_epochs or max(1, epochs // 2)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split_dir, test_shards = make_split(work, params, args.small)
        model = parse_section(ModelConfig, params, "model")
        split = read_split(split_dir)
        task = task_of(split.stats, model)
        num_train = split.stats.train_total
        images = min(args.images or num_train, num_train)
        if args.small:
            images = min(images, 32)
        base1 = parse_section(Stage1Config, params, "stage1")
        base2 = parse_section(Stage2Config, params, "stage2")
        batch = min(base1.batch_size, images)
        stage1_runs: dict[str, list[dict]] = {}
        stage2_runs: dict[str, list[dict]] = {}
        methods = args.methods.split(",") if args.methods else [n for n in STAGE1.names() if n not in CLIP_METHODS]
        unknown = sorted(set(methods) - set(STAGE1.names()) | set(methods) & set(CLIP_METHODS))
        if unknown:
            cli.error(f"--methods: {', '.join(unknown)} cannot run here")
        for name in methods:
            for seed in range(args.seeds):
                tic = time.perf_counter()
                config = Stage1Config(**{**base1.__dict__, "method": name, "params": {}, "epochs": epochs,
                                         "warmup_epochs": min(base1.warmup_epochs, epochs), "seed": seed,
                                         "batch_size": batch})
                out = work / "runs" / f"{name}-{seed}"
                job = train("stage1", config, task, split, images, out)
                result = test_metrics(job, out / BEST_FILE, test_shards)
                stage1_runs.setdefault(name, []).append({**result, "seed": seed,
                                                         "seconds": round(time.perf_counter() - tic, 1)})
                print(f"methods: {name} seed {seed}: top-1 {100 * result['top1']:.1f} "
                      f"({time.perf_counter() - started:.0f} s so far)", flush=True)
                for second in STAGE2_ON.get(name, ()):
                    tic = time.perf_counter()
                    config2 = Stage2Config(**{**base2.__dict__, "method": second, "epochs": stage2_epochs,
                                              "seed": seed, "batch_size": batch})
                    out2 = work / "runs" / f"{name}-{second}-{seed}"
                    job2 = train("stage2", config2, task, split, images, out2, stage1=config,
                                 stage1_weights=str(out / BEST_FILE))
                    result2 = test_metrics(job2, out2 / BEST_FILE, test_shards)
                    stage2_runs.setdefault(f"{name} + {second}", []).append(
                        {**result2, "seed": seed, "seconds": round(time.perf_counter() - tic, 1)})
        runs = {**stage1_runs, **stage2_runs}
        rows = [summarise(name, per_seed) for name, per_seed in runs.items()]
    elapsed = time.perf_counter() - started
    setting = {
        "data": "synthetic Fashion-MNIST format (small)" if args.small else "Fashion-MNIST-LT rho=100 (params.yaml)",
        "train_images": num_train, "images_per_epoch": images, "stage1_epochs": epochs,
        "stage2_epochs": stage2_epochs, "batch_size": batch, "seeds": args.seeds,
        "model": model.backbone, "device": "cpu", "torch_threads": torch.get_num_threads(),
        "metrics": "test split; top-1 / groups / macro-F1 in %, ECE as a fraction; mean and sample std over seeds",
        "not_in_table": {m: "needs pretrained CLIP towers on RGB input (a download)" for m in CLIP_METHODS},
        "measured_under_load": args.under_load, "seconds": round(elapsed, 1),
    }
    path = report("methods", setting, rows, args.out)
    result = json.loads(path.read_text())
    write_json(path, {**result, "runs": runs})  # every seed's figures beside the summary
    print(markdown_table(rows))
    print(f"methods: {len(rows)} rows, {sum(r['seeds'] for r in rows)} runs in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
