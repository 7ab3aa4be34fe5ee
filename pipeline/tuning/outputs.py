"""The files a sweep leaves: trials.parquet, best_params.yaml and plots in the run directory; the summary,
history and importances as DVC metrics / plots. Written the same way (possibly empty) with no sweep, so
the stage's outputs always exist."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline.io import write_json, write_rows
from pipeline.tuning.space import Dimension

TRIALS_FILE = "trials.parquet"
BEST_PARAMS_FILE = "best_params.yaml"
PLOTS_DIR = "plots"


def write_trials(path: Path, rows: Sequence[dict], dims: Sequence[Dimension]) -> None:
    """One row per trial; the columns are fixed by the sweep, so an empty sweep has them too."""
    columns = ["trial_id", "status", "epochs", "objective", "best_objective", *(d.name for d in dims)]
    columns += sorted({k for r in rows for k in r if k not in columns})
    table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]) if rows else \
        pa.table({c: pa.array([], pa.string() if c in ("trial_id", "status") else pa.float64()) for c in columns})
    pq.write_table(table, path)


def write_best_params(path: Path, overlay: dict[str, Any], summary: dict[str, Any]) -> None:
    """The overlay stage1 / stage2 apply (`tune.apply`), with where it came from as a comment."""
    header = "# written by the tune stage; stage1 / stage2 apply it when tune.apply is true\n"
    if summary.get("best_trial"):
        header += (f"# best trial {summary['best_trial']}: {summary['objective']} {summary['best_value']:.4f} "
                   f"over {summary['num_trials']} trials\n")
    path.write_text(header + yaml.safe_dump(overlay, sort_keys=True))


def plot_sweep(directory: Path, rows: Sequence[dict], history: Sequence[dict], importances: dict[str, float],
               dims: Sequence[Dimension], metric: str, default_first: bool = False) -> None:
    """optimisation_history.png, parameters.png (each parameter against the objective) and
    importances.png in `directory` (nothing when no trial scored). `default_first`: trial 1 ran
    params.yaml's values, labelled as such."""
    scored = [r for r in rows if r["best_objective"] is not None]
    if not scored:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter([h["trial"] for h in history], [h["objective"] for h in history], label="trial", color="tab:blue")
    ax.step([h["trial"] for h in history], [h["best_so_far"] for h in history], where="post",
            label="best so far", color="tab:orange")
    if default_first and history and history[0]["trial"] == 1:
        ax.annotate("params.yaml", (1, history[0]["objective"]), textcoords="offset points", xytext=(4, 6),
                    fontsize=8)
    ax.set(xlabel="trial", ylabel=metric, title="Optimisation history")
    ax.legend()
    fig.tight_layout()
    fig.savefig(directory / "optimisation_history.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(dims), figsize=(3.2 * len(dims), 3.2), squeeze=False)
    colours = {"completed": "tab:green", "stopped_early": "tab:gray"}
    for ax, dim in zip(axes[0], dims):
        for status, colour in colours.items():
            points = [r for r in scored if r["status"] == status]
            ax.scatter([r[dim.name] for r in points], [r["best_objective"] for r in points], color=colour,
                       label=status.replace("_", " "))
        if dim.scale == "log":
            # Matplotlib labels the minor ticks of a narrow log range as 2x10^-2, 3x10^-2...: they
            # overlap. Plain numbers at 1, 2, 5 per decade instead, slanted.
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelrotation=35, labelsize=8)
        ax.set(xlabel=dim.name, ylabel=metric)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(directory / "parameters.png", dpi=110)
    plt.close(fig)

    if importances:
        fig, ax = plt.subplots(figsize=(5, 0.5 + 0.45 * len(importances)))
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names], color="tab:purple")
        epochs = {r["epochs"] for r in scored}
        title = "Parameter importances"
        if len(epochs) > 1:  # ASHA stopped some: their values are after fewer epochs
            title += f"\n(trials of {min(epochs)} to {max(epochs)} epochs: a rough guide)"
        ax.set(xlabel="fANOVA importance", title=title)
        fig.tight_layout()
        fig.savefig(directory / "importances.png", dpi=110)
        plt.close(fig)


def write_metrics(summary_path: Path, history_path: Path, importances_path: Path, summary: dict,
                  history: Sequence[dict], importances: dict[str, float]) -> None:
    write_json(summary_path, summary)
    write_rows(history_path, history, ["trial", "trial_id", "objective", "best_so_far"])
    write_rows(importances_path, [{"parameter": k, "importance": v} for k, v in importances.items()],
              ["parameter", "importance"])
