"""From a dataset fingerprint to a training recipe, every value with its reason (nnU-Net's planning, for
LightningCLI).

* target spacing: the median spacing; for strongly anisotropic data (one axis coarser than
  :data:`ANISOTROPY_THRESHOLD` x the others *and* with fewer than 1 / threshold as many voxels) that axis takes
  the 10th percentile of its spacings instead (nnU-Net's rule: fewer interpolation artefacts on thick slices);
* patch: aspect 1 / spacing, as large as :data:`INITIAL_PATCH_VOXELS`, clipped to the median resampled shape,
  shrunk to fit the topology (:mod:`medimg.plan.topology`), then along the axis largest relative to the median
  shape until a training step of :data:`MIN_BATCH` fits the memory budget (and, on a CPU, the time budget);
* network: MONAI DynUNet with that topology on a GPU (nnU-Net's 32..320 features); on a CPU the small option,
  MONAI UNet with the same strides (its first convolution is already strided: ~8x fewer full-resolution
  operations, which is what a CPU's time budget buys most with);
* batch: as many patches as the budget allows (measured, :mod:`medimg.plan.measure`), at least :data:`MIN_BATCH`,
  at most 5 % of the dataset's voxels per step (nnU-Net's overfitting cap);
* normalisation: CT -> clip to the dataset's foreground 0.5 / 99.5 percentiles, z-score with its foreground mean
  and standard deviation; anything else -> per-image z-score of the non-zero voxels;
* foreground oversampling: a third of the patches centred on foreground (nnU-Net's ``oversample_foreground_percent``);
* schedule (:func:`schedule`): the steps the measured step time allows in the time budget after the validations,
  priced from a measured inference forward; the time budget ends the run and the learning rate anneals to it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medimg.errors import ConfigError
from medimg.plan.fingerprint import DatasetFingerprint
from medimg.plan.measure import Measurement, measure_step
from medimg.plan.topology import MIN_FEATURE_EDGE, Topology, fit_patch

__all__ = ["Budget", "Plan", "make_plan", "median_resampled_shape", "target_spacing"]

#: nnU-Net's ``ANISO_THRESHOLD``: an axis this many times coarser than the others is "strongly anisotropic"
ANISOTROPY_THRESHOLD = 3.0
#: the first patch tried holds as many voxels as 256^3 (nnU-Net's start), then shrinks to fit
INITIAL_PATCH_VOXELS = 256**3
#: nnU-Net's minimum batch; batch norm statistics and a Dice over a batch need two patches
MIN_BATCH = 2
#: at most this fraction of the dataset's voxels in one step (nnU-Net's ``max_dataset_covered``)
MAX_DATASET_COVERED = 0.05
#: a third of the patches centred on foreground: RandCropByPosNegLabeld's pos / neg = 0.5
FOREGROUND_OVERSAMPLING = 1 / 3
#: nnU-Net's epoch: 250 training iterations
STEPS_PER_EPOCH = 250
#: at least this many epochs (validations, cosine-schedule points) in a run, of at least this many steps
MIN_EPOCHS, MIN_STEPS_PER_EPOCH = 10, 20
#: validate at most this many times per run (each is a sliding-window pass over the validation fold)
VALIDATIONS_PER_RUN = 10
#: validations may take this share of the time budget
VALIDATION_TIME_SHARE = 0.1
#: a validation costs its sliding-window forwards times this (loading, resampling back, Dice, HD95's distance
#: transforms): an estimate, not a measurement, which is why the validations are spaced by time
VALIDATION_OVERHEAD = 2.0
#: the datamodule's default k of its k-fold split: the validation fold is 1 / NUM_FOLDS of the cases
NUM_FOLDS = 5
#: SegmentationTask's default sliding-window overlap
SW_OVERLAP = 0.25
#: max_epochs is this many times the estimated epochs, so that max_time (not a step estimate) ends a timed run
EPOCH_HEADROOM = 2.0
#: on a CPU, the patch shrinks until the time budget holds at least this many training steps
MIN_STEPS_CPU = 150
#: ... but the time rule never shrinks a patch below this share of the median case's voxels: a patch of under
#: half the median shape per axis sees too little context, and fewer, larger steps learn more in a short budget
#: (benchmarks/plan_bench.py: a 48^3 x 4 plain loop beat 40^3 x 2 planned patches at 100 s on a 56^3 task)
MIN_PATCH_SHARE_CPU = 1 / 8
#: share of the time budget for caching, checkpoints and the data pipeline beyond the measured step
OVERHEAD_TIME_SHARE = 0.1
#: the share a CPU plan's patch size is chosen for (the steps' share before validations are priced)
TRAIN_TIME_SHARE = 0.8
#: DynUNet features per stage on a GPU (nnU-Net: 32, doubling, capped at 320)
GPU_BASE_FEATURES, GPU_MAX_FEATURES = 32, 320
#: UNet channels per stage on a CPU (medimg's default UNet: 16, doubling, capped at 256)
CPU_BASE_FEATURES, CPU_MAX_FEATURES = 16, 256
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


def target_spacing(spacings: npt.NDArray[np.float64], shapes: npt.NDArray[np.float64]) -> tuple[tuple[float, ...], str]:
    """The median spacing, with nnU-Net's rule for strongly anisotropic data; (spacing, reason)."""
    target = np.percentile(spacings, 50, axis=0)
    median_shape = np.percentile(shapes, 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * max(target[a] for a in others)
    aniso_voxels = median_shape[worst] * ANISOTROPY_THRESHOLD < min(median_shape[a] for a in others)
    reason = "median spacing of the training cases (mm, RAS axis order)"
    if aniso_spacing and aniso_voxels:
        tenth = float(np.percentile(spacings[:, worst], 10))
        target[worst] = max(tenth, max(target[a] for a in others) + 1e-5)
        reason = (
            f"median spacing, but axis {worst} is over {ANISOTROPY_THRESHOLD:g}x coarser with under 1/"
            f"{ANISOTROPY_THRESHOLD:g} the voxels: its 10th percentile instead (nnU-Net's anisotropy rule)"
        )
    return tuple(round(float(s), 5) for s in target), reason


def median_resampled_shape(fp: DatasetFingerprint, spacing: Sequence[float]) -> tuple[int, ...]:
    """Median shape (voxels) of the cases once resampled to ``spacing``."""
    shapes = np.rint(fp.shapes * fp.spacings / np.asarray(spacing, dtype=np.float64))
    return tuple(max(int(v), 1) for v in np.median(shapes, axis=0))


def _initial_patch(spacing: Sequence[float], median_shape: Sequence[int]) -> tuple[int, ...]:
    aspect = 1.0 / np.asarray(spacing, dtype=np.float64)
    scaled = aspect * (INITIAL_PATCH_VOXELS / float(np.prod(aspect))) ** (1 / len(spacing))
    return tuple(min(round(float(s)), int(m)) for s, m in zip(scaled, median_shape, strict=True))


def _features(stages: int, base: int, cap: int) -> list[int]:
    return [min(base * 2**i, cap) for i in range(stages)]


def network(device: str, topo: Topology) -> tuple[str, dict[str, Any], str]:
    """(net name, net_kwargs, reason) for the topology: DynUNet on a GPU, the small UNet on a CPU."""
    strides = [list(s) for s in topo.strides]
    if device == "cuda":
        kwargs = {
            "kernel_size": [list(k) for k in topo.kernels],
            "strides": strides,
            "filters": _features(topo.num_stages, GPU_BASE_FEATURES, GPU_MAX_FEATURES),
            "norm_name": "instance",
        }
        return "dynunet", kwargs, "MONAI DynUNet with nnU-Net's topology and 32..320 features"
    kwargs = {
        "channels": _features(topo.num_stages, CPU_BASE_FEATURES, CPU_MAX_FEATURES),
        "strides": strides[1:],
        "num_res_units": 2,
        "norm": "instance",
    }
    reason = (
        "CPU: the small option, MONAI UNet 16..256 with nnU-Net's strides (a strided first convolution: far "
        "fewer full-resolution operations than DynUNet, more steps in the time budget)"
    )
    return "unet", kwargs, reason


def _reduce(patch: tuple[int, ...], median: Sequence[int], topo: Topology) -> tuple[int, ...] | None:
    """One divisor smaller along the axis largest relative to the median shape (nnU-Net; ties: the longest
    axis), or None when no axis can shrink without dropping below two bottleneck edges."""
    order = sorted(range(len(patch)), key=lambda a: (patch[a] / median[a], patch[a]), reverse=True)
    for a in order:
        if patch[a] - topo.divisor[a] >= 2 * MIN_FEATURE_EDGE:
            return tuple(p - topo.divisor[a] if i == a else p for i, p in enumerate(patch))
    return None


def _shrink(
    spacing: Sequence[float], patch: tuple[int, ...], median: Sequence[int], topo: Topology
) -> tuple[tuple[int, ...], Topology] | None:
    """The next smaller patch and its topology, or None below a U-Net of three stages."""
    smaller = _reduce(patch, median, topo)
    if smaller is None:
        return None
    shrunk = fit_patch(spacing, smaller)
    return shrunk if shrunk[1].num_stages >= 3 else None


def make_plan(fp: DatasetFingerprint, budget: Budget, dataset_dir: str | os.PathLike[str]) -> Plan:
    """Plan a training run for the fingerprinted dataset within ``budget``."""
    spacing, spacing_reason = target_spacing(fp.spacings, fp.shapes)
    median = median_resampled_shape(fp, spacing)
    in_ch, out_ch = fp.in_channels, max(fp.labels) + 1
    step_limit = budget.time_s * TRAIN_TIME_SHARE / MIN_STEPS_CPU if budget.device == "cpu" else None

    patch, topo = fit_patch(spacing, _initial_patch(spacing, median))
    if topo.num_stages < 3:
        raise ConfigError(
            f"the median case is only {median} voxels at {spacing} mm: too small for a 3D U-Net with two "
            "poolings; use finer spacing or larger images",
            dataset_dir,
        )
    tried = 0
    while True:  # 1. memory: shrink until a step of MIN_BATCH fits (counted on the meta device, or measured on cuda)
        name, kwargs, net_reason = network(budget.device, topo)
        m = measure_step(name, kwargs, in_ch, out_ch, patch, MIN_BATCH, budget.measure_on, timed=False)
        tried += 1
        if m.memory_bytes <= budget.memory_bytes:
            break
        shrunk = _shrink(spacing, patch, median, topo)
        if shrunk is None:
            raise ConfigError(
                f"even a {patch} patch needs {m.memory_bytes / 2**30:.2f} GiB for a step of {MIN_BATCH}; "
                "give more memory",
                dataset_dir,
            )
        patch, topo = shrunk
    if step_limit is not None:  # 2. CPU time: one timed step, then voxels scale the time (a conv net is linear)
        m = measure_step(name, kwargs, in_ch, out_ch, patch, MIN_BATCH, budget.measure_on, timed=True)
        allowed = float(np.prod(patch)) * step_limit / max(m.step_s, 1e-6)
        while float(np.prod(patch)) > allowed:
            shrunk = _shrink(spacing, patch, median, topo)
            if shrunk is None or np.prod(shrunk[0]) < MIN_PATCH_SHARE_CPU * np.prod(median):
                break  # fewer steps than MIN_STEPS_CPU rather than too little context: said in the reason
            patch, topo = shrunk
            tried += 1
        name, kwargs, net_reason = network(budget.device, topo)
        m = measure_step(name, kwargs, in_ch, out_ch, patch, MIN_BATCH, budget.measure_on, timed=True)

    # batch: linear in patches per step, from the measurement at MIN_BATCH and one at 1
    one = measure_step(name, kwargs, in_ch, out_ch, patch, 1, budget.measure_on, timed=budget.measure_on == "cuda")
    per_patch_mem = max(m.memory_bytes - one.memory_bytes, 1.0)
    by_memory = MIN_BATCH + int((budget.memory_bytes - m.memory_bytes) // per_patch_mem)
    n_voxels = float(np.prod(median)) * len(fp.cases)
    by_coverage = max(round(n_voxels * MAX_DATASET_COVERED / float(np.prod(patch))), MIN_BATCH)
    batch = max(min(by_memory, by_coverage), MIN_BATCH)
    batch_reason = (
        f"{batch} patches per step: the memory budget allows {by_memory}, 5 % of the dataset's voxels "
        f"{by_coverage} (nnU-Net's caps); at least {MIN_BATCH}"
    )
    if step_limit is not None:
        per_patch_s = m.step_s / MIN_BATCH  # a CPU step's time grows linearly with its patches
        by_time = MIN_BATCH + int((step_limit - m.step_s) // per_patch_s)
        if by_time < batch:
            batch = max(by_time, MIN_BATCH)
            batch_reason = (
                f"{batch} patches per step: on this CPU a step of more would leave fewer than {MIN_STEPS_CPU} steps "
                f"in the time budget (memory would allow {by_memory}, 5 % of the dataset {by_coverage})"
            )
    timed = budget.measure_on != "meta"
    final = (
        m
        if batch == MIN_BATCH and (m.step_s > 0 or not timed)
        else measure_step(name, kwargs, in_ch, out_ch, patch, batch, budget.measure_on, timed=timed)
    )

    sched = schedule(
        budget, final, batch, n_val_cases=math.ceil(len(fp.cases) / NUM_FOLDS), val_shape=median, patch=patch
    )
    steps_per_epoch = sched.steps_per_epoch

    intensity, window, stats, norm_reason = normalisation(fp)
    ds_name = Path(dataset_dir).resolve().name
    cpu = budget.device == "cpu"
    trainer = {
        "accelerator": budget.device if budget.device == "cpu" else "gpu",
        "devices": 1,
        "precision": "32-true" if cpu else "bf16-mixed",
        "max_epochs": sched.max_epochs,
        "max_time": _dhms(budget.time_s),
        "check_val_every_n_epoch": 1,
        "log_every_n_steps": max(min(steps_per_epoch // 2, 50), 1),
        "default_root_dir": f"outputs/runs/plan_{ds_name}",
    }
    model = {
        "class_path": "medimg.tasks.SegmentationTask",
        "init_args": {
            "net": name,
            "net_kwargs": kwargs,
            "num_classes": out_ch,
            "in_channels": in_ch,
            "lr": 1e-3,
            "roi_size": list(patch),
            "sw_batch_size": batch,
        },
    }
    data = {
        "class_path": "medimg.data.datamodule.SegmentationDataModule",
        "init_args": {
            "dataset_dir": str(Path(dataset_dir).resolve()),
            "spacing": list(spacing),
            "intensity": intensity,
            "ct_window": window,
            "ct_stats": stats,
            "patch_size": list(patch),
            "samples_per_volume": 1,
            "pos_neg_ratio": round(FOREGROUND_OVERSAMPLING / (1 - FOREGROUND_OVERSAMPLING), 4),
            "batch_size": batch,
            "epoch_length": batch * steps_per_epoch,
            "num_workers": max(min((os.cpu_count() or 1) - 2, 4), 0),
        },
    }
    config = {"seed_everything": 42, "trainer": trainer, "model": model, "data": data}
    mem_where = {"cuda": "peak CUDA memory of", "meta": "memory counted on the meta device for"}.get(
        budget.measure_on, "memory (activations saved for backward + weights, grads, AdamW state) of"
    )
    t, mo, da = "trainer.", "model.init_args.", "data.init_args."
    reasons = {
        t + "accelerator": "the device planned for",
        t + "precision": "fp32 on a CPU" if cpu else "bf16 autocast on a GPU (nnU-Net trains in mixed precision)",
        t + "max_epochs": sched.reason,
        t + "max_time": "the time budget: the run stops here, the learning rate reaches 0 here (or at max_epochs, "
        "whichever comes first) and a last validation scores the final weights",
        t + "check_val_every_n_epoch": "a validation ends every epoch (the epoch length sets how many)",
        mo + "net": net_reason,
        mo + "net_kwargs": f"topology for patch {list(patch)} at {list(spacing)} mm (nnU-Net's pooling rule): "
        f"{topo.num_stages} stages, pools per axis {list(topo.pools_per_axis)}",
        mo + "num_classes": f"labels in dataset.json: {fp.labels}",
        mo + "in_channels": f"channels: {fp.channel_names}",
        mo + "roi_size": "sliding-window inference uses the training patch",
        da + "dataset_dir": "override with --data.dataset_dir",
        da + "spacing": spacing_reason,
        da + "intensity": norm_reason,
        da + "patch_size": f"median resampled shape {list(median)}; {mem_where} a step of {MIN_BATCH}: "
        f"{m.memory_bytes / 2**20:.0f} MiB (budget {budget.memory_bytes / 2**20:.0f} MiB)"
        + (f", {m.step_s:.2f} s (limit {step_limit:.2f} s)" if step_limit is not None else "")
        + f"; {tried} size(s) tried",
        da + "pos_neg_ratio": f"{FOREGROUND_OVERSAMPLING:.0%} of patches centred on foreground (nnU-Net)",
        da + "batch_size": batch_reason,
        da + "epoch_length": f"{steps_per_epoch} steps of {batch} volumes per epoch",
        da + "samples_per_volume": "one patch per loaded volume: the batch is of distinct cases",
    }
    summary = [
        f"dataset {ds_name}: {len(fp.cases)} training cases, channels {fp.channel_names}, labels {fp.labels}",
        f"median shape {[int(v) for v in np.median(fp.shapes, 0)]} at "
        f"{[float(v) for v in np.median(fp.spacings, 0)]} mm",
        f"target spacing {list(spacing)} mm -> median resampled shape {list(median)}",
        f"patch {list(patch)}, batch {batch}, {name} strides {[list(s) for s in topo.strides]}",
        f"normalisation {intensity}" + (f" window {window} mean/std {stats}" if intensity == "ct_zscore" else ""),
        f"~{sched.steps} steps: ~{sched.validations} epochs of {steps_per_epoch} (at most {sched.max_epochs}), "
        f"a validation after each, max_time {trainer['max_time']}",
    ]
    return Plan(ds_name, config, reasons, summary)


@dataclass(frozen=True)
class Schedule:
    """How a run spends its time budget: steps in all, per epoch (one validation each), epochs at most."""

    steps: int
    steps_per_epoch: int
    max_epochs: int
    validations: int
    reason: str


def sliding_windows(shape: Sequence[int], patch: Sequence[int], overlap: float) -> int:
    """Windows MONAI's ``sliding_window_inference`` runs over a ``shape`` volume with ``patch`` windows: per axis
    ``ceil((s - p) / step) + 1`` with ``step = max(int(p * (1 - overlap)), 1)``, one where the patch covers the
    axis (MONAI's ``dense_patch_slices``), multiplied."""
    n = 1
    for s, p in zip(shape, patch, strict=True):
        n *= 1 if s <= p else math.ceil((s - p) / max(int(p * (1 - overlap)), 1)) + 1
    return n


def schedule(
    budget: Budget, m: Measurement, batch: int, n_val_cases: int, val_shape: Sequence[int], patch: Sequence[int]
) -> Schedule:
    """Steps and validations for the time budget, from the measured step ``m`` of ``batch`` patches (also the
    sliding window's batch).

    A validation is priced as the sliding-window forwards over the validation fold (``m.infer_s`` per window
    batch) times :data:`VALIDATION_OVERHEAD` (loading, resampling, Dice and HD95); validations get at most
    :data:`VALIDATION_TIME_SHARE` of the budget. The steps fill what is left after :data:`OVERHEAD_TIME_SHARE`
    for caching and checkpoints. One validation ends every epoch, so an epoch is ``steps / validations`` steps;
    ``max_epochs`` leaves :data:`EPOCH_HEADROOM` x the estimate, so that the time budget, not the estimate, ends
    a timed run -- inside an epoch that Lightning then validates, so the final weights are scored -- and the
    learning rate anneals to whichever stop comes first (:func:`medimg.tasks.optim.adamw_cosine`)."""
    if m.step_s <= 0:  # a GPU plan made without a GPU: nothing timed
        return Schedule(
            STEPS_PER_EPOCH * 1000, STEPS_PER_EPOCH, 1000, 1000,
            "no GPU here to time a step: nnU-Net's 1000 epochs of 250 steps, one validation each; trainer.max_time "
            "stops it",
        )  # fmt: skip
    batch_windows = math.ceil(sliding_windows(val_shape, patch, SW_OVERLAP) / batch)
    val_s = n_val_cases * batch_windows * m.infer_s * VALIDATION_OVERHEAD
    validations = int(min(max(VALIDATION_TIME_SHARE * budget.time_s // max(val_s, 1e-6), 1), VALIDATIONS_PER_RUN))
    train_s = budget.time_s * (1 - OVERHEAD_TIME_SHARE) - validations * val_s
    steps = max(int(train_s / m.step_s), 1)
    steps_per_epoch = max(steps // validations, MIN_STEPS_PER_EPOCH)
    max_epochs = math.ceil(EPOCH_HEADROOM * steps / steps_per_epoch)
    reason = (
        f"~{steps} steps of {m.step_s:.2f} s (measured on {budget.measure_on}) fill the {budget.time_s:.0f} s budget "
        f"less {OVERHEAD_TIME_SHARE:.0%} for caching and checkpoints and {validations} validations of ~{val_s:.1f} s "
        f"({n_val_cases} cases x {batch_windows} window batches x {m.infer_s:.2f} s x {VALIDATION_OVERHEAD:g}; at "
        f"most {VALIDATION_TIME_SHARE:.0%} of the budget): one per epoch of {steps_per_epoch} steps; "
        f"{EPOCH_HEADROOM:g}x headroom so that max_time ends the run"
    )
    return Schedule(steps, steps_per_epoch, max_epochs, validations, reason)


def normalisation(fp: DatasetFingerprint) -> tuple[str, list[float], list[float], str]:
    """(intensity mode, CT window, CT mean/std, reason) from the dataset's foreground intensities."""
    if fp.is_ct:
        s = fp.foreground_intensity[0]
        window = [round(s["p0.5"], 2), round(s["p99.5"], 2)]
        stats = [round(s["mean"], 3), round(max(s["std"], 1e-3), 3)]
        reason = (
            "CT: clip to the dataset's foreground 0.5-99.5 percentiles (HU), z-score with the foreground "
            "mean and std (nnU-Net's CTNormalization)"
        )
        return "ct_zscore", window, stats, reason
    reason = f"{fp.channel_names}: z-score each image's non-zero voxels per channel (nnU-Net's ZScoreNormalization)"
    return "mr", [-57.0, 164.0], [0.0, 1.0], reason


def _dhms(seconds: float) -> str:
    s = math.ceil(seconds)
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
