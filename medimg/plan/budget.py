"""What a plan may use: the device, its memory and the wall-clock seconds of training."""

from __future__ import annotations

import os
from dataclasses import dataclass

from medimg.errors import ConfigError

__all__ = ["CPU_MEMORY_SHARE", "DEFAULT_TIME_BUDGET_S", "Budget"]

#: a CPU run keeps this share of the machine's RAM as its memory budget
CPU_MEMORY_SHARE = 0.5
#: default time budgets when none is given
DEFAULT_TIME_BUDGET_S = {"cpu": 3600.0, "cuda": 24 * 3600.0}


@dataclass(frozen=True)
class Budget:
    """What the plan may use: ``device`` ("cpu" or "cuda"), memory in bytes, wall-clock seconds of training."""

    device: str
    memory_bytes: float
    time_s: float
    #: measure on this torch device ("cuda", "cpu" or "meta"); "meta" counts a GPU plan's memory with no GPU here
    measure_on: str = "cpu"

    @classmethod
    def resolve(cls, device: str | None = None, gpu_memory: float | None = None, time_s: float | None = None) -> Budget:
        """Fill in what is not given: the device (a GPU if there is one), its memory, a default time budget."""
        import torch

        has_cuda = torch.cuda.is_available()
        if device is None:
            device = "cuda" if (has_cuda or gpu_memory is not None) else "cpu"
        if device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {device!r}")
        if device == "cuda":
            total = torch.cuda.get_device_properties(0).total_memory if has_cuda else None
            memory = gpu_memory if gpu_memory is not None else total
            if memory is None:
                raise ConfigError("no GPU here: give --gpu-memory (e.g. 24GB) to plan for one, or --device cpu")
            on = "cuda" if has_cuda else "meta"
        else:
            memory = gpu_memory or os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * CPU_MEMORY_SHARE
            on = "cpu"
        return cls(device, float(memory), float(time_s or DEFAULT_TIME_BUDGET_S[device]), on)
