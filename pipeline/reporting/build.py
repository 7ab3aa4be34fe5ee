"""The report stage's work: gather runs, build the page's blocks, write Markdown, HTML, figures and CSV."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.config import require
from pipeline.data.split_stats import SplitStats
from pipeline.io import atomic_dir, write_rows
from pipeline.reporting import plots
from pipeline.reporting.config import ReportConfig
from pipeline.reporting.document import Block, Heading, Image, Paragraph, Table, to_html, to_markdown
from pipeline.reporting.gather import gather_runs
from pipeline.reporting.published import comparable
from pipeline.reporting.records import RunError, RunFiles, RunRecord, directory_reader, load_run
from pipeline.reporting.sweep import Sweep, SweepFiles, load_sweep
from pipeline.reporting.tables import METRIC_COLUMNS, Cell, LeaderboardRow, best_run, format_cell, leaderboard

TITLE = "Head / medium / tail report"


@dataclass(frozen=True)
class ReportSummary:
    runs: int
    configurations: int
    best: str
    best_balanced: float
    skipped: int

    def line(self) -> str:
        return (f"report: {counted(self.runs, 'run')} in {counted(self.configurations, 'configuration')}, "
                f"best {self.best} (balanced {100 * self.best_balanced:.2f}%), "
                f"{counted(self.skipped, 'incomplete run')} skipped")


def counted(n: int, noun: str) -> str:
    """'1 run', '2 runs'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


LABEL_HEADERS = ("dataset", "rho", "stage 1", "stage 2", "params", "backbone", "epochs")


def _label_cells(row: LeaderboardRow) -> tuple[str, ...]:
    label = row.label
    return (label.dataset, f"{label.rho:g}", label.stage1, label.stage2, label.params or "-",
            label.backbone, label.epochs)


def leaderboard_table(rows: list[LeaderboardRow], split: SplitStats) -> Table:
    headers = (*LABEL_HEADERS, "seeds", "runs", *(title for _, title, _ in METRIC_COLUMNS))
    first = len(headers) - len(METRIC_COLUMNS)
    cells, best = [], set()
    for i, row in enumerate(rows):
        metric_cells = [row.cells[key] for key, _, _ in METRIC_COLUMNS]
        best |= {(i, first + j) for j, cell in enumerate(metric_cells) if cell.best}
        cells.append((*_label_cells(row), ", ".join(row.seeds), ", ".join(row.runs),
                      *(format_cell(c) for c in metric_cells)))
    thresholds = split.thresholds
    caption = (f"Test split, %. Mean ± sample std (ddof=1) over seeds where a configuration has several; "
               f"bold: best mean per column (lowest for ECE). Groups from training counts: many > "
               f"{thresholds.many_above}, few < {thresholds.few_below} images.")
    return Table(headers, tuple(cells), frozenset(best), caption)


def runs_table(records: list[RunRecord]) -> Table:
    headers = ("run", "source", "dataset", "rho", "stage 1", "stage 2", "seed", *(t for _, t, _ in METRIC_COLUMNS))
    rows = tuple((r.name, r.source, r.label.dataset, f"{r.label.rho:g}", r.label.stage1, r.label.stage2,
                  r.label.seed, *(format_cell(Cell(math.nan if r.metrics.get(k) is None else r.metrics[k], math.nan))
                                  for k, _, _ in METRIC_COLUMNS)) for r in records)
    return Table(headers, rows, caption="Every run found, test split, %.")


def published_blocks(rows: list[LeaderboardRow]) -> list[Block]:
    matched, notes = [], []
    for row in rows:
        _, figure, reason = comparable(row.label)
        name = plots.method_name(row, with_dataset=True)
        if figure is None:
            notes.append(f"{name}: {reason}.")
            continue
        ours_groups = "/".join(format_cell(Cell(row.cells[f"{g}_accuracy"].mean, math.nan)) for g in
                               ("many", "medium", "few"))
        theirs_groups = "/".join(f"{v:.1f}" for v in figure.groups) if figure.groups else "-"
        matched.append((name, figure.method, format_cell(row.cells["top1"]), figure.top1, ours_groups, theirs_groups))
    blocks: list[Block] = [Heading("Published figures (docs/methods.md)")]
    if matched:
        blocks.append(Table(("our configuration", "published method", "our top-1", "published top-1",
                             "our many/medium/few", "published many/medium/few"), tuple(matched),
                            caption="Only where dataset, imbalance, backbone and training length match."))
    else:
        blocks.append(Paragraph("None of these runs follows a protocol with published figures, so no "
                                "published number is set beside them."))
    blocks += [Paragraph(note) for note in notes]
    return blocks


def sweep_blocks(sweep: Sweep) -> list[Block]:
    s = sweep.summary
    blocks: list[Block] = [Heading("Sweep"), Paragraph(
        f"Objective {s.get('objective')}: best {s.get('best_value'):.4f} in trial {s.get('best_trial')}; "
        f"{s.get('num_trials')} trials ({s.get('num_completed')} completed, {s.get('num_stopped_early')} "
        f"stopped early, {s.get('num_errors')} errors) in {s.get('wall_s', 0):.0f} s.")]
    best_params = s.get("best_params") or {}
    blocks.append(Table(("parameter", "best value"), tuple((k, f"{v:.4g}" if isinstance(v, float) else str(v))
                                                          for k, v in best_params.items())))
    if sweep.trials:
        names = list(best_params)
        top = sweep.trials[:10]
        blocks.append(Table(("trial", "status", "epochs", "objective", *names), tuple(
            (str(t["trial_id"]), str(t["status"]), str(t.get("epochs")),
             "-" if t.get("objective") is None else f"{t['objective']:.4f}",
             *(f"{t.get(n):.4g}" if isinstance(t.get(n), float) else str(t.get(n)) for n in names)) for t in top),
            caption=f"Best {len(top)} of {len(sweep.trials)} trials."))
    if sweep.importances:
        blocks.append(Image("sweep_importances.png", plots.sweep_importances(sweep.importances), "parameter importances"))
    if sweep.history:
        blocks.append(Image("sweep_history.png", plots.sweep_history(sweep.history), "sweep history"))
    return blocks


