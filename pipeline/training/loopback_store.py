"""The DDP rendezvous of a local session on 127.0.0.1 only (see pipeline.training.loopback).

torch's TCPStore server binds every interface (`::`) and has no option for an address, so rank 0
serves it from a socket bound to 127.0.0.1 (`master_listen_fd`) and every rank, rank 0 included,
joins it as a client (torch's "agent store" mode). This re-does `ray.train.torch`'s process-group
start (Ray 2.60, pinned in pyproject.toml) with that store; clusters keep Ray's own.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import ray
from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _setup_torch_process_group, _TorchBackend

from pipeline.training.loopback import LOOPBACK

_store = None  # rank 0's store server, alive as long as its worker process


def _serve_store() -> int:
    """In the rank-0 worker: a TCPStore server on 127.0.0.1 only; returns its port."""
    import torch.distributed as dist

    global _store
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    _store = dist.TCPStore(LOOPBACK, port, is_master=True, master_listen_fd=listener.detach(),
                           wait_for_workers=False)
    return port


def _join_store(port: int) -> None:
    os.environ.update({"MASTER_ADDR": LOOPBACK, "MASTER_PORT": str(port), "TORCHELASTIC_USE_AGENT_STORE": "True"})


class _LoopbackBackend(_TorchBackend):
    def on_start(self, worker_group, backend_config: TorchConfig) -> None:
        backend = backend_config.backend
        if backend is None:
            backend = "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo"
        port = worker_group.execute_single(0, _serve_store)
        worker_group.execute(_join_store, port=port)
        worker_group.execute(_set_torch_distributed_env_vars)
        ray.get([worker_group.execute_single_async(rank, _setup_torch_process_group, backend=backend,
                                                   world_rank=rank, world_size=len(worker_group),
                                                   init_method="env://", timeout_s=backend_config.timeout_s)
                 for rank in range(len(worker_group))])


@dataclass
class LoopbackTorchConfig(TorchConfig):
    """TorchConfig whose process group meets on a store listening on 127.0.0.1 only."""

    @property
    def backend_cls(self):
        return _LoopbackBackend
