import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/datagen.py

# Local Ray sessions started by tests stay on loopback (see pipeline.training.launch.LOOPBACK_ONLY);
# set before any test module imports Ray, and inherited by the stages the tests run as subprocesses.
from pipeline.training.launch import LOOPBACK_ONLY  # noqa: E402

os.environ.update(LOOPBACK_ONLY)
