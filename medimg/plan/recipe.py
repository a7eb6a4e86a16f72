"""The plan's last steps: the decisions made (:class:`PlanParts`) written as a LightningCLI config, the reason
beside each value, and a summary."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.plan.batch import Batch
from medimg.plan.budget import Budget
from medimg.plan.fingerprint import DatasetFingerprint
from medimg.plan.patch import MIN_BATCH, Sized
from medimg.plan.schedule import Schedule, dhms
from medimg.plan.time_rule import TimeChoice

__all__ = ["FOREGROUND_OVERSAMPLING", "Plan", "PlanParts", "build_plan", "foreground_sampling_reason"]

#: a third of the patches centred on foreground: pos / neg = 0.5 (nnU-Net's ``oversample_foreground_percent``)
FOREGROUND_OVERSAMPLING = 1 / 3


@dataclass
class Plan:
    """The recipe. ``config`` is the LightningCLI config as nested dicts; ``reasons`` maps a dotted key of it
    (``data.init_args.patch_size``) to why it has that value."""

    name: str
    config: dict[str, Any]
    reasons: dict[str, str] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)

    def value(self, dotted: str) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            node = node[part]
        return node


@dataclass(frozen=True)
class PlanParts:
    """Every decision of :func:`medimg.plan.planner.make_plan`, in the order they are made; ``norm`` is
    :func:`~medimg.plan.planner.normalisation`'s (mode, CT window, CT mean/std, reason)."""

    fp: DatasetFingerprint
    budget: Budget
    dataset_dir: str | os.PathLike[str]
    spacing: tuple[float, ...]
    spacing_reason: str
    median: tuple[int, ...]
    sized: Sized
    time_choice: TimeChoice | None
    batch: Batch
    sched: Schedule
    norm: tuple[str, list[float], list[float], str]


def foreground_sampling_reason(fp: DatasetFingerprint, share: float = FOREGROUND_OVERSAMPLING) -> str:
    """The foreground patches' split among the dataset's classes, with each class's share of the foreground voxels
    (what MONAI's any-foreground-voxel rule would give it instead)."""
    fg = [c for c in sorted(fp.labels) if c != 0]
    voxels = {c: sum(case.class_voxels.get(c, 0) for case in fp.cases) for c in fg}
    total = max(sum(voxels.values()), 1)
    each = ", ".join(f"{fp.labels[c]} {share / len(fg):.1%} ({voxels[c] / total:.1%} of the foreground voxels)"
                     for c in fg)  # fmt: skip
    return (
        f"{share:.0%} of the patches centred on foreground (nnU-Net), split equally among the foreground classes "
        f"each case holds (a class, then a voxel of it): {each}; background {1 - share:.1%}. "
        "foreground_sampling: any = centred on any foreground voxel (a small class gets its voxel share)"
    )


