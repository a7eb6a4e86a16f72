"""Where the time of one segmentation goes: seconds per stage, the network's share, peak memory.

Every ``segment`` (checkpoint or export, CLI and Python) records its stages -- load (read + decode), preprocess
(orient, resample, intensity), network (the sum of the bare window forwards), blending (Gaussian weights,
accumulation and argmax, the rest of the window loop), back (labels resampled onto the input's grid), write --
and ``medimg segment`` prints :meth:`Timings.summary` in one line (``--timings out.json`` keeps the record).
The process's peak resident memory is read at the end of every stage (and after every network call), so the
record says which stage raised it to its final value (issue 33: the memory target is met or missed there).
Hand-written because neither MONAI's inferers nor Lightning's profilers split a whole segmentation this way.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from medimg.inference.blending import Predictor

__all__ = ["STAGES", "Timings", "peak_rss_bytes", "rss_high_water_bytes"]

#: The stages, in pipeline order.
STAGES = ("load", "preprocess", "network", "blending", "back", "write")


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``getrusage``: kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def rss_high_water_bytes() -> int:
    """The resident high-water mark of this address space (Linux ``/proc/self/status`` VmHWM, which a forked
    child does not inherit from its parent as ``getrusage`` does); :func:`peak_rss_bytes` elsewhere."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return peak_rss_bytes()


@dataclass
class Timings:
    """Seconds per stage of one segmentation, the network's voxel count, and the peak RSS at the end;
    ``rss_by_stage``: the process's high-water mark (bytes) at the end of each stage."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    network_voxels: int = 0
    network_calls: int = 0
    peak_rss: int = 0
    device: str = "cpu"
    rss_by_stage: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to stage ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.rss_by_stage[name] = rss_high_water_bytes()

    def timed(self, predictor: Predictor) -> Predictor:
        """``predictor`` counting its own wall time (synchronised on CUDA) and the voxels it saw as ``network``."""

        def run(x: torch.Tensor) -> torch.Tensor:
            before, t0 = rss_high_water_bytes(), time.perf_counter()
            out = predictor(x)
            self._sync()
            self.seconds["network"] += time.perf_counter() - t0
            self.network_voxels += int(x.shape[0]) * int(torch.tensor(x.shape[2:]).prod())
            self.network_calls += 1
            after = rss_high_water_bytes()
            if after > before:  # this forward raised the high-water mark (not the blending around it)
                self.rss_by_stage["network"] = after
            return out

        return run

    def _sync(self) -> None:
        if self.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def other(self) -> float:
        """Everything but the network: what should cost at most a third of it."""
        return self.total - self.seconds["network"]

    def finish(self) -> Timings:
        self.peak_rss = max(rss_high_water_bytes(), *self.rss_by_stage.values())
        return self

    @property
    def peak_stage(self) -> str | None:
        """The stage that raised the high-water mark to its final value (the first to reach it)."""
        peak = max(self.rss_by_stage.values(), default=0)
        order = [s for s in (*STAGES, *self.rss_by_stage) if s in self.rss_by_stage]
        return next((s for s in order if self.rss_by_stage[s] >= peak), None)

    def as_dict(self) -> dict[str, Any]:
        net = self.seconds["network"]
        return {
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "total_s": round(self.total, 4),
            "non_network_over_network": round(self.other / net, 4) if net > 0 else None,
            "network_voxels_per_s": round(self.network_voxels / net) if net > 0 else None,
            "network_calls": self.network_calls,
            "peak_rss_bytes": self.peak_rss,
            "peak_rss_stage": self.peak_stage,
            "rss_high_water_by_stage_bytes": dict(self.rss_by_stage),
            "device": self.device,
        }

    def summary(self) -> str:
        """One line: seconds per stage, the network's voxel rate, the peak RSS."""
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.seconds.items())
        net = self.seconds["network"]
        rate = f"{self.network_voxels / net / 1e6:.2f} Mvox/s" if net > 0 else "n/a"
        where = f" (in {self.peak_stage})" if self.peak_stage else ""
        gb = self.peak_rss / 2**30
        return f"timings (s): {parts}; total {self.total:.2f}; network {rate}; peak RSS {gb:.2f} GB{where}"

    def save(self, path: str | os.PathLike[str]) -> None:
        from medimg.io.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.as_dict(), indent=2) + "\n")
