"""Multi-process training through `torchrun` (torch.distributed.run) + DistributedDataParallel.

No home-made launching (torchrun does it; see docs/architecture.md): `relaunch_command` builds the
`python -m torch.distributed.run --standalone --nproc_per_node N -m agora_cli.train ...` command
line the CLI re-executes itself with; each process then calls `init_distributed()`, which reads the
environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) and starts the process group (nccl on
CUDA, gloo on CPU).
"""

from __future__ import annotations

import gc
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Start the process group when run under torchrun with WORLD_SIZE > 1; pick the device.

    device: "auto" (CUDA if available), "cpu" or "cuda".
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shutdown_distributed(info: DistInfo | None = None, wait_for_all: bool = False) -> None:
    """Tear the process group down.

    wait_for_all (the normal end of a run): first free what still refers to the group (DDP
    wrappers caught in reference cycles) and wait at a barrier until every rank is done -- rank 0
    writes the last checkpoint after the others have finished their steps, and a gloo group torn
    down on one rank while a peer still uses it can abort the process at exit ("terminate called
    without an active exception"). After an error no barrier: the peers may never reach it.
    """
    if not dist.is_initialized():
        return
    if wait_for_all and info is not None and info.enabled:
        gc.collect()
        dist.barrier()
    dist.destroy_process_group()


def any_true(flag: bool, info: DistInfo) -> bool:
    """True on every rank if `flag` is True on any rank (all-reduce MAX)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_objects(obj, info: DistInfo) -> list:
    """[obj of rank 0, obj of rank 1, …] (just [obj] without a process group)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def relaunch_command(nproc: int, module_args: list[str], module: str = "agora_cli.train") -> list[str]:
    """argv that runs `python -m <module> <module_args>` in `nproc` processes through torchrun."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, *module_args]
