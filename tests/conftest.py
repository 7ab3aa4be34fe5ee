import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/datagen.py

# Local Ray sessions started by tests stay on loopback (see pipeline.training.launch.LOOPBACK_ONLY);
# set before any test module imports Ray, and inherited by the stages the tests run as subprocesses.
from pipeline.training.launch import LOOPBACK_ONLY  # noqa: E402

os.environ.update(LOOPBACK_ONLY)

# The files that take longest (worker time, `make test` on 2 cores, 2026-11-27), started first so
# that the two pytest workers finish together instead of one running a long file alone at the end.
LONGEST_FIRST = ("test_tune.py", "test_cluster_submit.py", "test_pipeline_e2e.py", "test_benchmarks.py",
                 "test_training_ray.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order
