"""The library's floors, read from the imports of its source: no module under pipeline/ imports from a
floor above its own, the long-tail science stays pure, and Ray is imported only where work starts on
it (the launcher) or runs on it (the worker entry points, the sweep)."""
import ast
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

# Each top-level module or package of pipeline/ on its floor, lowest first: a room imports only from
# its own floor and those below. stages/ (the app) stands above them all.
FLOORS = (
    ("registry", "config", "io", "storage", "precision", "distributed", "longtail"),  # ground floor
    ("samplers",),
    ("data", "models", "losses", "augment"),
    ("training",),
    ("evaluation", "tuning"),
    ("reporting", "cluster"),
)
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}

# The modules that may import Ray, and why.
RAY_IMPORTERS = {
    "pipeline/training/launch.py": "the launcher: run_on_ray, the one place Ray starts",
    "pipeline/training/loopback.py": "the launcher's local session (its token)",
    "pipeline/training/loopback_store.py": "the launcher's DDP rendezvous on 127.0.0.1",
    "pipeline/training/worker.py": "the training worker's entry point",
    "pipeline/evaluation/worker.py": "the evaluation worker's entry point",
    "pipeline/tuning/sweep.py": "the sweep, which is Ray Tune; its trials train through run_on_ray",
    "pipeline/cluster/submit.py": "`ltp submit`: Ray's job-submission client talks to a cluster, starts no Ray",
}
# What the ground floor's science may import: numpy, the standard library and the registry.
PURE_IMPORTS = {"numpy", "pipeline.registry", "pipeline.longtail"}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in `path`, function bodies included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            found.append((node.lineno, node.module))
    return found


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def room(module: str) -> str:
    """pipeline.training.loop -> training; pipeline.config -> config."""
    return module.split(".")[1]


def test_every_room_of_the_library_has_a_floor():
    rooms = {p.stem if p.is_file() else p.name for p in (ROOT / "pipeline").iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or any(p.glob("*.py"))}
    assert rooms == set(FLOOR)


def test_no_module_imports_from_a_higher_floor():
    upward = []
    for path in sources("pipeline"):
        rel = path.relative_to(ROOT)
        if rel.parts[1] == "__init__.py":
            continue
        own = FLOOR[rel.parts[1].removesuffix(".py")]
        for line, module in imports(path):
            if module.split(".")[0] == "stages":
                upward.append(f"{rel}:{line} imports the app: {module}")
            elif module.startswith("pipeline.") and FLOOR[room(module)] > own:
                upward.append(f"{rel}:{line} imports {module} (floor {FLOOR[room(module)]} > {own})")
    assert upward == []


def test_the_long_tail_science_is_pure():
    allowed = set(sys.stdlib_module_names)
    impure = [f"{path.relative_to(ROOT)}:{line} imports {module}"
              for path in sources("pipeline/longtail") for line, module in imports(path)
              if module.split(".")[0] not in allowed and module != "numpy"
              and not any(module == p or module.startswith(p + ".") for p in PURE_IMPORTS)]
    assert impure == []
    io_modules = {"io", "os", "pathlib", "json", "shutil", "socket", "subprocess", "tempfile"}
    touches_io = [f"{path.relative_to(ROOT)}: {module}" for path in sources("pipeline/longtail")
                  for _, module in imports(path) if module.split(".")[0] in io_modules]
    assert touches_io == []


def test_ray_is_imported_only_by_the_launcher_workers_and_sweep():
    importers = {str(path.relative_to(ROOT)) for path in sources("pipeline", "stages")
                 for _, module in imports(path) if module.split(".")[0] == "ray"}
    assert importers == set(RAY_IMPORTERS)


def test_ray_train_runs_only_through_the_launcher():
    trainers = {str(path.relative_to(ROOT)) for path in sources("pipeline", "stages")
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom) and any(a.name == "TorchTrainer" for a in node.names)}
    assert trainers == {"pipeline/training/launch.py"}


def test_drivers_and_workers_import_ray_only_once_the_launcher_runs():
    """The launcher sets the environment Ray reads at import; importing a driver or a worker module
    must not import Ray before it does."""
    modules = ["pipeline.training.run", "pipeline.evaluation.evaluate", "pipeline.tuning.run",
               "pipeline.training.worker", "pipeline.evaluation.worker"]
    probe = f"import sys, {', '.join(modules)}; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