def report_blocks(records: list[RunRecord], skipped: list[str], sweep: Sweep | None,
                  cfg: ReportConfig) -> tuple[list[Block], list[LeaderboardRow]]:
    rows = leaderboard(records)
    best = best_run(records)
    sources = ", ".join(f"{sum(r.source == s for r in records)} {s}"
                        for s in ("workspace", "commit", "experiment", "kept") if any(r.source == s for r in records))
    blocks: list[Block] = [Heading(TITLE, 1), Paragraph(
        f"{counted(len(records), 'evaluated run')} ({sources}) in {counted(len(rows), 'configuration')}. "
        f"Best by balanced accuracy: {best.name}. Runs come from the workspace, the commit it is based on (HEAD), "
        "DVC experiments (their git refs) and the kept-runs folder (ltp keep NAME).")]
    blocks += [Paragraph(f"Skipped: {note}") for note in skipped]
    blocks += [Heading("Leaderboard"), leaderboard_table(rows, best.split), Heading("Runs"), runs_table(records)]
    blocks += [Heading("Per-class accuracy against training count"),
               Image("per_class_accuracy.png", plots.per_class_accuracy(rows, records), "per-class accuracy"),
               Heading("Many / medium / few"), Image("groups.png", plots.group_bars(rows), "group accuracy")]
    blocks.append(Heading("Training split"))
    splits = {(r.label.dataset, r.label.rho, r.split.seed): r.split for r in records}
    for i, split in enumerate(list(splits.values())[:4]):
        blocks.append(Image(f"split_{i}.png", plots.class_histogram(split), "class-count histogram"))
    blocks += [Heading(f"Confusion matrix: {best.name}"),
               Image("confusion.png", plots.confusion(best, cfg.confusion_max_classes), "confusion matrix")]
    if best.reliability is not None:
        blocks += [Heading(f"Reliability: {best.name}"),
                   Image("reliability.png", plots.reliability(best.reliability, best.name), "reliability diagram")]
    if sweep is not None:
        blocks += sweep_blocks(sweep)
    blocks += published_blocks(rows)
    return blocks, rows


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    write_rows(path, [dict(zip(header, row)) for row in rows], header)


def write_dvc_plots(root: Path, files: RunFiles, reliability_path: Path, confusion_path: Path) -> None:
    """The workspace run's reliability bins and (actual, predicted) class names, for `dvc plots show`."""
    record = load_run(directory_reader(root), files, "workspace", "workspace")
    bins = record.reliability
    _write_csv(reliability_path, ["bin", "confidence", "accuracy", "count"],
               [[i, *(None if np.isnan(v) else round(float(v), 6) for v in (bins.confidence[i], bins.accuracy[i])),
                 int(bins.count[i])] for i in range(len(bins.count))])
    table = pq.read_table(root / files.predictions, columns=["label", "predicted"]).to_pydict()
    names = [c["name"] for c in record.per_class]
    _write_csv(confusion_path, ["actual", "predicted"],
               [[names[a], names[p]] for a, p in zip(table["label"], table["predicted"])])


def build_report(cfg: ReportConfig, root: str | Path, run_files: RunFiles, sweep_files: SweepFiles,
                 out_dir: str | Path, reliability_path: str | Path, confusion_path: str | Path) -> ReportSummary:
    """Gather every run under `root` (each run's `run_files`) and the sweep's `sweep_files`, write
    out_dir/{report.md, report.html, leaderboard.csv, figures/}."""
    root = Path(root)
    records, skipped = gather_runs(root, run_files, root / cfg.kept_runs, cfg.experiments)  # absolute stays absolute
    if not records:
        raise RunError("no evaluated run found: run `dvc repro` (or `ltp evaluate`) first"
                       + "".join(f"\n  {note}" for note in skipped))
    blocks, rows = report_blocks(records, skipped, load_sweep(root, sweep_files), cfg)
    with atomic_dir(out_dir) as tmp:
        (tmp / "figures").mkdir()
        for block in blocks:
            if isinstance(block, Image):
                (tmp / "figures" / block.name).write_bytes(block.png)
        (tmp / "report.md").write_text(to_markdown(blocks))
        (tmp / "report.html").write_text(to_html(blocks, TITLE))
        _write_csv(tmp / "leaderboard.csv",
                   [*LABEL_HEADERS, "seeds", "runs", *(f"{k}_{s}" for k, _, _ in METRIC_COLUMNS
                                                       for s in ("mean", "std"))],
                   [[*_label_cells(row), " ".join(row.seeds), " ".join(row.runs),
                     *(v for k, _, _ in METRIC_COLUMNS for v in (row.cells[k].mean, row.cells[k].std))]
                    for row in rows])
    if (root / run_files.predictions).is_file():
        write_dvc_plots(root, run_files, Path(reliability_path), Path(confusion_path))
    best = best_run(records)
    return ReportSummary(runs=len(records), configurations=len(rows), best=best.name,
                         best_balanced=float(best.metrics.get("balanced_accuracy") or math.nan), skipped=len(skipped))
