"""Data-parallel training under torchrun (WORLD_SIZE/RANK set): torch's
DistributedDataParallel, gloo on CPU and NCCL on GPU; a world of one runs plain."""
from __future__ import annotations

import os

import torch
from torch import distributed as dist
from torch import nn


class Distributed:
    """World facts and the DDP wrapping of the modules that take gradient steps."""

    def __init__(self, device: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = torch.device("cpu")
        if device.startswith("cuda") and self.world > 1:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)  # one GPU per process
            self.device = torch.device("cuda", local)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP around a module whose single forward feeds one backward (gradients are averaged
        over processes during that backward; rank 0's weights are broadcast at wrapping).
        Some discriminator scales sit out short sequences, hence find_unused_parameters."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)

    def agree(self, flag: bool) -> bool:
        """True when any process says True (so all stop together)."""
        return self.maximum(1.0 if flag else 0.0) > 0

    def maximum(self, value: float) -> float:
        """The largest value over processes (keeps time-based schedules in step)."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def close(self) -> None:
        """Leave the process group at the end of a run (torchrun expects it), all processes
        together: the main one saves first, and a process that tore down its connections while
        another still used them was seen to abort (SIGABRT) now and then."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