def _config(p: PlanParts) -> dict[str, Any]:
    cpu = p.budget.device == "cpu"
    intensity, window, stats, _ = p.norm
    patch, batch, steps_per_epoch = list(p.sized.patch), p.batch.size, p.sched.steps_per_epoch
    trainer = {
        "accelerator": p.budget.device if cpu else "gpu",
        "devices": 1,
        "precision": "32-true" if cpu else "bf16-mixed",
        "max_epochs": p.sched.max_epochs,
        "max_time": dhms(p.budget.time_s),
        "check_val_every_n_epoch": 1,
        "log_every_n_steps": max(min(steps_per_epoch // 2, 50), 1),
        "default_root_dir": f"outputs/runs/plan_{_name(p)}",
    }
    model = {
        "class_path": "medimg.tasks.SegmentationTask",
        "init_args": {"net": p.sized.net, "net_kwargs": p.sized.net_kwargs, "num_classes": max(p.fp.labels) + 1,
                      "in_channels": p.fp.in_channels, "lr": 1e-3, "roi_size": patch, "sw_batch_size": batch},
    }  # fmt: skip
    data = {
        "class_path": "medimg.data.datamodule.SegmentationDataModule",
        "init_args": {
            "dataset_dir": str(Path(p.dataset_dir).resolve()),
            "spacing": list(p.spacing),
            "intensity": intensity,
            "ct_window": window,
            "ct_stats": stats,
            "patch_size": patch,
            "samples_per_volume": 1,
            "pos_neg_ratio": round(FOREGROUND_OVERSAMPLING / (1 - FOREGROUND_OVERSAMPLING), 4),
            "foreground_sampling": "classes",
            "batch_size": batch,
            "epoch_length": batch * steps_per_epoch,
            "num_workers": max(min((os.cpu_count() or 1) - 2, 4), 0),
        },
    }
    return {"seed_everything": 42, "trainer": trainer, "model": model, "data": data}


def _name(p: PlanParts) -> str:
    return Path(p.dataset_dir).resolve().name


def _patch_reason(p: PlanParts) -> str:
    m, budget = p.sized.measurement, p.budget
    mem_where = {"cuda": "peak CUDA memory of", "meta": "memory counted on the meta device for"}.get(
        budget.measure_on, "memory (activations saved for backward + weights, grads, AdamW state) of"
    )
    text = (
        f"median resampled shape {list(p.median)}; {mem_where} a step of {MIN_BATCH}: "
        f"{m.memory_bytes / 2**20:.0f} MiB (budget {budget.memory_bytes / 2**20:.0f} MiB)"
    )
    if p.time_choice is None:
        return text + f"; the largest patch the memory allows (nnU-Net's rule); {p.sized.tried} size(s) tried"
    return text + f", {m.step_s:.2f} s; {p.time_choice.reason}; {p.sized.tried} size(s) tried"


def _reasons(p: PlanParts) -> dict[str, str]:
    cpu, topo = p.budget.device == "cpu", p.sized.topo
    t, mo, da = "trainer.", "model.init_args.", "data.init_args."
    return {
        t + "accelerator": "the device planned for",
        t + "precision": "fp32 on a CPU" if cpu else "bf16 autocast on a GPU (nnU-Net trains in mixed precision)",
        t + "max_epochs": p.sched.reason,
        t + "max_time": "the time budget: the run stops here, the learning rate reaches 0 here (or at max_epochs, "
        "whichever comes first) and a last validation scores the final weights",
        t + "check_val_every_n_epoch": "a validation ends every epoch (the epoch length sets how many)",
        mo + "net": p.sized.net_reason,
        mo + "net_kwargs": f"topology for patch {list(p.sized.patch)} at {list(p.spacing)} mm (nnU-Net's pooling "
        f"rule): {topo.num_stages} stages, pools per axis {list(topo.pools_per_axis)}",
        mo + "num_classes": f"labels in dataset.json: {p.fp.labels}",
        mo + "in_channels": f"channels: {p.fp.channel_names}",
        mo + "roi_size": "sliding-window inference uses the training patch",
        da + "dataset_dir": "override with --data.dataset_dir",
        da + "spacing": p.spacing_reason,
        da + "intensity": p.norm[3],
        da + "patch_size": _patch_reason(p),
        da + "pos_neg_ratio": f"{FOREGROUND_OVERSAMPLING:.0%} of patches centred on foreground (nnU-Net)",
        da + "foreground_sampling": foreground_sampling_reason(p.fp),
        da + "batch_size": p.batch.reason,
        da + "epoch_length": f"{p.sched.steps_per_epoch} steps of {p.batch.size} volumes per epoch",
        da + "samples_per_volume": "one patch per loaded volume: the batch is of distinct cases",
    }


def _net_strides(p: PlanParts) -> list[list[int]]:
    """The network's strides per stage, the input stage's included (MONAI's UNet leaves it out: it is all 1)."""
    strides = [list(st) for st in p.sized.net_kwargs["strides"]]
    return [[1] * len(p.spacing), *strides] if p.sized.net == "unet" else strides


def _summary(p: PlanParts, max_time: str) -> list[str]:
    fp, s, intensity, window, stats = p.fp, p.sched, *p.norm[:3]
    median_mm = [float(v) for v in np.median(fp.spacings, 0)]
    return [
        f"dataset {_name(p)}: {len(fp.cases)} training cases, channels {fp.channel_names}, labels {fp.labels}",
        f"median shape {[int(v) for v in np.median(fp.shapes, 0)]} at {median_mm} mm",
        f"target spacing {list(p.spacing)} mm -> median resampled shape {list(p.median)}",
        f"patch {list(p.sized.patch)}, batch {p.batch.size}, {p.sized.net} strides {_net_strides(p)}",
        f"normalisation {intensity}" + (f" window {window} mean/std {stats}" if intensity == "ct_zscore" else ""),
        f"~{s.steps} steps: ~{s.validations} epochs of {s.steps_per_epoch} (at most {s.max_epochs}), "
        f"a validation after each, max_time {max_time}",
    ]


def build_plan(p: PlanParts) -> Plan:
    """The :class:`Plan` of the decisions ``p``: config, reasons, summary."""
    config = _config(p)
    return Plan(_name(p), config, _reasons(p), _summary(p, config["trainer"]["max_time"]))
