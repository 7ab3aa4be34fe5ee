"""The workspace's paths live in one place on the app side (stages/workspace.py): dvc.yaml names the
same paths for each stage, and the library (pipeline/) names none of them."""
import ast
import dataclasses
import shlex
from pathlib import Path

import yaml

from stages.dvcfile import read_stages
from stages.workspace import WORKSPACE

ROOT = Path(__file__).resolve().parents[1]
PATHS = dataclasses.asdict(WORKSPACE)  # field name -> path

# Each stage's data deps and outs (outs, metrics, plots) as Workspace fields, in dvc.yaml's order; every
# stage but check also depends on its own runs/params/STAGE.json, and report on the kept-runs folder.
STAGE_FILES = {
    "check": (["params"], ["stage_params"]),
    "fetch": ([], ["raw"]),
    "prepare": (["raw"], ["prepared"]),
    "split": (["prepared"], ["split", "split_stats", "split_class_counts"]),
    "tune": (["split"], ["tune", "tune_summary", "tune_history", "tune_importances"]),
    "stage1": (["split", "tuned"], ["stage1", "stage1_metrics", "stage1_history"]),
    "stage2": (["split", "stage1", "tuned"], ["stage2", "stage2_metrics", "stage2_history"]),
    "evaluate": (["prepared", "stage2"], ["evaluation", "test_metrics"]),
    "report": (["test_metrics", "split_stats", "evaluation", "stage2", "tune_summary", "tune"],
               ["reports", "reliability", "test_confusion"]),
}


def _is_code(path: str) -> bool:
    return path.split("/")[0] in ("pipeline", "stages")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def named_paths(source: Path) -> set[str]:
    """The workspace paths that a module's string constants (docstrings aside) name or lie inside."""
    tree = ast.parse(source.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    constants = [node.value for node in ast.walk(tree)
                 if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]
    return {path for path in PATHS.values() for text in constants if _inside(text, path)}


def test_the_library_names_no_workspace_path():
    named = {str(f.relative_to(ROOT)): sorted(paths) for f in sorted((ROOT / "pipeline").rglob("*.py"))
             if (paths := named_paths(f))}
    # the sweep's history figure labels trial 1 with the name of the values it ran: text, not a path
    assert named == {"pipeline/tuning/outputs.py": ["params.yaml"]}
    # the same walk finds every path where the app defines them
    assert named_paths(ROOT / "stages/workspace.py") == set(PATHS.values())


def test_each_stage_of_dvc_yaml_reads_and_writes_the_workspace_paths():
    stages = read_stages(ROOT / "dvc.yaml")
    assert list(stages) == list(STAGE_FILES)
    kept_runs = yaml.safe_load((ROOT / "params.yaml").read_text())["report"]["kept_runs"]
    for name, (deps, outs) in STAGE_FILES.items():
        stage = stages[name]
        expected_deps = ([] if name == "check" else [f"{WORKSPACE.stage_params}/{name}.json"])
        expected_deps += [PATHS[field] for field in deps] + ([kept_runs] if name == "report" else [])
        assert [d for d in stage.deps if not _is_code(d)] == expected_deps, name
        assert list(stage.outs + stage.metrics + stage.plots) == [PATHS[field] for field in outs], name


def test_every_workspace_path_is_a_stage_output_or_lies_inside_one():
    stages = read_stages(ROOT / "dvc.yaml")
    written = {path for stage in stages.values() for path in stage.outs + stage.metrics + stage.plots}
    for field, path in PATHS.items():
        if field != "params":  # the one input no stage writes
            assert any(_inside(path, out) for out in written), field
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    for plot in (entry if isinstance(entry, str) else next(iter(entry)) for entry in plots):
        assert any(_inside(plot, out) for out in written), plot


def test_dvc_yaml_commands_pass_only_workspace_paths():
    """The stages' defaults are the Workspace's paths; the commands dvc.yaml runs pass the same ones."""
    for name, stage in read_stages(ROOT / "dvc.yaml").items():
        words = shlex.split(stage.cmd)
        assert words[:2] == ["ltp", name]
        values = [word for word in words[2:] if not word.startswith("--")]
        assert values and set(values) <= set(PATHS.values()), name


def test_files_inside_a_stage_output_carry_the_names_their_writer_gives_them():
    from pipeline.training.run import JOB_FILE
    from pipeline.tuning.outputs import BEST_PARAMS_FILE, TRIALS_FILE

    assert WORKSPACE.stage2_job == f"{WORKSPACE.stage2}/{JOB_FILE}"
    assert WORKSPACE.tuned == f"{WORKSPACE.tune}/{BEST_PARAMS_FILE}"
    assert WORKSPACE.tune_trials == f"{WORKSPACE.tune}/{TRIALS_FILE}"
