"""dvc.yaml's code dependencies are exactly the project modules each stage imports.

The imports are read from the source (module level and inside functions, since the stages import
their library lazily), following `pipeline.*` and `stages.*` from stages/STAGE.py. A folder in
dvc.yaml stands for every module under it, so a folder is right only when the stage imports all of it.
"""
import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")


def _module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path) -> set[str]:
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def imported_files(stage: str) -> set[str]:
    """stages/STAGE.py and every project module it imports, directly or not (package __init__s included)."""
    seen: set[Path] = set()
    todo = [ROOT / "stages" / f"{stage}.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path):
            parts = name.split(".")
            if parts[0] not in PACKAGES:
                continue
            for end in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                found = _module_file(".".join(parts[:end]))
                if found is not None:
                    todo.append(found)
    return {p.relative_to(ROOT).as_posix() for p in seen}


def project_modules(dep: str) -> set[str]:
    """The project's Python files a dvc.yaml dependency covers (a folder: all of them under it)."""
    path = ROOT / dep
    if path.is_dir():
        return {p.relative_to(ROOT).as_posix() for p in path.rglob("*.py") if "__pycache__" not in p.parts}
    return {dep} if dep.endswith(".py") else set()


def minimal_cover(files: set[str]) -> list[str]:
    """The shortest dependency list for `files`: a folder wherever every module under it is used."""
    deps: set[str] = set()
    for file in files:
        best = file
        for parent in Path(file).parents:
            if parent == Path(".") or not project_modules(parent.as_posix()) <= files:
                break
            best = parent.as_posix()
        deps.add(best)
    return sorted(d for d in deps if not any(d.startswith(f"{o}/") for o in deps))


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_are_the_modules_the_stage_imports(stage):
    cmd = STAGES[stage]["cmd"].split()
    assert cmd[:2] == ["ltp", stage]
    code_deps = [d for d in STAGES[stage]["deps"] if d.split("/")[0] in PACKAGES]
    covered = set().union(*map(project_modules, code_deps))
    imported = imported_files(stage)
    assert covered == imported, (
        f"{stage}: dvc.yaml misses {sorted(imported - covered)} and has {sorted(covered - imported)}; "
        f"the exact list: {minimal_cover(imported)}")
    assert sorted(code_deps) == minimal_cover(imported)  # folders where they cover it all, no overlaps


def test_the_import_walk_follows_lazy_and_package_imports():
    split = imported_files("split")
    assert {"stages/split.py", "stages/common.py", "pipeline/data/split.py", "pipeline/io.py",
            "pipeline/config.py", "pipeline/longtail/profiles.py"} <= split
    assert not any(f.startswith("pipeline/training/") for f in split)  # no torch code behind the data stages
    assert "pipeline/tuning/run.py" in imported_files("stage1")  # through stages/tuned.py, inside main()
