"""Several processes, one per device, training one model together (PyTorch DistributedDataParallel).

    devices = resolve_devices("0,1")                      # [cuda:0, cuda:1]; resolve_devices(2, "cpu"): 2 CPU processes
    launch(work, devices, trainer)                        # work(context, trainer) in each process, rank 0..N-1
    context.wrap(module)                                  # DDP: gradients averaged over the processes
    context.broadcast_flag(stop)                          # rank 0's decision, on every rank

One process per device (NCCL between GPUs, gloo between CPU processes, which is how this is tested without a GPU),
rendezvous over a free loopback port: it is for the GPUs of one machine. Rank 0 is the main process: it evaluates,
writes and logs; the others train their shard of each epoch and wait for its decisions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mlcore.errors import ConfigError, MlcoreError
from mlcore.logs import get_logger
from mlcore.training.run_setup import resolve_device

log = get_logger(__name__)

# Rank 0 evaluates alone while the others wait in a collective: give a long validation room before a timeout.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the group: rank `rank` of `world_size`, training on `device`."""

    rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """`module` in DDP: every backward averages its gradients over the processes (rank 0's weights to start).

        find_unused_parameters: a batch without masks (or boxes) leaves some loss branches without a gradient."""
        device_ids = [self.device] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's `flag` on every rank (also a barrier: no rank passes before rank 0 decided)."""
        value = torch.tensor([int(flag)], device=self._collective_device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is True on any (all must agree, e.g. on skipping a batch)."""
        value = torch.tensor([int(flag)], device=self._collective_device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (picklable), in rank order, on every rank."""
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        dist.barrier()

    @property
    def _collective_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


def parameters_sha256(module: nn.Module) -> str:
    """A checksum of the trained weights (parameters, not running statistics): equal on every rank after DDP."""
    digest = hashlib.sha256()
    for name, param in sorted(module.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def resolve_devices(devices: int | str | None, device: str | torch.device | None = None) -> list[torch.device]:
    """The devices to train on, one process each.

    None or 1: [device] (one process, the usual path). A count N: N processes on `device`'s kind (cuda:0..N-1, or
    N CPU processes for `device="cpu"`, a test mode). A list "0,1" or "cuda:0,1" or "cuda:0,cuda:2": those GPUs.
    """
    base = resolve_device(str(device) if device is not None else None)
    if devices is None:
        return [base]
    if isinstance(devices, int):
        if devices < 1:
            raise ConfigError(f"devices={devices}: at least one device", where="--gpus / devices",
                              fix="pass a positive count or a list of GPU indices such as 0,1")
        if devices == 1 or base.type == "cpu":
            return [base] * devices
        return [resolve_device(f"cuda:{index}") for index in range(devices)]
    parts = [part.strip().removeprefix("cuda:") for part in str(devices).removeprefix("cuda:").split(",")]
    if not parts or not all(part.isdigit() for part in parts):
        raise ConfigError(f"cannot read the GPU list {devices!r}", where="--gpus / devices",
                          fix="give GPU indices separated by commas, such as 0,1 (or cuda:0,1)")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"a GPU is listed twice in {devices!r}", where="--gpus / devices",
                          fix="list each GPU once")
    return [resolve_device(f"cuda:{part}") for part in parts]


def launch(work: Callable[..., Any], devices: list[torch.device], *args: Any) -> None:
    """Run `work(context, *args)` in one new process per device and wait for all; an error in any is raised here
    (a user error as itself, so the CLI and the Prefect task treat it as they would in one process).

    `work` and `args` are pickled into the processes (spawned, not forked: CUDA cannot be forked)."""
    backend = "nccl" if devices[0].type == "cuda" else "gloo"
    address = f"tcp://127.0.0.1:{_free_port()}"
    user_errors = mp.get_context("spawn").SimpleQueue()
    log.info("training on %d processes (%s): %s", len(devices), backend, ", ".join(map(str, devices)))
    try:
        mp.spawn(_process, args=(devices, backend, address, work, args, user_errors), nprocs=len(devices),
                 join=True)
    except (mp.ProcessRaisedException, mp.ProcessExitedException):
        if not user_errors.empty():
            raise user_errors.get() from None
        raise


def _process(rank: int, devices: list[torch.device], backend: str, address: str, work: Callable[..., Any],
             args: tuple[Any, ...], user_errors: Any) -> None:
    device = devices[rank]
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if rank != 0:  # rank 0 speaks for the group
        logging.getLogger("mlcore").setLevel(logging.WARNING)
    else:  # CPU processes share the cores instead of each taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(devices)))
    dist.init_process_group(backend, init_method=address, rank=rank, world_size=len(devices),
                            timeout=COLLECTIVE_TIMEOUT)
    try:
        work(DistributedContext(rank, len(devices), device, backend), *args)
    except MlcoreError as error:
        user_errors.put(error)
        raise
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
