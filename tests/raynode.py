"""`ray start` for a second node on this machine that stays on 127.0.0.1 (test harness only).

Ray's CLI refuses `ray start --address` while cluster mode is off
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), and with it on it replaces 127.0.0.1 by
the machine's outward IP. So the CLI runs with cluster mode off (every address
stays on loopback) and only its refusal to add a node is lifted.
Usage: python tests/raynode.py start --address=127.0.0.1:PORT --node-ip-address=127.0.0.1 ...
"""
import sys
import types

import ray._private.ray_constants as constants
from ray.scripts import scripts

# A view of Ray's constants for the CLI module alone; the rest of Ray keeps cluster mode off.
scripts.ray_constants = types.SimpleNamespace(**{**vars(constants), "ENABLE_RAY_CLUSTER": True})
sys.exit(scripts.main())
