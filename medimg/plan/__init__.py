"""``medimg plan``: a dataset fingerprint, an nnU-Net-style plan derived from it, written as a LightningCLI config.

from medimg.plan import plan_dataset
plan, path = plan_dataset("data/raw/Task01_Phantom", time_budget="10m", device="cpu")
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from medimg.errors import ConfigError
from medimg.plan.config import plan_yaml, write_plan
from medimg.plan.fingerprint import DatasetFingerprint, fingerprint_dataset
from medimg.plan.planner import Budget, Plan, make_plan

__all__ = [
    "Budget",
    "DatasetFingerprint",
    "Plan",
    "fingerprint_dataset",
    "make_plan",
    "parse_duration",
    "parse_size",
    "plan_dataset",
    "plan_yaml",
    "write_plan",
]

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_TIME_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_size(text: str) -> float:
    """``"24GB"`` / ``"24 GiB"`` / ``"8e9"`` -> bytes."""
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ConfigError(f"cannot read the memory size {text!r}; write e.g. 24GB or 8GiB")
    return float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def parse_duration(text: str) -> float:
    """``"2h"`` / ``"90m"`` / ``"300s"`` / ``"1h30m"`` / Lightning's ``"DD:HH:MM:SS"`` -> seconds."""
    text = text.strip()
    if re.fullmatch(r"[0-9]+(:[0-9]+){1,3}", text):
        parts = [int(p) for p in text.split(":")]
        weights = [86400, 3600, 60, 1][-len(parts) :]
        return float(sum(p * w for p, w in zip(parts, weights, strict=True)))
    pieces = re.findall(r"([0-9.]+)\s*(min|[smhd])", text)
    if not pieces or "".join(f"{n}{u}" for n, u in pieces) != text.replace(" ", ""):
        raise ConfigError(f"cannot read the duration {text!r}; write e.g. 2h, 90m, 1h30m or 00:02:00:00")
    return sum(float(n) * _TIME_UNITS[u] for n, u in pieces)


def plan_dataset(
    dataset_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    device: str | None = None,
    gpu_memory: str | float | None = None,
    time_budget: str | float | None = None,
    use_cache: bool = True,
) -> tuple[Plan, Path]:
    """Fingerprint ``dataset_dir``, plan for the budget, write the YAML (default ``configs/plan_<name>.yaml``)."""
    memory = parse_size(gpu_memory) if isinstance(gpu_memory, str) else gpu_memory
    seconds = parse_duration(time_budget) if isinstance(time_budget, str) else time_budget
    budget = Budget.resolve(device, memory, seconds)
    fp = fingerprint_dataset(dataset_dir, use_cache=use_cache)
    plan = make_plan(fp, budget, dataset_dir)
    path = Path(out) if out is not None else Path("configs") / f"plan_{plan.name}.yaml"
    write_plan(plan, path, f"device {budget.device}, {budget.memory_bytes / 1e9:.1f} GB, {budget.time_s:.0f} s")
    return plan, path
