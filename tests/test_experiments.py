"""DVC experiments as a researcher runs them, on this project's check and report stages with a stand-in
for the training stages (it writes an evaluated run in seconds): the report keeps the baseline and every
experiment, a bad params value fails before any output is deleted, and DVC's views stay small."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tools import command_env, run_command

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

STAND_IN = '''"""Writes the evaluated run of params stage1.method / stage1.seed, as the evaluate stage lays it out."""
import shutil, sys, tempfile, yaml
from pathlib import Path
sys.path.insert(0, TESTS)
from test_report import write_run

stage1 = yaml.safe_load(open("params.yaml"))["stage1"]
with tempfile.TemporaryDirectory() as tmp:
    write_run(Path(tmp), stage1["method"], stage1["seed"], 0.5 + 0.1 * stage1["seed"])
    for folder in ("metrics", "runs"):
        shutil.copytree(Path(tmp) / folder, folder, dirs_exist_ok=True)
'''


PLOTTED = ("runs/evaluation/per_class.csv", "metrics/reliability.csv", "metrics/test_confusion.csv")
TEMPLATE = ROOT / ".vega/template.html"  # scripts/install-vega.sh (make test / make repro)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A committed baseline run: check (as in dvc.yaml), the stand-in run, report (as in dvc.yaml).
    Shared by the tests below in file order: the failed experiments leave it as it was."""
    repo = tmp_path_factory.mktemp("experiments") / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "pipeline", repo / "pipeline")
    shutil.copytree(ROOT / "stages", repo / "stages")
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    (repo / "stand_in.py").write_text(STAND_IN.replace("TESTS", repr(str(ROOT / "tests"))))
    real = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    report = {**real["report"], "deps": ["runs/params/report.json", "metrics/test.json", "runs/evaluation"]}
    stages = {"check": real["check"],
              "run": {"cmd": "python stand_in.py", "deps": ["runs/params/stage1.json", "stand_in.py"],
                      "outs": ["runs/stage2", "runs/evaluation", {"metrics/split_stats.json": {"cache": False}}],
                      "metrics": real["evaluate"]["metrics"]},
              "report": report}
    plots = [p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
             if isinstance(p, dict) and set(p) & set(PLOTTED)]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages, "plots": plots}, sort_keys=False))
    (repo / ".gitignore").write_text("/runs/\n/reports/\n")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "test@example.com"],
                ["git", "config", "user.name", "test"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.analytics", "false"]):
        run_command(cmd, repo)
    out = run_command(["dvc", "repro"], repo)
    assert "report: 1 run in 1 configuration," in out
    run_command(["git", "add", "-A"], repo)
    run_command(["git", "commit", "-qm", "baseline"], repo)
    return repo


def runs_in_report(repo: Path) -> dict[str, str]:
    """{run: source} from the report's Runs table."""
    lines = (repo / "reports/report.md").read_text().split("## Runs\n", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [line.strip("|").split(" | ") for line in lines if line.startswith("|") and not line.startswith("|---")]
    return {row[0].strip(): row[1].strip() for row in rows[1:]}


@pytest.mark.parametrize("bad", ["+stage1.metod=bcl", "split.imbalance_ratio=0"])
def test_a_failed_experiment_deletes_nothing_and_git_checkout_restores_params(repo, bad):
    tracked = {p: (repo / p).read_bytes() for p in ("metrics/test.json", "metrics/split_stats.json", "dvc.lock")}
    outputs = sorted(str(p.relative_to(repo)) for p in (repo / "runs").rglob("*"))
    result = subprocess.run(["dvc", "exp", "run", "-S", bad], cwd=repo, env=command_env(), capture_output=True,
                            text=True)
    assert result.returncode != 0
    key = bad.lstrip("+").split("=")[0]
    assert f"error: {key}:" in result.stdout + result.stderr
    assert "Running stage 'run'" not in result.stdout
    assert {p: (repo / p).read_bytes() for p in tracked} == tracked
    assert sorted(str(p.relative_to(repo)) for p in (repo / "runs").rglob("*")) == outputs
    run_command(["git", "checkout", "--", "params.yaml"], repo)  # the README's restore command
    assert run_command(["git", "status", "--porcelain"], repo) == ""
    assert "Data and pipelines are up to date" in run_command(["dvc", "status", "check", "run"], repo)


def test_the_report_keeps_the_baseline_and_every_experiment_and_dvc_views_stay_small(repo):
    baseline = run_command(["git", "rev-parse", "--short", "HEAD"], repo).strip()
    out = run_command(["dvc", "exp", "run", "-n", "seed1", "-S", "stage1.seed=1"], repo)
    assert "Running stage 'report'" in out and "report: 2 runs in 1 configuration," in out
    assert runs_in_report(repo) == {"workspace": "workspace", baseline: "commit"}  # seed 1 is the workspace now
    out = run_command(["dvc", "exp", "run", "-n", "seed2", "-S", "stage1.seed=2"], repo)
    assert "report: 3 runs in 1 configuration," in out  # the report stage ran again: never served stale
    assert runs_in_report(repo) == {"workspace": "workspace", baseline: "commit", "seed1": "experiment"}
    summary = run_command(["ltp", "report", "--out", "reports-after"], repo)  # seed 2 is an experiment now
    assert summary.startswith("report: 3 runs in 1 configuration,"), summary

    # DVC's own views: the test metrics only, scalars, and a terminal-wide comparison
    (workspace,) = json.loads(run_command(["dvc", "metrics", "show", "--json"], repo)).values()
    assert list(workspace["data"]) == ["metrics/test.json"]
    columns = workspace["data"]["metrics/test.json"]["data"]
    assert len(columns) <= 11 and all(isinstance(v, (int, float)) for v in columns.values())
    assert {"top1", "balanced_accuracy", "many_accuracy", "medium_accuracy", "few_accuracy"} <= set(columns)
    shown = json.loads(run_command(["dvc", "exp", "show", "--json"], repo))
    for commit in shown:
        for run in [commit, *(e for exp in commit.get("experiments") or [] for e in exp["revs"])]:
            assert set((run["data"] or {}).get("metrics") or {}) <= {"metrics/test.json"}
    header = run_command(["dvc", "exp", "show", "--only-changed", "--csv"], repo).splitlines()[0].split(",")
    assert "stage1.seed" in header and "balanced_accuracy" in header and len(header) <= 20, header


@pytest.mark.skipif(not TEMPLATE.is_file(), reason="no offline template: scripts/install-vega.sh found no npm registry")
def test_dvc_plots_show_draws_each_plot_once_offline(repo, tmp_path):
    from browser import render_page

    run_command(["dvc", "plots", "show", "--html-template", str(TEMPLATE), "-o", str(tmp_path / "plots")], repo)
    page = (tmp_path / "plots/index.html").read_text()
    assert page.count("vegaEmbed(") == len(PLOTTED) and "cdn.jsdelivr" not in page
    result = render_page(tmp_path / "plots/index.html", tmp_path / "shot.png")
    assert result["requests"] == [(tmp_path / "plots/index.html").as_uri()] and result["failed"] == []
    assert len((tmp_path / "shot.png").read_bytes()) > 20_000  # drawn, not a blank page
