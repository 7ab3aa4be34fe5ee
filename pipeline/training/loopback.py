"""A local Ray session that nothing off this machine can reach or join.

- every Ray process (GCS, raylet, agents, dashboard, workers, the driver) listens on 127.0.0.1:
  `init_ray` starts the node on 127.0.0.1 with cluster mode off (`LOOPBACK_ONLY`);
- token authentication with a fresh random token per session, set here rather than left to Ray's
  default (which a user's environment or ~/.ray may turn off or share);
- the DDP rendezvous: torch's TCPStore server binds every interface (`::`) and has no option for an
  address, so rank 0 serves it from a socket bound to 127.0.0.1 (`master_listen_fd`) and every rank,
  rank 0 included, joins it as a client (torch's "agent store" mode); gloo and NCCL sockets use the
  loopback interface.

This module is imported before Ray (it sets what Ray reads at start); the rendezvous part, which
needs Ray, is pipeline.training.loopback_store.
"""
from __future__ import annotations

import os
import secrets

import psutil

LOOPBACK = "127.0.0.1"


def loopback_interface() -> str:
    """The name of the network interface holding 127.0.0.1 (lo on Linux, lo0 on macOS)."""
    for name, addresses in psutil.net_if_addrs().items():
        if any(address.address == LOOPBACK for address in addresses):
            return name
    return "lo"


# Marks the environment of a local session's processes (a Tune trial's driver among them, which
# starts its own TorchTrainers): they inherit it from the driver that started the session.
SESSION_MARK = "LTP_LOCAL_RAY_SESSION"


def session_env() -> dict[str, str]:
    """Environment of a local session's processes: our own auth token, collectives on loopback."""
    interface = loopback_interface()
    return {SESSION_MARK: "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "GLOO_SOCKET_IFNAME": interface, "NCCL_SOCKET_IFNAME": interface}


def leave_session_env() -> None:
    """Drop a finished local session's variables (its token above all) before joining a cluster."""
    if os.environ.pop(SESSION_MARK, None):
        for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
            os.environ.pop(name, None)


def in_local_session() -> bool:
    return os.environ.get(SESSION_MARK) == "1"


def start_session_env() -> None:
    """Set this session's environment (before ray.init: every process of the session inherits it).
    Ray reads the auth mode and token once per process and caches them; make it read them again."""
    os.environ.update(session_env())
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
